"""Generation backend on Hugging Face transformers: batched, KV-cached sampling with video inputs."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.rollout.batch import VideoInput


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0


@dataclass
class Request:
    prompt_ids: list[int]
    video: VideoInput | None = None


@dataclass
class Generation:
    token_ids: list[int]  # produced ids, ending with the stop token when finished
    logprobs: list[float]  # log-prob of each produced id under the sampling distribution
    finished: bool


class HFBackend:
    """Runs `model.generate` over a batch of requests (left-padded), one forward per new token."""

    def __init__(self, model, tokenizer, stop_token_ids: list[int]):
        self.model = model
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids
        self.pad_id = tokenizer.pad_token_id
        self.video_token_id = model.config.video_token_id
        # Vision placeholders are the engine's to insert: a sampled one would misalign the video features.
        c = model.config
        self.suppressed_ids = sorted({c.video_token_id, c.image_token_id, c.vision_start_token_id, c.vision_end_token_id, self.pad_id})

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Copy new weights in place (no re-allocation, no restart)."""
        with torch.no_grad():
            params = dict(self.model.named_parameters())
            for name, tensor in state_dict.items():
                params[name].copy_(tensor)

    @torch.no_grad()
    def generate(self, requests: list[Request], params: SamplingParams) -> list[Generation]:
        n = len(requests)
        length = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((n, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((n, length), dtype=torch.long)
        for i, r in enumerate(requests):
            input_ids[i, length - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention_mask[i, length - len(r.prompt_ids) :] = 1
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        videos = [r.video for r in requests if r.video is not None]
        if videos:
            kwargs["mm_token_type_ids"] = (input_ids == self.video_token_id).long() * 2
            kwargs["pixel_values_videos"] = torch.cat([v.pixel_values for v in videos]).to(self.model.dtype)
            kwargs["video_grid_thw"] = torch.tensor([v.grid_thw for v in videos], dtype=torch.long)
            kwargs["second_per_grid_ts"] = torch.tensor([v.second_per_grid_t for v in videos])
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(params.seed)
        try:
            out = self.model.generate(
                **kwargs,
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=0,
                max_new_tokens=params.max_new_tokens,
                eos_token_id=self.stop_token_ids,
                pad_token_id=self.pad_id,
                suppress_tokens=self.suppressed_ids,
                output_scores=True,
                return_dict_in_generate=True,
            )
        finally:
            torch.random.set_rng_state(generator_state)
        new = out.sequences[:, length:]
        logps = torch.stack([s.float().log_softmax(-1) for s in out.scores], dim=1)  # [n, steps, V]
        token_logp = logps.gather(-1, new[:, : logps.shape[1], None]).squeeze(-1)
        results = []
        for i in range(n):
            ids = new[i].tolist()
            stop = next((k for k, t in enumerate(ids) if t in self.stop_token_ids), None)
            end = len(ids) if stop is None else stop + 1
            results.append(Generation(ids[:end], token_logp[i, :end].tolist(), finished=stop is not None))
        return results
