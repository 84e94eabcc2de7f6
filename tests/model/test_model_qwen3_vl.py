"""Qwen3-VL through vthink's own paths, on a seeded tiny Qwen3-VL (patch 16, DeepStack): the learner's log-probs
(vision outputs handed to the text model, repeats encoded once) equal the model's own forward, and the
transformers rollout backend samples what the learner recomputes. Video in Qwen3-VL's layout: a timestamp, then
each temporal patch as its own vision block."""
import torch

from engine.learner.policy import token_logprobs
from engine.model.tiny import build_tiny_model
from engine.native import mrope_config
from engine.rollout.backend import Request, SamplingParams
from engine.rollout.batch import Sample, VideoInput
from engine.rollout.hf_backend import HFBackend
from engine.learner.batch import BatchIds, learner_batch


def _prompt(tok, video: VideoInput) -> list[int]:
    ids = tok.convert_tokens_to_ids
    t, h, w = video.grid_thw
    out = tok("<|im_start|>user\n", add_special_tokens=False)["input_ids"]
    for k in range(t):  # Qwen3-VL's processor: "<{t:.1f} seconds>" + <|vision_start|> pads <|vision_end|> per patch
        out += tok(f"<{video.frame_times_s[2 * k]:.1f} seconds>", add_special_tokens=False)["input_ids"]
        out += [ids("<|vision_start|>")] + [ids("<|video_pad|>")] * (h * w // 4) + [ids("<|vision_end|>")]
    return out + tok("What colour?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]


def test_qwen3_vl_learner_and_hf_backend_agree_with_the_model():
    model, tok = build_tiny_model(seed=0, arch="qwen3_vl")
    assert mrope_config(model.config)["rule"] == "qwen3_vl"
    g = torch.Generator().manual_seed(3)
    grid = (2, 4, 4)  # two temporal patches of 4x4 patches (16 px): 4 merged tokens each
    video = VideoInput(torch.randn(32, 3 * 2 * 16 * 16, generator=g), grid, 1.0, 0.0, 4.0, (0.0, 1.0, 2.0, 3.0))
    prompt = _prompt(tok, video)

    backend = HFBackend(model, tok)
    gens = backend.generate([Request(prompt, [video], SamplingParams(max_new_tokens=6, temperature=0.9, seed=s))
                             for s in (1, 2)])
    assert backend.counters["videos_encoded"] == 1  # the group's shared prompt and video: prefilled once
    samples = [Sample(i, "r", prompt, x.token_ids, x.logprobs, video) for i, x in enumerate(gens)]
    T = learner_batch(samples, BatchIds.of(tok, model.config))
    with torch.no_grad():
        learner = token_logprobs(model, T, temperature=0.9)  # both rows' video encoded once (encode_distinct)
        # The model's own forward: transformers' vision path and DeepStack aggregation, the same positions.
        own = model(input_ids=T["input_ids"], attention_mask=T["attention_mask"], position_ids=T["position_ids"],
                    pixel_values_videos=T["pixel_values_videos"], video_grid_thw=T["video_grid_thw"]).logits
    m = T["loss_mask"].bool()
    want = (own[:, :-1].float() / 0.9).log_softmax(-1).gather(-1, T["input_ids"][:, 1:, None]).squeeze(-1)
    assert torch.allclose(learner[:, 1:][m[:, 1:]], want[m[:, 1:]], atol=1e-5)
    assert torch.allclose(learner[m], T["rollout_logp"][m], atol=1e-4)  # rollout == learner: logp_gap
    # The positions are the published rule's: transformers' own get_rope_index agrees on unpadded rows.
    n = int(T["attention_mask"][0].sum())
    ref, _ = model.model.get_rope_index(T["input_ids"][:1, :n], T["mm_token_type_ids"][:1, :n], None,
                                        T["video_grid_thw"][:1])
    assert torch.equal(ref, T["position_ids"][:, :1, :n])
