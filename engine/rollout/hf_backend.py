"""Generation backend on Hugging Face transformers: a batched, KV-cached sampling loop with video inputs.

One prefill over the left-padded batch (every request may reference several videos, each one run of
<|video_pad|> tokens), then one decode step per new token for the rows still running; finished rows
leave the KV cache. The cache and the attention mask are allocated once per call, sized for prompt +
max_new_tokens, and each step writes its token in place (engine.rollout.kv_cache): no per-token copy of
the whole cache. Each request samples with its own torch.Generator seeded from its SamplingParams,
so its continuation does not depend on what else shares the batch (up to float non-associativity).

No work twice: identical requests in one call (a group's G first turns) are prefilled once and their KV
copied; a request that extends a sequence this backend already ran (an agent turn after a tool call or a
re-look) prefills only its new tokens on the kept KV (engine.rollout.prefix_cache), and the vision tower
runs only on videos among those new tokens, each distinct one once (engine.model.vision).

Log-probs: the log-softmax of logits / temperature over the whole vocabulary — the quantity the
learner recomputes, and (with top_p = 1) exactly the distribution sampled from. Placeholder ids
(engine.rollout.backend.placeholder_ids) are not masked out, since that would change the distribution;
a sampled one ends the continuation before it, as the vLLM backend does (see backend.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from transformers.cache_utils import Cache

from engine.errors import VideoRequestError
from engine.model.vision import encode_distinct, encoder_output
from engine.native import mrope_config, mrope_position_ids
from engine.rollout.backend import (Backend, Generation, Request, SamplingParams, check_params, placeholder_ids,
                                   weights_digest)
from engine.rollout.kv_cache import preallocated_cache
from engine.rollout.prefix_cache import Prefix, PrefixCache
from engine.telemetry.phases import PhaseTimer

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


def _left_padded(parts: list[torch.Tensor | None], length: int) -> torch.Tensor:
    """[n, heads, length, dim] from per-row [heads, l_i, dim] KV (None: nothing), each row's padded on the left."""
    ref = next(t for t in parts if t is not None)
    out = ref.new_zeros((len(parts), ref.shape[0], length, ref.shape[2]))
    for i, t in enumerate(parts):
        if t is not None:
            out[i, :, length - t.shape[1]:] = t
    return out


PREFIX_CACHE_BYTES = 2**30  # kept prompt KV for reuse across a group's samples and turns (`vthink plan` counts it)


class HFBackend(Backend):
    """Batched sampling with a KV cache on a transformers Qwen2.5-VL or Qwen3-VL model (CPU or GPU)."""

    def __init__(self, model, tokenizer, max_batch: int = 64, prefix_cache_bytes: int = PREFIX_CACHE_BYTES):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        c = model.config
        self.pad_id = tokenizer.pad_token_id
        self.video_token_id = c.video_token_id
        self.merge = c.vision_config.spatial_merge_size
        self.mrope = mrope_config(c)
        self.placeholder_ids = placeholder_ids(c, self.pad_id)
        preallocated_cache(c, 0)  # refuses a decoder it cannot hold (sliding-window layers) now, not mid-rollout
        self._version = 0
        self.prefixes = PrefixCache(prefix_cache_bytes)
        # Work done and work saved: tokens prefilled vs taken from kept prefixes, videos through the tower
        # vs served by an identical one in the same call.
        self.counters = {"prefill_tokens": 0, "reused_tokens": 0, "videos_encoded": 0, "videos_reused": 0}
        self.phases = PhaseTimer(cuda_sync=True)  # vision_tower, prefill, sampling

    def pop_phases(self) -> dict[str, float]:
        return self.phases.pop()

    def episodes_done(self) -> None:
        self.prefixes.clear()  # the KV kept to continue those episodes

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
        self.prefixes.clear()  # KV computed by the old weights
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
        # Qwen3-VL writes a timestamp before each temporal patch: a video is then t runs of h*w pads, not one.
        per_patch = self.mrope["rule"] == "qwen3_vl"
        want_runs = [(k, v) for k, v in enumerate(req.videos) for _ in range(v.grid_thw[0] if per_patch else 1)]
        if len(runs) != len(want_runs):
            raise VideoRequestError(f"prompt has {len(runs)} <|video_pad|> runs but its {len(req.videos)} videos "
                                    f"need {len(want_runs)}")
        for n, (k, v) in zip(runs, want_runs):
            t, h, w = v.grid_thw
            want = (1 if per_patch else t) * h * w // (self.merge * self.merge)
            if n != want or v.pixel_values.shape[0] != t * h * w:
                raise VideoRequestError(
                    f"video {k}: grid {v.grid_thw} needs runs of {want} pad tokens and {t * h * w} patch rows, "
                    f"the prompt has a run of {n} pads and the video {v.pixel_values.shape[0]} rows")

    @torch.no_grad()
    def generate(self, requests: list[Request]) -> list[Generation]:
        for r in requests:
            self.check(r)
        out: list[Generation] = []
        for i in range(0, len(requests), self.max_batch):
            out.extend(self._generate_chunk(requests[i : i + self.max_batch]))
        return out

    def _sample(self, logits: torch.Tensor, rows: list[_Row]) -> tuple[list[int], list[float]]:
        """One token per row from logits [n, V]: (ids, full-vocabulary log-probs at temperature)."""
        device = logits.device
        temps = torch.tensor([r.params.temperature for r in rows], dtype=torch.float32, device=device)[:, None]
        greedy = temps == 0
        scaled = logits.float() / torch.where(greedy, 1.0, temps)
        logp = scaled.log_softmax(-1)
        probs = scaled.softmax(-1).double()
        if any(r.params.temperature == 0 for r in rows):
            # Greedy rows: all mass on the first most likely id (the draw below then cannot pick another).
            one_hot = torch.zeros_like(probs).scatter(-1, probs.argmax(-1, keepdim=True), 1.0)
            probs = torch.where(greedy, one_hot, probs)
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
        # Guard the zero-probability slots a float-equal CDF step could land on (rare: looked for only then).
        landed = probs.gather(-1, pick) > 0
        if not bool(landed.all()):
            pick = torch.where(landed, pick, (probs > 0).double().argmax(-1, keepdim=True))
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
        prefixes = [self.prefixes.match(r.prompt_ids, r.videos) for r in requests]
        # Identical work is prefilled once: a group's G first turns share prompt and video.
        work: dict[tuple, int] = {}
        slot_of = [work.setdefault((id(p), tuple(r.prompt_ids), tuple(map(id, r.videos))), len(work))
                   for r, p in zip(requests, prefixes)]
        unique = [slot_of.index(k) for k in range(len(work))]
        max_new = max(r.params.max_new_tokens for r in requests)
        with self.phases.phase("prefill"):
            logits, cache, attention_mask, next_pos = self._prefill(
                [requests[i] for i in unique], [prefixes[i] for i in unique], device, max_new)
        for p in prefixes:
            self.prefixes.discard(p)  # each continuation re-files its longer sequence below
        if len(unique) < len(requests):
            expand = torch.tensor(slot_of, dtype=torch.long, device=device)
            cache.batch_select_indices(expand)
            logits, attention_mask, next_pos = logits[expand], attention_mask[expand], next_pos[expand]
        with self.phases.phase("sampling"):
            self._decode(requests, rows, logits, cache, attention_mask, next_pos, device)
        return [Generation(r.ids, r.logprobs, r.finish_reason or "length", r.stop) for r in rows]

    def _decode(self, requests, rows, logits, cache, attention_mask, next_pos, device) -> None:
        """One token per running row per model call, until every row has stopped.

        `attention_mask` spans the cache's whole capacity; its first `filled` columns are the positions fed so
        far, and each step sets one more column in place."""
        active = list(range(len(rows)))  # rows of the cache, in order, each an index into `rows`
        filled = cache.get_seq_length()
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
                else:
                    self._keep_prefix(requests[a], row, cache, attention_mask[:, :filled], slot)
            if not still:
                break
            keep = torch.tensor(still, dtype=torch.long, device=device)
            step_ids = torch.tensor([tokens[s] for s in still], dtype=torch.long, device=device)[:, None]
            if len(still) < len(active):
                cache.batch_select_indices(keep)
                attention_mask = attention_mask[keep]
                next_pos = next_pos[keep]
            active = [active[s] for s in still]
            attention_mask[:, filled] = 1
            filled += 1
            pos = next_pos.view(1, -1, 1).expand(3, -1, 1)
            out = self.model(input_ids=step_ids, attention_mask=attention_mask[:, :filled], position_ids=pos,
                             past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1]
            next_pos = next_pos + 1

    # ------------------------------------------------------------------ prefill with reused prefixes

    def _prefill(self, requests: list[Request], prefixes: list[Prefix | None], device, max_new: int
                 ) -> tuple[torch.Tensor, Cache, torch.Tensor, torch.Tensor]:
        """Run each request's tokens after its cached prefix (all of them without one) as one batch.

        Layout of row i: [pad | its prefix's cached KV | pad | its new tokens], padded on the left of both
        parts; the attention mask hides the pads. Positions are the M-RoPE ids of the whole prompt (our
        rule, engine.native) sliced to the new tokens, so a continued row sees exactly the ids a full
        prefill would give it. Returns (last logits [n, V], cache, attention mask, next position [n]); the cache
        and the mask hold P + S + max_new positions, every one a row can reach, so decoding grows no tensor.
        """
        n = len(requests)
        past = [len(p.ids) if p else 0 for p in prefixes]
        new = [r.prompt_ids[k:] for r, k in zip(requests, past)]
        P, S = max(past), max(map(len, new))
        full_len = max(len(r.prompt_ids) for r in requests)
        full = torch.full((n, full_len), self.pad_id, dtype=torch.long)
        full_mask = torch.zeros((n, full_len), dtype=torch.long)
        for i, r in enumerate(requests):
            full[i, full_len - len(r.prompt_ids):] = torch.tensor(r.prompt_ids)
            full_mask[i, full_len - len(r.prompt_ids):] = 1
        videos = [v for r in requests for v in r.videos]
        grids = torch.tensor([v.grid_thw for v in videos], dtype=torch.long) if videos else None
        spg = torch.tensor([v.second_per_grid_t for v in videos], dtype=torch.float32) if videos else None
        pos_full, _ = mrope_position_ids(full, None, None, grids, spg, full_mask, **self.mrope)  # types from ids
        input_ids = torch.full((n, S), self.pad_id, dtype=torch.long)
        position_ids = torch.ones((3, n, S), dtype=torch.long)
        attention_mask = torch.zeros((n, P + S + max_new), dtype=torch.long)
        for i, (ids, k) in enumerate(zip(new, past)):
            input_ids[i, S - len(ids):] = torch.tensor(ids)
            position_ids[:, i, S - len(ids):] = pos_full[:, i, full_len - len(ids):]
            attention_mask[i, P - k:P] = 1
            attention_mask[i, P + S - len(ids):] = 1
        cache = preallocated_cache(self.model.config, P + S + max_new)
        if P:
            layers = len(next(p for p in prefixes if p).keys)
            for layer in range(layers):
                cache.update(_left_padded([p and p.keys[layer] for p in prefixes], P).to(device),
                             _left_padded([p and p.values[layer] for p in prefixes], P).to(device), layer)
        self.counters["prefill_tokens"] += sum(map(len, new))
        self.counters["reused_tokens"] += sum(past)
        # Only the videos whose pads are among the new tokens go through the tower, each distinct one once.
        fresh = [v for r, p in zip(requests, prefixes) for v in r.videos[len(p.videos) if p else 0:]]
        mm = None
        if fresh:
            visual = self.model.model.visual
            pixels = torch.cat([v.pixel_values for v in fresh]).to(device, visual.dtype)
            with self.phases.phase("vision_tower"):
                embeds, deep, ran = encode_distinct(visual, pixels,
                                                    torch.tensor([v.grid_thw for v in fresh], device=device))
            self.counters["videos_encoded"] += ran
            self.counters["videos_reused"] += len(fresh) - ran
            mm = {"video": encoder_output(embeds, deep)}
        attention_mask = attention_mask.to(device)
        out = self.model(input_ids=input_ids.to(device), attention_mask=attention_mask[:, :P + S],
                         position_ids=position_ids.to(device), mm_encoder_outputs=mm, past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[:, -1], cache, attention_mask, pos_full.amax(dim=(0, 2)).to(device) + 1

    def _keep_prefix(self, req: Request, row: _Row, cache: Cache, attention_mask: torch.Tensor,
                     slot: int) -> None:
        """File a finished row's KV for a later request that extends it.

        Only rows that stopped on a stop string are kept: those are the ones a caller continues (a tool
        call, a grounded re-look). The cache holds every token fed so far, i.e. all but the last sampled.
        """
        if row.finish_reason != "stop" or not isinstance(row.stop, str) or not self.prefixes.enabled:
            return
        valid = attention_mask[slot].bool()
        fed = int(valid.sum())
        # Boolean indexing copies: the entry owns its KV, whatever the cache does next.
        keys = [layer.keys[slot][:, valid] for layer in cache.layers]
        values = [layer.values[slot][:, valid] for layer in cache.layers]
        self.prefixes.put(Prefix((req.prompt_ids + row.ids)[:fed], list(req.videos), keys, values))
