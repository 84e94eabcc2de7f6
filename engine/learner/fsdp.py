"""FSDPLearner: the GRPO learner of one rank of an FSDP2 (`fully_shard`) group: NCCL on GPU, gloo on CPU.

Plain class; it assumes torch.distributed is initialised (the Ray actor wrapping it does that). Every rank
gets the *same full batch*; each computes the same plan (engine.learner.microbatch) and runs its own shard:

  * rows are split over ranks by Karmarkar-Karp on their token counts (text + visual), then packed into
    micro-batches of at most `learner.micro_batch_tokens`; ranks with fewer micro-batches run zero-weight
    ones so that every rank issues the same collectives (FSDP gathers each layer in every forward);
  * the loss of each micro-batch is kernels.grpo_loss with algo.loss_agg's aggregation, weighted so that the sum
    over micro-batches and ranks is exactly the full batch's loss: for token-mean by its share of the
    batch's loss tokens, for the seq-mean-* modes by its share of the batch's non-empty sequences. FSDP
    averages gradients over ranks, so each rank back-propagates world_size times its part;
  * log-probs come from kernels.linear_logprob on the last hidden states (engine.learner.logprob);
  * a non-finite loss or gradient norm anywhere skips the optimizer step on every rank, is logged and counted.

Building it costs each rank its shards, not the model: policy and reference are created on the meta device,
sharded, and each rank reads only its own rows of the checkpoint (see `_build_sharded`).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Iterator, Literal

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from engine import native
from engine.config import AlgoConfig, Config, LearnerConfig, ModelConfig, OptimConfig, VideoConfig
from engine.errors import ConfigError
from engine.learner import checkpoint, microbatch
from engine.learner.attention import choose_attention
from engine.learner.batch import BatchIds, learner_batch, weight_key_spans
from engine.learner.errors import LearnerBatchError
from engine.learner.logprob import LogprobModel
from engine.learner.policy import warmup_schedule
from engine.model import load_policy, policy_dir
from engine.telemetry.phases import PhaseTimer
from kernels import grpo_loss

log = logging.getLogger(__name__)

# Sums all-reduced after an update, in this order; see FSDPLearner.update.
_SUMS = ("loss", "clip_frac", "approx_kl", "kl", "ratio_mean", "entropy", "logp_gap_mean", "nonfinite")


def _shard(wrapper: LogprobModel, mesh, mp: MixedPrecisionPolicy | None, offload: bool = False) -> LogprobModel:
    """fully_shard every text decoder layer, every vision block, then the root (what is left); with `offload`, the
    shards (and their gradients and optimizer state) live in host memory."""
    core = wrapper.hf.model
    kwargs = {"mesh": mesh} if mp is None else {"mesh": mesh, "mp_policy": mp}
    if offload:
        kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=mesh.device_type == "cuda")
    for block in core.visual.blocks:
        fully_shard(block, **kwargs)
    for layer in core.language_model.layers:
        fully_shard(layer, **kwargs)
    fully_shard(wrapper, **kwargs)
    return wrapper


def _checkpoint_keys(model: torch.nn.Module, local: Path) -> dict[str, tuple[Path, str]] | None:
    """{parameter name: (safetensors file, key)} when the checkpoint holds every parameter under its module name or
    its saved name (engine.model.loading.checkpoint_name); None when it does not (another layout)."""
    from safetensors import safe_open

    from engine.model.loading import checkpoint_name

    where: dict[str, Path] = {}
    for f in sorted(local.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            where.update((k, f) for k in st.keys())
    out = {}
    for name, _ in model.named_parameters():
        key = name if name in where else checkpoint_name(name)
        if key not in where:
            return None
        out[name] = (where[key], key)
    return out


@torch.no_grad()
def _read_own_rows(model: torch.nn.Module, keys: dict[str, tuple[Path, str]], rank: int, world_size: int) -> None:
    """Fill each parameter's local shard from the checkpoint, reading only its rows: FSDP2 gives rank r rows
    [r*c, (r+1)*c) of dim 0, c = ceil(rows / world_size), as torch.chunk does."""
    from contextlib import ExitStack

    from safetensors import safe_open

    with ExitStack() as stack:
        files = {f: stack.enter_context(safe_open(str(f), framework="pt")) for f, _ in set(keys.values())}
        for name, p in model.named_parameters():
            f, key = keys[name]
            local = p.to_local() if isinstance(p, DTensor) else p
            if local.dim() == 0:
                local.copy_(files[f].get_tensor(key))
                continue
            rows = files[f].get_slice(key)
            n = rows.get_shape()[0]
            start = min(rank * -(-n // world_size), n) if isinstance(p, DTensor) else 0
            local.copy_(rows[start:start + local.shape[0]])


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
    """What a learner needs from a run's config, and nothing more: the sections it reads plus the two rollout
    settings its log-probs must agree with. Built once per run by `LearnerSpec.of(cfg)`."""

    model: ModelConfig
    video: VideoConfig  # written into exported checkpoints, so plain inference samples frames as training did
    optim: OptimConfig
    algo: AlgoConfig
    options: LearnerConfig
    temperature: float  # rollout.temperature: log-probs are log_softmax(logits / T), as the samples were drawn
    max_trajectory_tokens: int  # rollout.max_trajectory_tokens: Dr.GRPO's constant (seq-mean-token-sum-norm)

    @classmethod
    def of(cls, cfg: Config, options: LearnerConfig | None = None) -> LearnerSpec:
        """`cfg`'s learner; `options` replaces its `learner` section (tests and benches compare layouts)."""
        return cls(model=cfg.model, video=cfg.video, optim=cfg.optim, algo=cfg.algo,
                   options=(options or cfg.learner).validate(), temperature=cfg.rollout.temperature,
                   max_trajectory_tokens=cfg.rollout.max_trajectory_tokens)


def _build_sharded(spec: LearnerSpec, rank: int, mesh, mp: MixedPrecisionPolicy | None, device: torch.device):
    """(policy, reference or None, tokenizer, HF config), sharded, holding the initial weights.

    Every rank builds both on the meta device (no memory), shards them, allocates only its shards and reads only
    its own rows of each weight from the checkpoint's safetensors. A checkpoint in a layout whose names do not
    match falls back to rank 0 loading it whole through transformers (which knows every layout) and broadcasting it
    tensor by tensor, each rank keeping its shard (broadcast_from_rank0). Buffers outside the state dict (rotary
    frequencies) are computed on each rank by the model's own initialiser.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer, GenerationConfig

    from engine.model.loading import check_vocab

    local = policy_dir(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(local, local_files_only=True)
    hf_config = AutoConfig.from_pretrained(local, local_files_only=True)
    check_vocab(hf_config, tokenizer)
    compute = mp.param_dtype if mp is not None else torch.float32
    attention = choose_attention(device, compute)
    full = None  # rank 0's whole copy, only for a checkpoint the direct read does not cover
    found: dict = {}  # "keys": where each parameter lies in the checkpoint, looked up once for policy and reference

    def build(trainable: bool) -> LogprobModel:
        nonlocal full
        # The policy keeps fp32 master weights (FSDP casts to the compute dtype per layer); the frozen reference
        # has no optimizer to feed, so it is held in the compute dtype itself: half the memory under bf16.
        with torch.device("meta"):
            hf = AutoModelForImageTextToText.from_config(hf_config, dtype=torch.float32 if trainable else compute,
                                                         attn_implementation=attention)
        if (local / "generation_config.json").is_file():
            hf.generation_config = GenerationConfig.from_pretrained(local, local_files_only=True)
        if trainable and spec.options.activation_checkpointing:
            # Non-reentrant: recomputation re-enters FSDP's hooks, which gather each layer again.
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        hf.requires_grad_(trainable)
        offload = not trainable and spec.options.ref_offload
        wrapper = _shard(LogprobModel(hf), mesh, mp if trainable else None, offload)
        wrapper.to_empty(device=torch.device("cpu") if offload else device)  # offloaded shards live on the host
        if "keys" not in found:  # the same files on every rank: the same choice on every rank
            found["keys"] = _checkpoint_keys(hf, local)
        keys = found["keys"]
        if keys is not None:
            _read_own_rows(hf, keys, rank, mesh.size())
        else:
            if rank == 0 and full is None:
                full = load_policy(str(local), dtype=torch.float32)[0]
            state = full.state_dict() if full is not None else {}
            set_model_state_dict(hf, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        saved = set(hf.state_dict())
        for owner in {n.rpartition(".")[0] for n, _ in hf.named_buffers() if n not in saved}:
            hf._init_weights(hf.get_submodule(owner))  # e.g. rotary inv_freq, recomputed from the config
        if offload:  # FSDP moves the parameters to the device per layer; buffers are used where they are
            for module in wrapper.modules():
                for name, buf in module.named_buffers(recurse=False):
                    module._buffers[name] = buf.to(device)
        return wrapper.train(trainable)

    policy = build(True)
    ref = build(False) if spec.algo.kl_coef > 0 else None
    return policy, ref, tokenizer, hf_config


class FSDPLearner:
    """Policy (trainable, sharded), frozen sharded reference when kl_coef > 0, AdamW, warm-up schedule.

    Every rank loads the same initial weights (model.path, seed model.seed) and shards them. On GPU,
    call torch.cuda.set_device(local_rank) before constructing it: the current device is the learner's.
    """

    def __init__(self, spec: LearnerSpec, rank: int, world_size: int):
        if not dist.is_initialized():
            raise RuntimeError("FSDPLearner needs torch.distributed initialised (gloo on CPU, nccl on GPU)")
        if dist.get_rank() != rank or dist.get_world_size() != world_size:
            raise ValueError(f"rank/world_size {rank}/{world_size} disagree with the process group's "
                             f"{dist.get_rank()}/{dist.get_world_size()}")
        self.spec = spec
        self.phases = PhaseTimer(cuda_sync=True)  # learner_reference, learner_forward_backward, optimizer
        self.options = spec.options
        self.rank, self.world_size = rank, world_size
        if dist.get_backend() == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self.mesh = init_device_mesh(self.device.type, (world_size,))
        # fp32 master weights; a lower model.dtype becomes FSDP's compute (param) dtype.
        compute = getattr(torch, spec.model.dtype)  # model.dtype names a torch dtype
        mp = None if compute == torch.float32 else MixedPrecisionPolicy(param_dtype=compute,
                                                                         reduce_dtype=torch.float32)
        self.policy, self.ref, self.tokenizer, self.hf_config = _build_sharded(
            spec, rank, self.mesh, mp, self.device)
        hf = self.policy.hf
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=spec.optim.lr,
                                           weight_decay=spec.optim.weight_decay)
        self.scheduler = warmup_schedule(self.optimizer, spec.optim.warmup_steps)
        self.step = 0  # update() calls so far, skipped ones included
        self.skipped = 0  # updates skipped for a non-finite loss or gradient norm
        self.merge = hf.config.vision_config.spatial_merge_size
        head = hf.get_output_embeddings()
        self.fused = self.options.fused_loss and isinstance(head, torch.nn.Linear) and head.bias is None
        if self.options.fused_loss and not self.fused:
            log.warning("learner.fused_loss: the LM head is not a bias-free linear layer; using log-probs + loss")
        self.ids = BatchIds.of(self.tokenizer, hf.config)  # this policy's pad / video ids and position rule

    # ------------------------------------------------------------------ model access

    @property
    def hf(self) -> torch.nn.Module:
        """The (sharded) Hugging Face policy inside the FSDP wrapper."""
        return self.policy.hf

    def named_full_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(HF state-dict name, full tensor) of the policy, one at a time. Every rank must iterate it to the end:
        each sharded tensor is all-gathered. Tensors live on the learner's device."""
        for name, t in self.hf.state_dict().items():
            yield name, (t.full_tensor() if isinstance(t, DTensor) else t).detach()

    # ------------------------------------------------------------------ batches

    def batch(self, samples: list, key_weight: float = 1.0) -> dict[str, torch.Tensor]:
        """This policy's learner tensors of `samples` (engine/learner/batch.py); with `key_weight` (SFT), model
        tokens inside <answer>, <tool_call> and <caption> weigh that much more."""
        batch = learner_batch(samples, self.ids)
        batch["loss_mask"] = weight_key_spans(batch["input_ids"], batch["loss_mask"], self.tokenizer, key_weight)
        return batch

    def _prepare(self, batch: dict[str, torch.Tensor], advantages: torch.Tensor | None
                 ) -> tuple[dict[str, torch.Tensor], microbatch.BatchLayout]:
        batch = {k: v for k, v in batch.items()}
        if advantages is not None:
            B = batch["input_ids"].shape[0] if "input_ids" in batch else -1
            if advantages.dim() not in (1, 2) or advantages.shape[0] != B or (
                    advantages.dim() == 2 and tuple(advantages.shape) != tuple(batch["input_ids"].shape)):
                raise LearnerBatchError("advantages", f"must be [B] or [B, L] for input_ids "
                                                      f"{tuple(batch['input_ids'].shape) if B >= 0 else None}, "
                                                      f"got {tuple(advantages.shape)}")
            batch["advantages"] = advantages.float()
        lay = microbatch.layout(batch, self.merge)
        if "loss_mask" not in batch or tuple(batch["loss_mask"].shape) != (lay.size, lay.length):
            raise LearnerBatchError("loss_mask", f"must be [B, L] = {(lay.size, lay.length)}")
        mask = (batch["loss_mask"] != 0) & (batch["attention_mask"] != 0)
        mask[:, 0] = False  # the first token has no prefix to be predicted from
        batch["loss_mask"] = mask.float()
        if "position_ids" not in batch:
            # M-RoPE ids of the whole batch once (csrc, the original Qwen2.5-VL rule), then sliced with the rows.
            batch["position_ids"], _ = native.mrope_position_ids(
                batch["input_ids"], batch.get("mm_token_type_ids"), batch.get("image_grid_thw"),
                batch.get("video_grid_thw"), batch.get("second_per_grid_ts"), batch["attention_mask"],
                **self.ids.mrope)
        return batch, lay

    def _micro_batches(self, lay: microbatch.BatchLayout) -> list[tuple[list[int], bool]]:
        """This rank's (rows, real) micro-batches, padded with zero-weight (real=False) ones up to the busiest
        rank's count."""
        plan = microbatch.plan(lay, self.world_size, self.options.micro_batch_tokens)
        mine = [(rows, True) for rows in plan[self.rank]]
        n = max(len(p) for p in plan)
        # The padding micro-batch: the shortest row with visual inputs if the batch has any (the vision
        # tower must run on every rank), else the shortest row.
        candidates = [r for r in range(lay.size) if any(v.num_items[r] for v in lay.visual.values())]
        spare = min(candidates or range(lay.size), key=lambda r: (lay.tokens[r], r))
        return mine + [([spare], False)] * (n - len(mine))

    def _to_device(self, mb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in mb.items()}

    def _run(self, model: LogprobModel, mb: dict, uses_visual: bool, with_entropy: bool):
        return model(mb, temperature=self.spec.temperature, with_entropy=with_entropy,
                     run_visual=uses_visual)

    # ------------------------------------------------------------------ log-probs

    @torch.no_grad()
    def compute_logprobs(self, batch: dict[str, torch.Tensor], model: Literal["policy", "ref"] = "policy"
                         ) -> torch.Tensor:
        """Token log-probs [B, L] (fp32, CPU, 0 off the loss mask) of the full batch under the policy or the
        reference, the same on every rank: each rank computes its shard, then they are summed across ranks."""
        if model not in ("policy", "ref"):
            raise ValueError(f"model must be 'policy' or 'ref', got {model!r}")
        net = self.policy if model == "policy" else self.ref
        if net is None:
            raise ConfigError("algo.kl_coef", "there is no reference model when kl_coef == 0")
        batch, lay = self._prepare(batch, None)
        was_training = net.training
        net.eval()
        out = torch.zeros(lay.size, lay.length, dtype=torch.float32, device=self.device)
        for rows, real in self._micro_batches(lay):
            mb = self._to_device(microbatch.select(batch, lay, rows))
            logp, _ = self._run(net, mb, lay.has_visual, with_entropy=False)
            if real:
                out[torch.tensor(rows, device=self.device), :logp.shape[1]] = logp
        net.reshard()
        net.train(was_training)
        dist.all_reduce(out)
        return out.cpu()

    # ------------------------------------------------------------------ update

    def _weights(self, mb_mask: torch.Tensor, n_tokens: float, n_seqs: float) -> tuple[float, float]:
        """(loss-aggregation weight, token-mean weight) of a micro-batch within the full batch."""
        tokens = float(mb_mask.sum())
        w_tok = tokens / n_tokens if n_tokens else 0.0
        if self.spec.algo.loss_agg == "token-mean":
            return w_tok, w_tok
        seqs = float((mb_mask.sum(1) > 0).sum())
        return (seqs / n_seqs if n_seqs else 0.0), w_tok

    def update(self, batch: dict[str, torch.Tensor], advantages: torch.Tensor) -> dict[str, float]:
        """One GRPO optimizer step on the full `batch` (identical on every rank). Returns global metrics (floats,
        and `logp_gap_per_sample`: each row's max |rollout - learner| log-prob, when the batch has rollout_logp)."""
        algo = self.spec.algo
        batch, lay = self._prepare(batch, advantages)
        mode = self.options.old_logp
        if mode == "rollout" and "rollout_logp" not in batch:
            raise LearnerBatchError("rollout_logp", "is needed with learner.old_logp = 'rollout'")
        mask_all = batch["loss_mask"]
        n_tokens = float(mask_all.sum())
        n_seqs = float((mask_all.sum(1) > 0).sum())
        self.policy.train()
        sums = torch.zeros(len(_SUMS), dtype=torch.float64, device=self.device)
        gap_max = torch.zeros((), dtype=torch.float64, device=self.device)
        row_gap = torch.zeros(batch["loss_mask"].shape[0], dtype=torch.float64, device=self.device)
        micro = self._micro_batches(lay)
        for rows, real in micro:
            mb_cpu = microbatch.select(batch, lay, rows)
            w_agg, w_tok = self._weights(mb_cpu["loss_mask"], n_tokens, n_seqs) if real else (0.0, 0.0)
            mb = self._to_device(mb_cpu)
            mask = mb["loss_mask"]
            ref_logp = None
            if self.ref is not None:
                with torch.no_grad(), self.phases.phase("learner_reference"):
                    ref_logp, _ = self._run(self.ref, mb, lay.has_visual, with_entropy=False)
            old = mb["rollout_logp"] if mode == "rollout" else None
            if mode == "recompute":
                with torch.no_grad():
                    old, _ = self._run(self.policy, mb, lay.has_visual, with_entropy=False)
            opts = dict(clip_low=algo.clip_low, clip_high=algo.clip_high, kl_type=algo.kl_type,
                        kl_coef=algo.kl_coef if ref_logp is not None else 0.0, agg=algo.loss_agg,
                        entropy_coef=algo.entropy_coef, max_len=self.spec.max_trajectory_tokens)
            with self.phases.phase("learner_forward_backward"):
                if self.fused:  # old None: this pass's own log-probs (on-policy)
                    loss, stats, logp, entropy = self.policy(
                        mb, temperature=self.spec.temperature, run_visual=lay.has_visual,
                        grpo=dict(old=old, ref=ref_logp, advantages=mb["advantages"], mask=mask, **opts))
                else:
                    logp, entropy = self._run(self.policy, mb, lay.has_visual, with_entropy=True)
                    loss, stats = grpo_loss(logp, logp.detach() if old is None else old, ref_logp,
                                            mb["advantages"], mask, entropy=entropy, **opts)
                # FSDP's reduce-scatter averages over ranks; scaling by world_size turns that into the sum.
                (loss * (w_agg * self.world_size)).backward()
            if real:
                loss = loss.detach()
                gap = torch.zeros((), device=self.device)
                if "rollout_logp" in mb:
                    # |rollout - learner| log-prob of each loss token, the learner's on the weights that
                    # sampled it (on-policy): the health of the positional and log-prob agreement.
                    diff = (logp.detach() - mb["rollout_logp"]).abs() * mask
                    gap = diff.sum() / mask.sum().clamp_min(1)
                    gap_max = torch.maximum(gap_max, diff.max().double())
                    row_gap[torch.tensor(rows, device=self.device)] = diff.max(dim=1).values.double()
                part = torch.stack([loss, stats["clip_frac"], stats["approx_kl"], stats["kl"], stats["ratio_mean"],
                                    stats["entropy_mean"], gap.float(), (~torch.isfinite(loss)).float()]).double()
                weights = torch.tensor([w_agg, w_tok, w_tok, w_agg, w_tok, w_tok, w_tok, 1.0], dtype=torch.float64,
                                       device=self.device)
                # 0 * nan is nan: a zero weight must not turn a finite-elsewhere sum into nan
                sums += torch.where(weights == 0, torch.zeros_like(part), part * weights)
        dist.all_reduce(sums)
        dist.all_reduce(gap_max, op=dist.ReduceOp.MAX)
        dist.all_reduce(row_gap, op=dist.ReduceOp.MAX)  # each row was measured on exactly one rank
        metrics = dict(zip(_SUMS, sums.tolist()))
        metrics["logp_gap_max"] = float(gap_max)
        nonfinite = metrics.pop("nonfinite") > 0
        with self.phases.phase("optimizer"):
            metrics.update(self._step(float("nan") if nonfinite else metrics["loss"]))
        metrics.update(self.phases.pop())  # this rank's; rank 0's are the ones logged
        if "rollout_logp" not in batch:
            metrics.pop("logp_gap_mean")
            metrics.pop("logp_gap_max")
        else:
            metrics["logp_gap_per_sample"] = row_gap.tolist()  # per batch row; the trainer's traces show it
        metrics.update(tokens=n_tokens, sequences=n_seqs, micro_batches=float(len(micro)))
        return metrics

    def sft_update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One supervised optimizer step on the full `batch` (identical on every rank; each trains its shard):
        the loss_mask-weighted negative log-likelihood (at temperature 1) over the batch's total mask weight,
        the single-process engine.learner.policy.sft_step sharded. loss_mask may carry weights (key spans)."""
        weights = batch["loss_mask"].float()
        batch, lay = self._prepare(batch, None)  # binarises loss_mask (and drops the first token)
        batch["loss_weight"] = weights * batch["loss_mask"]
        total = float(batch["loss_weight"].sum())
        self.policy.train()
        nll = torch.zeros((), dtype=torch.float64, device=self.device)
        micro = self._micro_batches(lay)
        for rows, real in micro:
            mb = self._to_device(microbatch.select(batch, lay, rows))
            logp, _ = self.policy(mb, temperature=1.0, with_entropy=False, run_visual=lay.has_visual)
            part = -(logp * mb["loss_weight"]).sum()
            # FSDP's reduce-scatter averages over ranks; scaling by world_size turns that into the sum.
            (part * ((self.world_size / total) if real and total else 0.0)).backward()
            if real:
                nll += part.detach().double()
        dist.all_reduce(nll)
        metrics = {"loss": float(nll) / total if total else 0.0}
        return {**metrics, **self._step(metrics["loss"]), "tokens": float(batch["loss_mask"].sum()),
                "micro_batches": float(len(micro))}

    def _step(self, loss: float) -> dict[str, float]:
        """Clip, then step (or skip on a non-finite loss / gradient norm); zero the gradients."""
        nonfinite = not math.isfinite(loss)
        grad_norm = float("nan")
        if not nonfinite:
            norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.spec.optim.grad_clip)
            grad_norm = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
            nonfinite = not math.isfinite(grad_norm)
        if nonfinite:
            self.skipped += 1
            log.warning("step %d: non-finite loss %s / grad norm %s; update skipped (%d so far)",
                        self.step, loss, grad_norm, self.skipped)
        else:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"grad_norm": grad_norm, "lr": self.scheduler.get_last_lr()[0], "skipped": float(nonfinite),
                "skipped_total": float(self.skipped), "step": float(self.step)}

    # ------------------------------------------------------------------ checkpoints

    def export(self, path: str) -> None:
        """Write the policy as a Hugging Face folder (model.dtype, tokenizer, processor files); every rank must
        call it (the shards are gathered), rank 0 writes."""
        checkpoint.export_hf(self, path)

    def save_checkpoint(self, root: str, extra: dict | None = None):
        """Write <root>/step-<step> atomically (see engine.learner.checkpoint); every rank must call it."""
        return checkpoint.save(self, root, extra or {})

    def load_checkpoint(self, path: str) -> dict:
        """Restore from a step directory, or the newest complete one under a root; returns the saved `extra`."""
        return checkpoint.load(self, path)
