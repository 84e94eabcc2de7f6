"""`vthink plan`: what each GPU (or host) will hold, per role, before anything starts.

A memory model of one run, from the model's sizes (its config.json, or KNOWN_MODELS for a path not on this
machine), the layout (ray.*), the budgets (rollout.*, video.*, learner.*) and the machines (cluster.*). Per role
(learner rank, rollout worker, driver) it predicts the peak by component and compares it with what the device
has; `vthink train` and `vthink sft` run the same check and refuse a layout that cannot fit, naming the key to
change. Byte counts, with P parameters over N learner ranks, c bytes per compute-dtype element:

  learner   fp32 master 4P/N, gradients 4P/N, AdamW moments 8P/N, reference cP/N (kl_coef > 0), then the larger
            of two transients: the update (the gathered FSDP units: the root with the embeddings and one layer
            being prefetched, activations of one micro-batch, the loss's logits) and the optimizer step (foreach
            AdamW's temporaries, 4P/N); rank 0 adds the sync buckets and, colocated, the IPC buffer (cP)
  rollout   vLLM: its share of the GPU (gpu_memory_utilization; weights cP, the rest KV cache), the sync buckets;
            the weights a sync stages wait in host memory. HF: weights cP, the KV cache of its share of the step's
            samples at the longest sequence, its prompts' KV kept in the prefix cache, the last position's logits
  driver    Python, torch and Ray, and one step's samples
  each      a runtime: the CUDA context on a GPU, an imported torch + transformers process on CPU

Activations per micro-batch of T tokens (T = max(learner.micro_batch_tokens, the longest sequence)) and layer:
T (16 H + 4 I) c bytes without activation checkpointing (norms, q/k/v, attention output, residuals; gate, up,
their product and the activation in the MLP); with it, T H c per layer plus one layer recomputed. The vision
tower's blocks add the same per patch. Calibrated on CPU against measured peaks (`vthink bench plan`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError

GiB = 1 << 30
RUNTIME_GPU = 1.0 * GiB  # CUDA context, NCCL communicators and the caching allocator's slack
RUNTIME_CPU = 0.5 * GiB  # an imported torch + transformers process (0.40 GiB measured before any model is built)
RUNTIME_DRIVER = 1.0 * GiB  # the driver: torch, transformers, Ray's client and the data records
FOREACH_TEMPS = 4  # bytes per parameter of foreach AdamW's temporaries (sqrt of the second moment)
HOST_PER_GPU_ACTOR = 2.0 * GiB  # host memory of a GPU actor's process: torch, transformers, Ray, pinned buffers

# Published architectures (their config.json, the fields the plan reads), for a model.path that is not on this
# machine: `vthink plan` sizes a cluster before the weights are downloaded.
_QWEN25_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2)
_QWEN3_VISION = dict(hidden_size=1152, intermediate_size=4304, patch_size=16, spatial_merge_size=2,
                     temporal_patch_size=2, num_position_embeddings=2304)
KNOWN_MODELS = {
    "Qwen2.5-VL-3B-Instruct": dict(model_type="qwen2_5_vl", tie_word_embeddings=True, text_config=dict(
        hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, vocab_size=151936), vision_config=dict(_QWEN25_VISION, out_hidden_size=2048)),
    "Qwen2.5-VL-7B-Instruct": dict(model_type="qwen2_5_vl", tie_word_embeddings=False, text_config=dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064), vision_config=dict(_QWEN25_VISION, out_hidden_size=3584)),
    "Qwen2.5-VL-32B-Instruct": dict(model_type="qwen2_5_vl", tie_word_embeddings=False, text_config=dict(
        hidden_size=5120, intermediate_size=27648, num_hidden_layers=64, num_attention_heads=40,
        num_key_value_heads=8, vocab_size=152064), vision_config=dict(_QWEN25_VISION, out_hidden_size=5120)),
    "Qwen2.5-VL-72B-Instruct": dict(model_type="qwen2_5_vl", tie_word_embeddings=False, text_config=dict(
        hidden_size=8192, intermediate_size=29568, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, vocab_size=152064), vision_config=dict(_QWEN25_VISION, out_hidden_size=8192)),
    "Qwen3-VL-4B-Instruct": dict(model_type="qwen3_vl", tie_word_embeddings=True, text_config=dict(
        hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=151936),
        vision_config=dict(_QWEN3_VISION, depth=24, hidden_size=1024, intermediate_size=4096, out_hidden_size=2560)),
    "Qwen3-VL-8B-Instruct": dict(model_type="qwen3_vl", tie_word_embeddings=False, text_config=dict(
        hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=151936),
        vision_config=dict(_QWEN3_VISION, depth=27, out_hidden_size=4096)),
}


@dataclass(frozen=True)
class Dims:
    """The sizes of a Qwen2.5-VL / Qwen3-VL model the plan reads."""
    qwen3: bool
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    vision_hidden: int
    vision_intermediate: int
    vision_depth: int
    vision_out: int
    patch: int
    merge: int
    temporal: int
    deepstack: int = 0  # Qwen3-VL: extra mergers feeding early decoder layers
    position_embeddings: int = 0  # Qwen3-VL: learned vision position table
    params: int = 0  # counted from the checkpoint when it is here, else from the sizes (count())

    @classmethod
    def of(cls, config: dict, params: int | None = None) -> Dims:
        text = config.get("text_config") or config
        vision = config["vision_config"]
        heads = int(text["num_attention_heads"])
        qwen3 = config.get("model_type", "").startswith("qwen3")
        d = cls(qwen3=qwen3,
                hidden=int(text["hidden_size"]), intermediate=int(text["intermediate_size"]),
                layers=int(text["num_hidden_layers"]), heads=heads,
                kv_heads=int(text.get("num_key_value_heads") or heads),
                head_dim=int(text.get("head_dim") or int(text["hidden_size"]) // heads),
                vocab=int(text["vocab_size"]),
                tied=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
                vision_hidden=int(vision["hidden_size"]), vision_intermediate=int(vision["intermediate_size"]),
                vision_depth=int(vision["depth"]), vision_out=int(vision["out_hidden_size"]),
                patch=int(vision["patch_size"]), merge=int(vision["spatial_merge_size"]),
                temporal=int(vision["temporal_patch_size"]),
                deepstack=len(vision.get("deepstack_visual_indexes", [8, 16, 24] if qwen3 else [])),
                position_embeddings=int(vision.get("num_position_embeddings", 0)) if qwen3 else 0)
        return d if params is None else _with_params(d, params)

    @property
    def layer_params(self) -> int:
        """One decoder layer: attention (Qwen2.5: q/k/v biases; Qwen3: q/k norms), SwiGLU MLP, two norms."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = h * q + 2 * h * kv + q * h + ((2 * self.head_dim) if self.qwen3 else (q + 2 * kv))
        return attention + 3 * h * self.intermediate + 2 * h

    @property
    def vision_block_params(self) -> int:
        v, i = self.vision_hidden, self.vision_intermediate
        mlp = (2 * v * i + i + v) if self.qwen3 else (3 * v * i + 2 * i + v)  # Qwen3: fc1/fc2; Qwen2.5: SwiGLU
        norms = 4 * v if self.qwen3 else 2 * v  # LayerNorm (weight, bias) / RMSNorm
        return 3 * v * v + 3 * v + v * v + v + mlp + norms

    def count(self) -> int:
        """Parameters from the sizes: embeddings, layers, final norm, LM head (unless tied), vision tower."""
        v, vm = self.vision_hidden, self.vision_hidden * self.merge ** 2
        mlp = vm * vm + vm + vm * self.vision_out + self.vision_out
        if self.qwen3:  # LayerNorms with biases; deepstack mergers normalise the merged width
            mergers = 2 * v + mlp + self.deepstack * (2 * vm + mlp)
            extra = v + self.position_embeddings * v  # patch-embedding bias, position table
        else:
            mergers, extra = v + mlp, 0
        patch_embed = 3 * self.temporal * self.patch ** 2 * v
        text = self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * self.layer_params + self.hidden
        return text + self.vision_depth * self.vision_block_params + patch_embed + mergers + extra

    @property
    def root_params(self) -> int:
        """What FSDP's root unit holds once the layers and vision blocks are their own units: embeddings, LM head,
        final norm, patch embedding, merger."""
        return max(0, self.params - self.layers * self.layer_params - self.vision_depth * self.vision_block_params)


def _with_params(d: Dims, params: int) -> Dims:
    from dataclasses import replace

    return replace(d, params=int(params))


def model_dims(model) -> tuple[Dims, str]:
    """(Dims, where they came from) of a config's `model` section: the local folder's config.json and checkpoint,
    or KNOWN_MODELS by the folder's name when it is not on this machine."""
    import json

    from engine.model.loading import policy_dir
    from engine.orchestration.placement import parameter_count

    from engine.model.loading import READER, TINY_NAMES, ensure_tiny

    path = Path(model.path).expanduser() if model.path not in (*TINY_NAMES, READER) else None
    if path is None or (path / "config.json").is_file():
        # the reader has the tiny model's sizes: planning does not build it
        local = ensure_tiny(model.seed, model.arch) if model.path == READER else policy_dir(model)
        config = json.loads((local / "config.json").read_text())
        params = parameter_count(local) if any(local.glob("*.safetensors")) else None
        d = Dims.of(config)
        return _with_params(d, params or d.count()), str(local)
    name = path.name
    if name not in KNOWN_MODELS:
        raise ConfigError("model.path", f"{str(path)!r} has no config.json on this machine and is not one of the "
                                        f"architectures `vthink plan` knows ({', '.join(KNOWN_MODELS)})")
    d = Dims.of(KNOWN_MODELS[name])
    return _with_params(d, d.count()), f"{name} (published sizes; the folder is not on this machine)"


@dataclass(frozen=True)
class Machines:
    nodes: int
    gpus_per_node: int
    gpu_memory_gib: float
    cpu_memory_gib: float


def machines(cfg) -> Machines:
    """cluster.*, with each null filled from this machine."""
    import torch

    from engine.orchestration.placement import available_memory

    c = cfg.cluster
    nodes, gpus = c.nodes, c.gpus_per_node
    try:
        import ray

        if ray.is_initialized() and (nodes is None or gpus is None):  # the Ray cluster's, not this machine's
            alive = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
            nodes = nodes or alive
            gpus = gpus if gpus is not None else int(ray.cluster_resources().get("GPU", 0)) // alive
    except ImportError:
        pass
    gpus = gpus if gpus is not None else torch.cuda.device_count()
    gpu_mem = c.gpu_memory_gib
    if gpu_mem is None:
        gpu_mem = torch.cuda.get_device_properties(0).total_memory / GiB if torch.cuda.is_available() else 0.0
    cpu_mem = c.cpu_memory_gib if c.cpu_memory_gib is not None else available_memory() / GiB
    return Machines(nodes or 1, int(gpus), float(gpu_mem), float(cpu_mem))


@dataclass
class Role:
    count: int
    device: str  # "gpu" | "cpu"
    components: dict[str, float] = field(default_factory=dict)  # GiB
    host: dict[str, float] = field(default_factory=dict)  # GiB of host memory a GPU role also holds

    @property
    def peak_gib(self) -> float:
        return sum(self.components.values())

    def to_json(self) -> dict:
        return {"count": self.count, "device": self.device, "peak_gib": round(self.peak_gib, 3),
                "components": {k: round(v, 3) for k, v in self.components.items()}}


@dataclass
class Plan:
    roles: dict[str, Role]
    machines: Machines
    model: str
    params: int
    largest_sequence: int
    micro_batch_tokens: int
    problems: list[tuple[str, str]]  # (config key to change, what does not fit)

    @property
    def fits(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        m = self.machines
        return {"fits": self.fits, "roles": {k: r.to_json() for k, r in self.roles.items()},
                "model": self.model, "params": self.params, "largest_sequence": self.largest_sequence,
                "micro_batch_tokens": self.micro_batch_tokens,
                "cluster": {"nodes": m.nodes, "gpus_per_node": m.gpus_per_node, "gpu_memory_gib": m.gpu_memory_gib,
                            "cpu_memory_gib": round(m.cpu_memory_gib, 2)},
                "problems": [{"key": k, "why": w} for k, w in self.problems]}

    def table(self) -> str:
        m = self.machines
        lines = [f"model {self.model}: {self.params / 1e9:.2f}B parameters; longest sequence {self.largest_sequence} "
                 f"tokens, learner micro-batch {self.micro_batch_tokens} tokens",
                 f"cluster: {m.nodes} node(s) x {m.gpus_per_node} GPU(s) of {m.gpu_memory_gib:.0f} GiB, "
                 f"{m.cpu_memory_gib:.0f} GiB host memory per node", ""]
        for name, role in self.roles.items():
            lines.append(f"{name} x{role.count} ({role.device}): peak {role.peak_gib:.2f} GiB")
            for k, v in sorted(role.components.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {k:<30} {v:>9.2f} GiB")
            for k, v in role.host.items():
                lines.append(f"    host: {k:<24} {v:>9.2f} GiB")
        lines.append("")
        if self.fits:
            lines.append("fits")
        else:
            lines += [f"does not fit: {why} (change {key})" for key, why in self.problems]
        return "\n".join(lines)


def _bytes(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]


def _layout(cfg, dims: Dims, mach: Machines) -> tuple[int, int]:
    from engine.orchestration.placement import place

    if cfg.ray.rollout_workers != "auto" and cfg.ray.learners != "auto":
        return int(cfg.ray.rollout_workers), int(cfg.ray.learners)
    p = place(cfg, dims.params, gpus=mach.nodes * mach.gpus_per_node, memory=int(mach.cpu_memory_gib * GiB))
    return p.rollout_workers, p.learners


def largest_sequence(cfg, dims: Dims) -> tuple[int, int]:
    """(tokens, visual tokens) of the longest trajectory the budgets allow: the rule that sizes vLLM's context
    (rollout/limits.py), and the prompt video's plus the observations' visual tokens within it."""
    from engine.rollout.limits import max_model_len
    from engine.video.spec import QWEN2_5_VL, QWEN3_VL, VisionSpec

    base = QWEN3_VL if dims.qwen3 else QWEN2_5_VL
    spec = VisionSpec(base.arch, dims.patch, dims.merge, dims.temporal, base.image_mean, base.image_std)
    r = cfg.rollout
    visual = math.ceil(cfg.video.max_frames / dims.temporal) * (cfg.video.max_pixels // (dims.patch * dims.merge) ** 2)
    visual += r.max_visual_tokens if (r.agent or r.relook) and r.max_turns else 0
    tokens = max_model_len(cfg.rollout, cfg.video, spec)
    return tokens, min(visual, tokens)


def plan(cfg) -> Plan:
    """The memory plan of `cfg` on cluster.* (this machine where null)."""
    dims, source = model_dims(cfg.model)
    mach = machines(cfg)
    workers, learners = _layout(cfg, dims, mach)
    gpu = mach.gpus_per_node > 0
    P, N, c = dims.params, learners, _bytes(cfg.model.dtype)
    seq, visual = largest_sequence(cfg, dims)
    T = max(cfg.learner.micro_batch_tokens, seq)
    visual_share = visual / seq  # a micro-batch of such sequences: its share of visual tokens
    g = GiB
    colocated = gpu and cfg.ray.colocate

    # ---- learner rank
    learner = Role(learners, "gpu" if gpu else "cpu")
    lc = learner.components
    lc["runtime"] = (RUNTIME_GPU if gpu else RUNTIME_CPU) / g
    lc["master_weights"] = 4 * P / N / g
    lc["gradients"] = 4 * P / N / g
    lc["optimizer_state"] = 8 * P / N / g
    if cfg.algo.kl_coef > 0:  # learner.ref_offload keeps its shards in host memory (on CPU runs, the same memory)
        (learner.host if gpu and cfg.learner.ref_offload else lc)["reference"] = c * P / N / g
    grad_copy = 4 if c != 4 else 0  # bf16 gradients reduce in fp32
    gathered = (dims.root_params + 2 * dims.layer_params) * (2 * c + grad_copy)
    per_token_layer = (16 * dims.hidden + 4 * dims.intermediate) * c
    patches = T * visual_share * dims.merge ** 2  # vision-tower positions: merge^2 patches per visual token
    per_patch_block = (16 * dims.vision_hidden + 4 * dims.vision_intermediate) * c
    if cfg.learner.activation_checkpointing:
        acts = T * (dims.layers * dims.hidden * c + per_token_layer) + patches * per_patch_block
    else:
        acts = T * dims.layers * per_token_layer + patches * dims.vision_depth * per_patch_block
    logits = T * dims.vocab * 4 * 3 if not cfg.learner.fused_loss else 2 * (8 << 20) + T * 16
    update = {"gathered_fsdp_units": gathered / g, "activations": acts / g, "logits": logits / g}
    step = {"optimizer_step_temporaries": FOREACH_TEMPS * P / N / g}
    lc.update(update if sum(update.values()) >= sum(step.values()) else step)
    bucket = (cfg.ray.sync_bucket_mb << 20) if cfg.ray.sync_bucket_mb else (256 << 20 if gpu else 16 << 20)
    if workers and not colocated or workers > 1:
        lc["sync_buckets_rank0"] = 2 * bucket / g
    if colocated:
        lc["ipc_buffer_rank0"] = c * P / g

    # ---- rollout worker
    rollout = Role(workers, "gpu" if gpu else "cpu")
    rc = rollout.components
    rc["runtime"] = (RUNTIME_GPU if gpu else RUNTIME_CPU) / g
    kv_per_token = 2 * dims.layers * dims.kv_heads * dims.head_dim * c
    vllm = cfg.rollout.backend == "vllm" and gpu
    video_cache = 1.25 * cfg.video.cache_bytes / g  # the frame cache and the model-input cache (a quarter of it)
    if vllm:
        from engine.rollout.limits import gpu_memory_utilization

        share = gpu_memory_utilization(cfg.rollout, cfg.ray.colocate) * mach.gpu_memory_gib
        rc["vllm_weights"] = c * P / g
        rc["vllm_kv_cache"] = max(0.0, share - rc["vllm_weights"])
        rollout.host["staged_sync_weights"] = c * P / g
    else:
        samples = math.ceil(cfg.trainer.prompts_per_step / max(1, workers)) * cfg.rollout.group_size
        rc["weights"] = c * P / g
        rc["kv_cache"] = samples * seq * kv_per_token / g
        rc["logits"] = samples * dims.vocab * 4 * 2 / g
        from engine.rollout.hf_backend import PREFIX_CACHE_BYTES

        prompts = math.ceil(cfg.trainer.prompts_per_step / max(1, workers))  # each prompt's KV kept once, up to the cap
        rc["prefix_cache"] = min(PREFIX_CACHE_BYTES, prompts * seq * kv_per_token) / g
    if workers and not (colocated and workers == 1):
        rc["sync_buckets"] = 2 * bucket / g
    if cfg.video.device == "cuda" and gpu:
        rc["video_cache"] = video_cache
    else:
        (rollout.host if gpu else rc)["video_cache"] = video_cache

    # ---- driver
    driver = Role(1, "cpu")
    samples = cfg.trainer.prompts_per_step * cfg.rollout.group_size
    driver.components["runtime"] = RUNTIME_DRIVER / g
    driver.components["step_samples"] = samples * seq * 24 / g + cfg.trainer.prompts_per_step * (
        seq * visual_share * dims.merge ** 2 * 3 * dims.temporal * dims.patch ** 2 * 4) / g

    roles = {"learner": learner, "rollout": rollout, "driver": driver}
    problems = _verdict(cfg, roles, mach, gpu, colocated, vllm, learners, workers)
    return Plan(roles, mach, source, P, seq, T, problems)


def _key_for(cfg, components: dict[str, float], gpu: bool) -> str:
    """The config key that shrinks the largest component it can: what a refusal tells the user to change."""
    ckpt = cfg.learner.activation_checkpointing
    keys = {"activations": "learner.micro_batch_tokens" if ckpt else "learner.activation_checkpointing",
            "logits": "learner.micro_batch_tokens" if cfg.learner.fused_loss else "learner.fused_loss",
            "video_cache": "video.cache_bytes", "kv_cache": "trainer.prompts_per_step",
            "vllm_kv_cache": "rollout.gpu_memory_utilization", "ipc_buffer_rank0": "ray.colocate"}
    if gpu:  # more ranks shard the states over more GPUs; on one host they only move between processes
        keys.update(dict.fromkeys(("optimizer_state", "master_weights", "gradients", "reference",
                                   "gathered_fsdp_units", "optimizer_step_temporaries"), "ray.learners"))
        if not cfg.learner.ref_offload:
            keys["reference"] = "learner.ref_offload"
    for name, _ in sorted(components.items(), key=lambda kv: -kv[1]):
        if name in keys:
            return keys[name]
    return "ray.learners" if gpu else "cluster.cpu_memory_gib"


def _verdict(cfg, roles: dict[str, Role], mach: Machines, gpu: bool, colocated: bool, vllm: bool,
             learners: int, workers: int) -> list[tuple[str, str]]:
    problems = []
    lr, ro, dr = roles["learner"], roles["rollout"], roles["driver"]

    def top(role: Role) -> str:
        big = sorted(role.components.items(), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{k} {v:.1f}" for k, v in big)

    if gpu and not mach.gpu_memory_gib:
        problems.append(("cluster.gpu_memory_gib", "the cluster has GPUs but this machine has none to read their "
                                                   "memory from: set cluster.gpu_memory_gib"))
    elif gpu:
        have = mach.gpu_memory_gib
        total_gpus = mach.nodes * mach.gpus_per_node
        need_gpus = learners if colocated else learners + workers
        if need_gpus > total_gpus:
            problems.append(("ray.learners", f"{learners} learner(s) and {workers} rollout worker(s) need "
                                             f"{need_gpus} GPUs{' (colocated: one per pair)' if colocated else ''}, "
                                             f"the cluster has {total_gpus}"))
        if colocated:
            need = lr.peak_gib + ro.peak_gib
            if need > have:
                key = "rollout.gpu_memory_utilization" if vllm else _key_for(cfg, lr.components, True)
                problems.append((key, f"a GPU shared by a learner rank ({lr.peak_gib:.1f} GiB: {top(lr)}) and a "
                                      f"rollout worker ({ro.peak_gib:.1f} GiB: {top(ro)}) needs {need:.1f} GiB "
                                      f"of its {have:.1f}"))
        else:
            if lr.peak_gib > have:
                problems.append((_key_for(cfg, lr.components, True),
                                 f"a learner rank needs {lr.peak_gib:.1f} GiB ({top(lr)}), a GPU has {have:.1f}"))
            if ro.peak_gib > have:
                problems.append((_key_for(cfg, ro.components, True),
                                 f"a rollout worker needs {ro.peak_gib:.1f} GiB ({top(ro)}), a GPU has {have:.1f}"))
        if vllm:
            from engine.rollout.limits import gpu_memory_utilization

            share = gpu_memory_utilization(cfg.rollout, cfg.ray.colocate) * have
            if ro.components["vllm_weights"] >= share:
                problems.append(("rollout.gpu_memory_utilization",
                                 f"vLLM's share ({share:.1f} GiB) does not hold the weights "
                                 f"({ro.components['vllm_weights']:.1f} GiB), let alone a KV cache"))
        per_node = math.ceil((learners + workers) / max(1, mach.nodes))
        per_learner = math.ceil(learners / max(1, mach.nodes)) * sum(lr.host.values())
        host = (dr.peak_gib + per_learner + per_node * HOST_PER_GPU_ACTOR / GiB
                + math.ceil(workers / max(1, mach.nodes)) * sum(ro.host.values()))
        if host > mach.cpu_memory_gib:
            problems.append(("cluster.cpu_memory_gib", f"host memory: {host:.1f} GiB on the busiest node, "
                                                       f"{mach.cpu_memory_gib:.1f} available"))
    else:
        need = learners * lr.peak_gib + workers * ro.peak_gib + dr.peak_gib
        have = mach.nodes * mach.cpu_memory_gib
        if need > have:
            totals = {k: learners * lr.components.get(k, 0) + workers * ro.components.get(k, 0)
                      for k in {*lr.components, *ro.components}}
            key = _key_for(cfg, totals, False)
            problems.append((key, f"{learners} learner rank(s) x {lr.peak_gib:.1f} GiB ({top(lr)}) + {workers} "
                                  f"rollout worker(s) x {ro.peak_gib:.1f} GiB + the driver {dr.peak_gib:.1f} GiB "
                                  f"need {need:.1f} GiB of host memory, {have:.1f} available"))
    return problems


def check_fits(cfg) -> Plan:
    """The plan of `cfg`; ConfigError naming the key to change when it does not fit."""
    p = plan(cfg)
    if not p.fits:
        key, why = p.problems[0]
        more = f" (and {len(p.problems) - 1} more: `vthink plan` lists them)" if len(p.problems) > 1 else ""
        raise ConfigError(key, f"the memory plan does not fit: {why}{more}")
    return p
