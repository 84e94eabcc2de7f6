"""Token log-probs (and entropies) of a Qwen2.5-VL or Qwen3-VL policy from its last hidden states, via
kernels.linear_logprob, and the GRPO loss with the LM head inside the loss kernel (kernels.linear_grpo).

The LM head is applied only inside the fused kernel, so the [B, L, V] logits are never built. The vision
tower runs exactly once per call, on the batch's distinct images and videos together (a group's repeated
prompt video is encoded once), or on a one-patch-group dummy when `run_visual` asks for it and the batch
has none: under FSDP every rank must run the same sequence of sharded modules, whatever its micro-batch holds.
"""
from __future__ import annotations

import torch

from engine.model.vision import encode_distinct, encoder_output
from kernels import linear_grpo_loss, linear_logprob

VIDEO_INPUTS = ("pixel_values_videos", "video_grid_thw")
IMAGE_INPUTS = ("pixel_values", "image_grid_thw")


def _vision(core, batch: dict, run_visual: bool) -> tuple[dict, torch.Tensor | None]:
    """(mm_encoder_outputs for the text model, a zero-valued anchor that ties a dummy vision pass into the graph)."""
    visual = core.visual
    dtype = visual.patch_embed.proj.weight.dtype
    parts = [(name, batch[pix], batch[grid]) for name, (pix, grid) in
             (("image", IMAGE_INPUTS), ("video", VIDEO_INPUTS)) if pix in batch]
    merge = visual.spatial_merge_size
    if not parts:
        if not run_visual:
            return {}, None
        cfg = visual.config
        width = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
        device = batch["input_ids"].device
        dummy = torch.zeros(merge * merge, width, dtype=dtype, device=device)
        grid = torch.tensor([[1, merge, merge]], device=device)
        out, deep, _ = encode_distinct(visual, dummy, grid)
        return {}, sum(t.sum() for t in [out, *(deep or [])]) * 0.0
    pixels = torch.cat([p.to(dtype) for _, p, _ in parts])
    grids = torch.cat([g for _, _, g in parts])
    embeds, deep, _ = encode_distinct(visual, pixels, grids)
    outputs, start = {}, 0
    for name, _, grid in parts:
        n = int((grid.prod(-1) // (merge * merge)).sum())
        rows = slice(start, start + n)
        outputs[name] = encoder_output(embeds[rows], None if deep is None else [d[rows] for d in deep])
        start += n
    return outputs, None


def last_hidden(model, batch: dict, run_visual: bool = False) -> torch.Tensor:
    """Last hidden states [B, L, H] of a Qwen2.5-VL or Qwen3-VL ...ForConditionalGeneration `model`."""
    if "position_ids" not in batch:
        # transformers would compute its own M-RoPE ids, by a rule the rollout does not use.
        raise ValueError("last_hidden: the batch has no position_ids (engine.native.mrope_position_ids)")
    core = model.model
    mm_outputs, anchor = _vision(core, batch, run_visual)
    # Positions are given, so grids, timings and token types (only used to derive positions) stay out.
    kwargs = {k: batch[k] for k in ("attention_mask", "position_ids") if k in batch}
    hidden = core(input_ids=batch["input_ids"], mm_encoder_outputs=mm_outputs or None, use_cache=False,
                  **kwargs).last_hidden_state
    return hidden if anchor is None else hidden + anchor.to(hidden.dtype)


def masked_logprobs(hidden: torch.Tensor, weight: torch.Tensor, input_ids: torch.Tensor, loss_mask: torch.Tensor,
                    temperature: float = 1.0, with_entropy: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(input_ids[:, j] | prefix) and the entropy of that distribution where loss_mask[:, j] != 0 (j >= 1).

    fp32 [B, L] each, 0 elsewhere (entropy None without with_entropy). Only the masked rows reach the kernel.
    """
    target = loss_mask[:, 1:] != 0
    h = hidden[:, :-1][target]
    targets = input_ids[:, 1:][target].long()
    logp, ent = linear_logprob(h, weight, targets, temperature=temperature, with_entropy=with_entropy)
    where = torch.zeros(loss_mask.shape, dtype=torch.bool, device=hidden.device)
    where[:, 1:] = target
    zeros = torch.zeros(loss_mask.shape, dtype=torch.float32, device=hidden.device)
    return zeros.masked_scatter(where, logp), (None if ent is None else zeros.masked_scatter(where, ent))


def policy_logprobs(model, batch: dict, temperature: float = 1.0, with_entropy: bool = True,
                    run_visual: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """masked_logprobs of `batch` under `model` (needs input_ids, attention_mask, loss_mask and the model inputs)."""
    hidden = last_hidden(model, batch, run_visual)
    return masked_logprobs(hidden, model.lm_head.weight, batch["input_ids"], batch["loss_mask"], temperature,
                           with_entropy)


def fused_grpo_loss(model, batch: dict, temperature: float, old: torch.Tensor | None, ref: torch.Tensor | None,
                    advantages: torch.Tensor, mask: torch.Tensor, run_visual: bool = False, **opts
                    ) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor | None]:
    """The GRPO loss of `batch` with the LM head inside the loss kernel (kernels.linear_grpo: 3 GEMMs, the
    gradients computed in the forward) -> (loss, stats, logp [B, L], entropy [B, L]).

    old None: the old log-probs are this pass's own (on-policy). Only loss tokens reach the kernel: each row's
    are packed to the left of a [B, T'] grid, which changes nothing (every GRPO term is per token, normalised
    per row or per batch). `opts` are grpo_loss's keywords (clip_low, ..., agg, entropy_coef, max_len).
    """
    hidden = last_hidden(model, batch, run_visual)
    B, L, H = hidden.shape
    m = mask[:, 1:] != 0
    n = m.sum(1)
    T = max(int(n.max()), 1)
    order = torch.argsort((~m).to(torch.int8), dim=1, stable=True)[:, :T]  # each row's loss positions, in order
    keep = torch.arange(T, device=hidden.device)[None] < n[:, None]

    def pack(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[:, 1:].gather(1, order)

    h = hidden[:, :-1].gather(1, order[..., None].expand(-1, -1, H)).reshape(B * T, H)
    targets = torch.where(keep, pack(batch["input_ids"]), -100).reshape(-1)
    adv = pack(advantages) if advantages.dim() == 2 else advantages
    loss, stats, lp, ent = linear_grpo_loss(h, model.lm_head.weight, targets, pack(old), pack(ref), adv,
                                            keep.float(), temperature=temperature, **opts)

    def unpack(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        out = torch.zeros(B, L, dtype=torch.float32, device=hidden.device)
        out[:, 1:].scatter_(1, order, torch.where(keep, x.float(), 0.0))
        return out

    return loss, stats, unpack(lp), unpack(ent)


class LogprobModel(torch.nn.Module):
    """Wraps an HF model so that one forward() (FSDP's unit of parameter gathering) yields token log-probs.

    FSDP2 gathers the root's parameters (embeddings, final norm, LM head, vision patch embedding and merger)
    in the root's forward; calling `hf.model(...)` and reading `hf.lm_head.weight` from outside any forward
    would see shards. Holding the HF model as `hf` keeps its parameter names under the "hf." prefix.
    """

    def __init__(self, hf: torch.nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, batch: dict, temperature: float = 1.0, with_entropy: bool = True,
                run_visual: bool = False, grpo: dict | None = None):
        """(logp, entropy) of `batch`; with `grpo` (fused_grpo_loss's keywords), (loss, stats, logp, entropy)."""
        if grpo is not None:
            return fused_grpo_loss(self.hf, batch, temperature, run_visual=run_visual, **grpo)
        return policy_logprobs(self.hf, batch, temperature, with_entropy, run_visual)
