"""Shared helpers of the Ray cluster tests: the smallest config that runs real GRPO steps, and a step's metrics
without its timings."""
from engine.config import load_config

TIMING = ("time_", "tokens_per_s")


def stable(m: dict) -> dict:
    """A step's metrics without wall-clock ones: what a replay must reproduce exactly."""
    return {k: v for k, v in m.items() if not k.startswith(TIMING)}


def small_config(tmp_path, *extra: str):
    """4 short videos, 2 prompts x 2 samples of 8 tokens per step, no SFT, no evals or checkpoints; `extra` last."""
    return load_config(None, [
        f"data.dir={tmp_path / 'data'}", "data.num_videos=4", "data.duration_s=4",
        "video.fps=1", "video.min_frames=2", "video.max_frames=2", "video.max_pixels=12544",
        "rollout.group_size=2", "rollout.max_new_tokens=8", "trainer.prompts_per_step=2",
        f"trainer.output_dir={tmp_path / 'run'}", "trainer.checkpoint_every=0", "trainer.eval_every=0",
        "sft.steps=0", *extra,
    ])
