"""Recipes: the training loops, each readable top to bottom in one sitting.

grpo.py  `vthink train`: data -> rollout -> score -> advantages -> update -> sync -> log / eval / checkpoint.
sft.py   `vthink sft` and the warm-up before GRPO: teacher-forced samples -> update -> eval / checkpoint -> export.

Recipes call components (engine/orchestration's cluster of Ray actors, rewards, advantages, the evaluation) and
hold no component logic themselves.
"""
