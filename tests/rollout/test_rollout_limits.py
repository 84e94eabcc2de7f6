"""The vLLM engine's limits from the run's budgets (engine/rollout/limits.py)."""
from engine.config import load_config
from engine.rollout import limits
from engine.video.spec import QWEN2_5_VL, QWEN3_VL


def test_max_model_len_covers_prompt_video_turns_and_observations():
    cfg = load_config("configs/qwen25vl_7b_grpo.yaml", [])
    n = limits.max_model_len(cfg.rollout, cfg.video, QWEN2_5_VL)
    video = 8 * (cfg.video.max_pixels // 28**2)  # 16 frames: 8 temporal patches of 128 tokens
    assert n % 256 == 0 and n >= limits.PROMPT_TEXT_TOKENS + video + cfg.rollout.max_trajectory_tokens
    agent = load_config("configs/qwen25vl_7b_grpo.yaml", ["rollout.mode=agent", "rollout.max_turns=3"])
    # the observations' frames come on top
    assert limits.max_model_len(agent.rollout, agent.video, QWEN2_5_VL) >= n + agent.rollout.max_visual_tokens
    # Qwen3-VL: 32-pixel factor, fewer tokens per frame, plus a timestamp per temporal patch.
    assert limits.max_model_len(cfg.rollout, cfg.video, QWEN3_VL) <= n
    fixed = load_config("configs/qwen25vl_7b_grpo.yaml", ["rollout.max_model_len=32768"])
    assert limits.max_model_len(fixed.rollout, fixed.video, QWEN2_5_VL) == 32768


def test_memory_share_is_smaller_when_colocated():
    def share(*overrides):
        cfg = load_config(None, list(overrides))
        return limits.gpu_memory_utilization(cfg.rollout, cfg.ray.colocate)

    assert share("ray.colocate=true") == 0.45
    assert share() == 0.85
    assert share("rollout.gpu_memory_utilization=0.6") == 0.6
