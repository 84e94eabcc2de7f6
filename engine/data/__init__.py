"""Datasets: row schema and JSONL loading, and synthetic video tasks with frame-exact ground truth."""
