"""Grouped rollout: G trajectories per prompt through the agent loop, one decoded clip shared by the whole group."""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields

from engine.errors import VideoDecodeError, VideoRequestError
from engine.model import video_prompt_ids
from engine.rollout.agent import AgentLoop, Episode, LoopConfig, LoopStats
from engine.rollout.backend import Backend, SamplingParams
from engine.rollout.batch import RolloutBatch, VideoInput
from engine.rollout.prompt import build_messages, question_reminder
from engine.rollout.seeds import SeedTable


@dataclass
class Prompt:
    """A row made ready for generation: prompt ids (video pads expanded), its videos, its tool context."""

    prompt_ids: list[int]
    videos: list[VideoInput]
    ctx: object = None  # engine.tools.ToolContext
    reminder: str = ""  # what closes each tool response (rollout.question_reminder)

    @property
    def video(self) -> VideoInput | None:
        return self.videos[0] if self.videos else None


@dataclass
class RolloutStats:
    failed_prompts: int = 0
    errors: list[str] = field(default_factory=list)
    decode_s: float = 0.0  # decoding + preprocessing the prompts' videos
    loop: LoopStats = field(default_factory=LoopStats)
    phases: dict[str, float] = field(default_factory=dict)  # the backend's own (vision_tower, prefill, sampling)
    weight_version: int | None = None  # the weights the samples were drawn with (the oldest, over several calls)

    @staticmethod
    def merged(stats: list[RolloutStats]) -> RolloutStats:
        """Counters and times summed over several rollouts (workers, or sampling rounds): work done, not wall time."""
        loop = LoopStats(**{f.name: sum(getattr(st.loop, f.name) for st in stats) for f in fields(LoopStats)})
        phases: dict[str, float] = {}
        for st in stats:
            for k, v in st.phases.items():
                phases[k] = phases.get(k, 0.0) + v
        versions = [st.weight_version for st in stats if st.weight_version is not None]
        return RolloutStats(failed_prompts=sum(st.failed_prompts for st in stats),
                            errors=[e for st in stats for e in st.errors],
                            decode_s=sum(st.decode_s for st in stats), loop=loop, phases=phases,
                            weight_version=min(versions, default=None))


PROMPT_CACHE_SIZE = 256  # prompts (ids + preprocessed video) kept per rollout engine


class GroupedRollout:
    """mode "thinker": one Video-Thinker turn (plus re-looks when loop.relook); mode "agent": tool calls."""

    def __init__(self, backend: Backend, tokenizer, video_service, frame_policy,
                 loop: LoopConfig | None = None, registry=None, mode: str = "thinker",
                 relook_frames: int | None = None, layout: str = "video_thinker"):
        self.backend = backend
        self.tokenizer = tokenizer
        self.video = video_service
        self.frame_policy = frame_policy
        self.spec = video_service.spec  # the policy's patch grid and prompt layout, as the service prepares videos
        self.mode = mode
        self.loop_cfg = loop or LoopConfig()
        if mode == "agent" and not self.loop_cfg.tools:
            raise ValueError("agent mode needs LoopConfig(tools=True)")
        self.registry = registry
        self.layout = layout  # reward.format_layout: which answer layout the system prompt asks for
        self.loop = AgentLoop(backend, tokenizer, self.loop_cfg, spec=self.spec, registry=registry,
                              relook_frames=relook_frames)
        # LRU: a prompt repeats every epoch; each entry keeps the (question, options) its text was built for
        self._prompts: OrderedDict[str, tuple[tuple, Prompt]] = OrderedDict()

    def prepare(self, row) -> Prompt:
        """The row's prompt ids (one pad per merged visual token) and video, built once and then reused; the text
        is built again when the row comes back with its options in another order (sft.shuffle_options)."""
        text_of = (row.question, tuple(row.options))
        cached = self._prompts.get(row.id)
        if cached is None or cached[0] != text_of:
            video, ctx = (cached[1].video, cached[1].ctx) if cached else self._look(row)
            cached = (text_of, self._prompt(row, video, ctx))
            self._prompts[row.id] = cached
            if len(self._prompts) > PROMPT_CACHE_SIZE:
                self._prompts.popitem(last=False)
        self._prompts.move_to_end(row.id)
        return cached[1]

    def _look(self, row) -> tuple[VideoInput, object]:
        """The row's global frames, and the tools' context for its video."""
        clip = self.video.sample(str(row.video), self.frame_policy)
        video = VideoInput(clip.pixel_values.cpu(), tuple(int(x) for x in clip.grid_thw), float(clip.second_per_grid_t),
                           float(clip.start_s), float(clip.end_s), tuple(float(t) for t in clip.timestamps_s), clip.key)
        ctx = None
        if self.loop_cfg.tools or self.loop_cfg.relook:
            from engine.tools import ToolContext

            duration = self.video.probe(str(row.video)).duration_s
            ctx = ToolContext(str(row.video), self.video, self.frame_policy, duration)
        return video, ctx

    def _prompt(self, row, video: VideoInput, ctx) -> Prompt:
        tools = self.registry.schemas() if self.mode == "agent" else None
        messages = build_messages(row, self.mode, self.loop_cfg.relook, self.layout)
        text = self.tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        ids = video_prompt_ids(text, [video], self.spec, self.tokenizer)
        reminder = question_reminder(row) if self.loop_cfg.tools and self.loop_cfg.question_reminder else ""
        return Prompt(ids, [video], ctx, reminder)

    def run(self, rows: list, group_size: int, params: SamplingParams, first_prompt: int = 0
            ) -> tuple[RolloutBatch, RolloutStats]:
        """Sample `group_size` trajectories for each row. A row whose video cannot be read is dropped and counted.

        Seeds: params.seed is the base; every (first_prompt + row position, sample, turn) gets a distinct
        derived seed, so a step split between workers samples exactly what one worker would.
        """
        stats = RolloutStats()
        episodes: list[Episode] = []
        t0 = time.perf_counter()
        for p, row in enumerate(rows):
            try:
                prompt = self.prepare(row)
            except (VideoDecodeError, VideoRequestError) as e:
                stats.failed_prompts += 1
                stats.errors.append(f"{row.id}: {e}")
                continue
            group = len(episodes) // group_size
            episodes.extend(Episode(p, s, group, row.id, prompt.prompt_ids, prompt.videos, prompt.ctx, prompt.reminder)
                            for s in range(group_size))
        stats.decode_s = time.perf_counter() - t0
        samples = []
        if episodes:
            seeds = SeedTable(params.seed, len(rows), group_size, self.loop_cfg.max_turns, first_prompt)
            samples, stats.loop = self.loop.run(episodes, params, seeds)
        stats.phases = self.backend.pop_phases()
        self.backend.episodes_done()
        return RolloutBatch(samples=samples, group_size=group_size), stats
