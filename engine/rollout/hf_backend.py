"""Generation backend on Hugging Face transformers: a batched, KV-cached sampling loop with video inputs.

One prefill over the left-padded batch (every request may reference several videos, each one run of
<|video_pad|> tokens), then one decode step per new token for the rows still running; finished rows
leave the KV cache. Each request samples with its own torch.Generator seeded from its SamplingParams,
so its continuation does not depend on what else shares the batch (up to float non-associativity).

Log-probs: the log-softmax of logits / temperature over the whole vocabulary — the quantity the
learner recomputes, and (with top_p = 1) exactly the distribution sampled from. Placeholder ids
(engine.rollout.backend.placeholder_ids) are not masked out, since that would change the distribution;
a sampled one ends the continuation before it, as the vLLM backend does (see backend.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from transformers import DynamicCache

from engine.errors import VideoRequestError
from engine.native import mrope_config, mrope_position_ids
from engine.rollout.backend import (Generation, Request, SamplingParams, check_params, placeholder_ids,
                                   weights_digest)
from engine.rollout.batch import VideoInput

__all__ = ["HFBackend", "Generation", "Request", "SamplingParams"]


@dataclass
class _Row:
    """Decode state of one request."""

    index: int  # position in the caller's request list
    params: SamplingParams
    generator: torch.Generator
    stop_chars: int  # longest stop string: how much decoded tail a stop check needs
    ids: list[int]
    logprobs: list[float]
    finish_reason: str | None = None
    stop: str | int | None = None


def _video_runs(ids: list[int], video_id: int) -> list[int]:
    """Lengths of the maximal runs of `video_id` in `ids`, in order."""
    runs, n = [], 0
    for t in ids:
        if t == video_id:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    if n:
        runs.append(n)
    return runs


class HFBackend:
    """Batched sampling with a KV cache on any transformers Qwen2.5-VL model (CPU or GPU)."""

    def __init__(self, model, tokenizer, max_batch: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        c = model.config
        self.pad_id = tokenizer.pad_token_id
        self.video_token_id = c.video_token_id
        self.image_token_id = c.image_token_id
        self.merge = c.vision_config.spatial_merge_size
        self.mrope = mrope_config(c)
        self.placeholder_ids = placeholder_ids(c, self.pad_id)
        self._version = 0

    # ------------------------------------------------------------------ weights

    @property
    def weight_version(self) -> int:
        return self._version

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        """Copy new weights into the model's tensors in place (no re-allocation, no restart)."""
        state = self.model.state_dict()
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name not in state:
                    raise KeyError(f"load_weights: the model has no tensor named {name!r}")
                if state[name].shape != tensor.shape:
                    raise ValueError(f"load_weights: {name} has shape {tuple(state[name].shape)}, got {tuple(tensor.shape)}")
                state[name].copy_(tensor)
        self._version = int(version)

    def weights_digest(self) -> str:
        """engine.rollout.backend.weights_digest of the model's parameters (HF names)."""
        return weights_digest(self.model.named_parameters())

    # ------------------------------------------------------------------ generation

    def check(self, req: Request) -> None:
        """Raise VideoRequestError/ValueError when a request cannot be run as given."""
        if not req.prompt_ids:
            raise ValueError("request has an empty prompt")
        check_params(req.params)
        runs = _video_runs(req.prompt_ids, self.video_token_id)
        if len(runs) != len(req.videos):
            raise VideoRequestError(f"prompt has {len(runs)} <|video_pad|> runs but {len(req.videos)} videos were given")
        for k, (n, v) in enumerate(zip(runs, req.videos)):
            t, h, w = v.grid_thw
            want = t * h * w // (self.merge * self.merge)
            if n != want or v.pixel_values.shape[0] != t * h * w:
                raise VideoRequestError(
                    f"video {k}: grid {v.grid_thw} needs {want} pad tokens and {t * h * w} patch rows, "
                    f"the prompt has {n} pads and the video {v.pixel_values.shape[0]} rows")

    @torch.no_grad()
    def generate(self, requests: list[Request]) -> list[Generation]:
        for r in requests:
            self.check(r)
        out: list[Generation] = []
        for i in range(0, len(requests), self.max_batch):
            out.extend(self._generate_chunk(requests[i : i + self.max_batch]))
        return out

    def _prefill_inputs(self, requests: list[Request]) -> dict:
        n = len(requests)
        length = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((n, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((n, length), dtype=torch.long)
        for i, r in enumerate(requests):
            input_ids[i, length - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention_mask[i, length - len(r.prompt_ids) :] = 1
        types = (input_ids == self.video_token_id).long() * 2 + (input_ids == self.image_token_id).long()
        videos: list[VideoInput] = [v for r in requests for v in r.videos]
        kw = {"input_ids": input_ids, "attention_mask": attention_mask, "mm_token_type_ids": types}
        grids = torch.tensor([v.grid_thw for v in videos], dtype=torch.long) if videos else None
        spg = torch.tensor([v.second_per_grid_t for v in videos], dtype=torch.float32) if videos else None
        # Our own M-RoPE ids (the original rule, engine.native): decode steps then continue from max + 1.
        pos, _ = mrope_position_ids(input_ids, types, None, grids, spg, attention_mask, **self.mrope)
        kw["position_ids"] = pos
        if videos:
            kw["pixel_values_videos"] = torch.cat([v.pixel_values for v in videos]).to(self.model.dtype)
            kw["video_grid_thw"] = grids
            kw["second_per_grid_ts"] = spg
        return kw

    def _sample(self, logits: torch.Tensor, rows: list[_Row]) -> tuple[list[int], list[float]]:
        """One token per row from logits [n, V]: (ids, full-vocabulary log-probs at temperature)."""
        device = logits.device
        temps = torch.tensor([r.params.temperature for r in rows], dtype=torch.float32, device=device)[:, None]
        greedy = temps == 0
        scaled = logits.float() / torch.where(greedy, 1.0, temps)
        logp = scaled.log_softmax(-1)
        probs = scaled.softmax(-1).double()
        # Greedy rows: all mass on the first most likely id (the draw below then cannot pick another).
        probs = torch.where(greedy, torch.zeros_like(probs).scatter(-1, probs.argmax(-1, keepdim=True), 1.0), probs)
        top_p = [r.params.top_p for r in rows]
        if any(p < 1.0 for p in top_p):
            # Nucleus: drop every token outside the smallest most-probable set reaching top_p. The
            # mask goes back to vocabulary order so the CDF below never depends on sort ties.
            sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
            tp = torch.tensor(top_p, dtype=torch.float64, device=device)[:, None]
            drop_sorted = sorted_p.cumsum(-1) - sorted_p >= tp
            probs = probs.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted), 0.0)
        cdf = probs.cumsum(-1)
        # One uniform per row from that row's own generator: inverse-CDF sampling is then a pure
        # function of (seed, logits), independent of the other rows in the batch.
        u = torch.stack([torch.rand((), dtype=torch.float64, generator=r.generator) for r in rows]).to(device)
        pick = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).clamp_max(cdf.shape[1] - 1)
        # Guard the zero-probability slots a float-equal CDF step could land on.
        pick = torch.where(probs.gather(-1, pick) > 0, pick, (probs > 0).double().argmax(-1, keepdim=True))
        tokens = pick.squeeze(-1)
        return tokens.tolist(), logp.gather(-1, tokens[:, None]).squeeze(-1).tolist()

    def _check_stop(self, row: _Row) -> None:
        p, tok = row.params, row.ids[-1]
        if tok in self.placeholder_ids:  # never part of a continuation: cut it, end the row
            row.ids.pop()
            row.logprobs.pop()
            row.finish_reason, row.stop = "stop", tok
            return
        if tok in p.stop_token_ids:
            row.finish_reason, row.stop = "stop", tok
            return
        if p.stop:
            # Every token decodes to >= 1 character, so the last `stop_chars` tokens hold any stop
            # string that the newest token completes; earlier matches would have stopped already.
            tail = self.tokenizer.decode(row.ids[-row.stop_chars :], skip_special_tokens=False)
            for s in p.stop:
                if s in tail:
                    row.finish_reason, row.stop = "stop", s
                    return
        if len(row.ids) >= p.max_new_tokens:
            row.finish_reason = "length"

    def _generate_chunk(self, requests: list[Request]) -> list[Generation]:
        device = next(self.model.parameters()).device
        rows = []
        for i, r in enumerate(requests):
            g = torch.Generator(device="cpu")
            g.manual_seed(int(r.params.seed) & 0xFFFF_FFFF_FFFF_FFFF)
            rows.append(_Row(i, r.params, g, max((len(s) for s in r.params.stop), default=0), [], []))
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self._prefill_inputs(requests).items()}
        attention_mask = kw["attention_mask"]
        next_pos = kw["position_ids"].amax(dim=(0, 2)) + 1  # [n]
        cache = DynamicCache(config=self.model.config)
        out = self.model(**kw, past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1]
        active = list(range(len(rows)))  # rows of the cache, in order, each an index into `rows`
        while active:
            tokens, logps = self._sample(logits, [rows[a] for a in active])
            still = []
            for slot, (a, t, lp) in enumerate(zip(active, tokens, logps)):
                row = rows[a]
                row.ids.append(t)
                row.logprobs.append(lp)
                self._check_stop(row)
                if row.finish_reason is None:
                    still.append(slot)
            if not still:
                break
            keep = torch.tensor(still, dtype=torch.long, device=device)
            step_ids = torch.tensor([tokens[s] for s in still], dtype=torch.long, device=device)[:, None]
            if len(still) < len(active):
                cache.batch_select_indices(keep)
                attention_mask = attention_mask[keep]
                next_pos = next_pos[keep]
            active = [active[s] for s in still]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=1)
            pos = next_pos.view(1, -1, 1).expand(3, -1, 1)
            out = self.model(input_ids=step_ids, attention_mask=attention_mask, position_ids=pos,
                             past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1]
            next_pos = next_pos + 1
        return [Generation(r.ids, r.logprobs, r.finish_reason or "length", r.stop) for r in rows]
