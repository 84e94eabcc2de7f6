"""The multi-turn agent loop: batched generation, tool calls run in a worker pool, observations injected as tokens.

Rounds: every sample that is ready (not finished, not waiting on a tool) is generated for in one
batched backend call, up to its next stop — end of turn, `</tool_call>` (agent mode) or a closed
`</time>` span (grounded re-look). A sample that stopped on a call has its tool submitted to a thread
pool and sits out while the others keep generating; its observation rejoins as soon as it is done
(checked at every round). The loop waits on tools only while fewer samples are ready than are in tools:
a batched backend call costs about the same for one row as for many.

Token-in/token-out: a trajectory is the prompt followed by the backend's exact output ids (loss mask
1, rollout log-prob each) interleaved with the engine's injected ids — turn markers, tool responses,
video pads (mask 0, log-prob 0). Budgets per sample (turns, tokens per turn, tokens in total, visual
tokens) end the sample with a `finish_reason`, never an error. Bad model output (malformed JSON,
unknown tool, wrong arguments, out-of-range times, unclosed tags, repeated calls) becomes an error
observation the model reads, counted in `Sample.counters`; it never escapes the loop.
"""
from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from engine.config import RolloutConfig
from engine.errors import ToolCallError, VideoRequestError
from engine.rollout.backend import Backend, Generation, Request, SamplingParams
from engine.rollout.batch import Sample, ToolEvent, VideoInput
from engine.rollout.seeds import SeedTable
from engine.video.spec import VisionSpec

TOOL_CLOSE = "</tool_call>"
TOOL_OPEN = "<tool_call>"
TIME_CLOSE = "</time>"


# The budgets' defaults and their meaning live in one place, the `rollout` section of the config.
_ROLLOUT = RolloutConfig(mode="agent")


@dataclass(frozen=True)
class LoopConfig:
    """The loop's stops and budgets: `of(cfg.rollout)` in a run; the defaults are `rollout.*`'s in agent mode."""

    tools: bool = False  # agent mode: stop on </tool_call> and run the call
    relook: bool = _ROLLOUT.relook  # grounded re-look: stop on </time> and inject the frames of that span
    max_turns: int = _ROLLOUT.max_turns  # observations (tool responses + re-looks) per sample
    max_tokens_per_turn: int = _ROLLOUT.max_new_tokens  # per backend call
    max_total_tokens: int = _ROLLOUT.max_trajectory_tokens  # model tokens over the whole trajectory
    max_visual_tokens: int = _ROLLOUT.max_visual_tokens  # merged visual tokens injected by observations
    tool_workers: int = _ROLLOUT.tool_workers  # threads running tools; 0 runs them inline (serialised)
    max_repeats: int = 1  # identical consecutive calls allowed; the next one gets an error observation
    max_frames: int | None = _ROLLOUT.max_frames_per_question  # frames seen per sample (prompt + observations)
    question_reminder: bool = _ROLLOUT.question_reminder  # every tool response ends with the question again

    @classmethod
    def of(cls, rollout: RolloutConfig) -> LoopConfig:
        """The loop `rollout.*` asks for."""
        return cls(tools=rollout.agent, relook=rollout.relook, max_turns=rollout.max_turns,
                   max_tokens_per_turn=rollout.max_new_tokens, max_total_tokens=rollout.max_trajectory_tokens,
                   max_visual_tokens=rollout.max_visual_tokens, tool_workers=rollout.tool_workers,
                   max_frames=rollout.max_frames_per_question, question_reminder=rollout.question_reminder)


@dataclass
class Episode:
    """What the loop needs to start one sample."""

    prompt_index: int
    sample_index: int
    group: int
    row_id: str
    prompt_ids: list[int]
    videos: list[VideoInput]
    ctx: Any = None  # engine.tools.ToolContext for this sample's video (None: no tools, no re-look)
    reminder: str = ""  # closes every tool response (rollout.question_reminder): the question and its options


@dataclass
class Injection:
    """What the engine appends after a stopped turn: ids (mask 0), the videos they reference, the trace entry."""

    ids: list[int]
    videos: list[VideoInput]
    event: ToolEvent
    counter: str | None = None  # bad-output category, when the output was bad
    new_turn: bool = True  # the ids open a new assistant turn (a tool response); False for inline video


@dataclass
class LoopStats:
    """Where one `run` spent its time, and how much work it did."""

    rounds: int = 0  # batched backend calls
    generate_s: float = 0.0  # inside backend.generate
    tool_s: float = 0.0  # summed tool execution time (overlaps generation when tool_workers > 0)
    wait_s: float = 0.0  # the loop blocked with nothing to generate, waiting on tools
    generated_tokens: int = 0
    tool_calls: int = 0
    refused: int = 0  # samples ended because the backend refused their next request (why: in their trace)


@dataclass
class _Traj:
    ep: Episode
    response_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    videos: list[VideoInput] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # model text of each backend call
    turn_starts: list[int] = field(default_factory=list)  # index into texts where each assistant turn begins
    new_turn: bool = True  # the next backend call opens an assistant turn (else it continues one)
    calls: int = 0  # backend calls made
    generated: int = 0
    visual: int = 0
    frames: int = 0  # frames seen so far: the prompt's and every observation's
    trace: list[ToolEvent] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    last_call: str | None = None
    repeats: int = 0
    pending: Future | None = None
    finish_reason: str | None = None
    seed: int = 0

    def append(self, ids: list[int], logprobs: list[float] | None, mask: int) -> None:
        self.response_ids.extend(ids)
        self.logprobs.extend(logprobs if logprobs is not None else [0.0] * len(ids))
        self.mask.extend([mask] * len(ids))


def num_frames(videos) -> int:
    """Frames the model is shown by `videos` (VideoInputs, or a tool's Clips): each one's sampled frames."""
    return sum((len(v.frame_times_s) or v.grid_thw[0] * 2) if hasattr(v, "frame_times_s") else len(v.timestamps_s)
               for v in videos)


class AgentLoop:
    """Runs episodes to completion on a backend; `registry` (engine.tools.ToolRegistry) runs the calls."""

    def __init__(self, backend: Backend, tokenizer, cfg: LoopConfig, *, spec: VisionSpec, registry=None,
                 relook_frames: int | None = None):
        if cfg.tools and registry is None:
            raise ValueError("LoopConfig.tools needs a ToolRegistry")
        self.backend = backend
        self.tok = tokenizer
        self.cfg = cfg
        self.spec = spec  # how observations' videos are written into the prompt
        self.registry = registry
        self.relook_frames = relook_frames
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.stop: tuple[str, ...] = ((TOOL_CLOSE,) if cfg.tools else ()) + ((TIME_CLOSE,) if cfg.relook else ())

    # ------------------------------------------------------------------ public

    def run(self, episodes: list[Episode], params: SamplingParams, seeds: SeedTable) -> tuple[list[Sample], LoopStats]:
        """Roll every episode out; samples come back in episode order.

        `params` gives temperature and top_p, and its max_new_tokens caps every turn (as does
        LoopConfig.max_tokens_per_turn); seeds come from `seeds` per (prompt, sample, backend call).
        """
        stats = LoopStats()
        trajs = [_Traj(ep, videos=list(ep.videos), frames=num_frames(ep.videos)) for ep in episodes]
        for t in trajs:
            t.seed = seeds(t.ep.prompt_index, t.ep.sample_index, 0)
        pool = ThreadPoolExecutor(self.cfg.tool_workers, thread_name_prefix="tool") if self.cfg.tool_workers else None
        try:
            while True:
                for t in trajs:
                    if t.pending is not None and t.pending.done():
                        self._rejoin(t, t.pending.result())
                ready = [t for t in trajs if t.finish_reason is None and t.pending is None]
                pending = [t.pending for t in trajs if t.pending is not None]
                # Generate once at least half of the live samples are ready: a backend call costs about the
                # same for one row as for many, so calls on a straggler or two would cost a full round each.
                if pending and len(ready) < len(pending):
                    t0 = time.perf_counter()
                    wait(pending, return_when=FIRST_COMPLETED)
                    stats.wait_s += time.perf_counter() - t0
                    continue
                if not ready:
                    break
                requests = [self._request(t, params, seeds) for t in ready]
                ready, requests = self._accepted(ready, requests, stats)
                if not ready:
                    continue
                t0 = time.perf_counter()
                gens = self.backend.generate(requests)
                stats.generate_s += time.perf_counter() - t0
                stats.rounds += 1
                for t, gen in zip(ready, gens):
                    stats.generated_tokens += len(gen.token_ids)
                    self._after_generation(t, gen, pool)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        for t in trajs:
            stats.tool_s += sum(e.seconds for e in t.trace)
            stats.tool_calls += len(t.trace)
        return [self._sample(t) for t in trajs], stats

    # ------------------------------------------------------------------ one round

    def _accepted(self, trajs: list[_Traj], requests: list[Request], stats: LoopStats
                  ) -> tuple[list[_Traj], list[Request]]:
        """The requests the backend can run; a refused one (too long for the engine, a video it cannot take) ends
        its sample as `refused`, counted, with the reason in its trace, and the rest go on."""
        keep_t, keep_r = [], []
        for t, r in zip(trajs, requests):
            try:
                self.backend.check(r)
            except (VideoRequestError, ValueError) as e:
                t.finish_reason = "refused"
                t.counters["refused_request"] = t.counters.get("refused_request", 0) + 1
                t.trace.append(ToolEvent(len(t.turn_starts), "refused", None, None, False, "", str(e)))
                stats.refused += 1
                continue
            keep_t.append(t)
            keep_r.append(r)
        return keep_t, keep_r

    def _request(self, t: _Traj, params: SamplingParams, seeds: SeedTable) -> Request:
        budget = min(self.cfg.max_tokens_per_turn, params.max_new_tokens, self.cfg.max_total_tokens - t.generated)
        sp = SamplingParams(max_new_tokens=budget, temperature=params.temperature, top_p=params.top_p,
                            seed=seeds(t.ep.prompt_index, t.ep.sample_index, t.calls), stop=self.stop,
                            stop_token_ids=(self.end_id,))
        return Request(t.ep.prompt_ids + t.response_ids, t.videos, sp)

    def _after_generation(self, t: _Traj, gen: Generation, pool: ThreadPoolExecutor | None) -> None:
        if t.new_turn:
            t.turn_starts.append(len(t.texts))
        t.calls += 1
        t.append(gen.token_ids, gen.logprobs, 1)
        t.generated += len(gen.token_ids)
        text = self.tok.decode(gen.token_ids, skip_special_tokens=True)
        t.texts.append(text)
        if gen.finish_reason == "length":
            t.finish_reason = "max_total_tokens" if t.generated >= self.cfg.max_total_tokens else "max_tokens_per_turn"
            return
        turn_text = "".join(t.texts[t.turn_starts[-1]:])
        if gen.stop == self.end_id:
            # An end of turn inside an unclosed <tool_call> is a call the model never finished.
            if self.cfg.tools and turn_text.rfind(TOOL_OPEN) > turn_text.rfind(TOOL_CLOSE):
                job = lambda: self._error_response(  # noqa: E731
                    t, "unclosed_tag", f"unclosed {TOOL_OPEN}: end the call with {TOOL_CLOSE}", turn_text, ended=True)
            else:
                t.finish_reason = "stop"
                return
        elif gen.stop == TOOL_CLOSE:
            job = lambda: self._tool_response(t, turn_text)  # noqa: E731
        elif gen.stop == TIME_CLOSE:
            job = lambda: self._relook(t, text)  # noqa: E731
        else:  # a sampled placeholder id (engine.rollout.backend): the sample ends, and it is counted
            t.counters["placeholder_token"] = t.counters.get("placeholder_token", 0) + 1
            t.finish_reason = "placeholder_token"
            return
        if t.calls > self.cfg.max_turns:
            t.finish_reason = "max_turns"
            return
        if t.generated >= self.cfg.max_total_tokens:
            t.finish_reason = "max_total_tokens"
            return
        if pool is None:
            self._rejoin(t, job())
        else:
            t.pending = pool.submit(job)

    def _rejoin(self, t: _Traj, inj: Injection) -> None:
        t.pending = None
        t.trace.append(inj.event)
        if inj.counter:
            t.counters[inj.counter] = t.counters.get(inj.counter, 0) + 1
        if t.visual + inj.event.visual_tokens > self.cfg.max_visual_tokens:
            t.finish_reason = "max_visual_tokens"
            return
        t.visual += inj.event.visual_tokens
        t.frames += num_frames(inj.videos)
        t.append(inj.ids, None, 0)
        t.videos.extend(inj.videos)
        t.new_turn = inj.new_turn

    # ------------------------------------------------------------------ observations (worker threads)

    def _rendered(self, t: _Traj, obs, ended: bool) -> tuple[list[int], list[VideoInput]]:
        """observation_token_ids, minus its leading <|im_end|> when the model already ended its turn."""
        from engine.tools import observation_token_ids

        ids, videos = observation_token_ids(obs, self.tok, self.spec, t.ep.reminder)
        if ended and ids and ids[0] == self.end_id:
            ids = ids[1:]
        return ids, videos

    def _visual(self, videos: list[VideoInput]) -> int:
        return sum(v.grid_thw[0] * v.grid_thw[1] * v.grid_thw[2] for v in videos) // self.spec.merge_size**2

    def _error_response(self, t: _Traj, counter: str, message: str, raw: Any, ended: bool = False) -> Injection:
        from engine.tools import Observation

        obs = Observation(text=f"Error: {message}", error=message)
        ids, _ = self._rendered(t, obs, ended)
        return Injection(ids, [], ToolEvent(len(t.turn_starts), "error", None, raw, False, obs.text, counter), counter)

    def _tool_response(self, t: _Traj, turn_text: str) -> Injection:
        from engine.tools import parse_tool_call

        t0 = time.perf_counter()
        try:
            call = parse_tool_call(turn_text)
        except ToolCallError as e:
            return self._error_response(t, "malformed_call", str(e), turn_text[-200:])
        key = f"{call.name}\x00{sorted(call.arguments.items(), key=str)!r}"
        t.repeats = t.repeats + 1 if key == t.last_call else 0
        t.last_call = key
        if t.repeats >= self.cfg.max_repeats:
            return self._error_response(t, "repeated_call", "this exact call was just made and its result is above; "
                                        "use it, change the arguments, or answer", call.arguments)
        obs = self.registry.execute(call, t.ep.ctx)  # never raises: failures are error observations
        budget = self.cfg.max_frames
        if budget is not None and obs.error is None and t.frames + num_frames(obs.clips) > budget:
            return self._error_response(t, "frame_budget", f"this look would show {num_frames(obs.clips)} more "
                                        f"frame(s) after {t.frames}, over the budget of {budget} frames per question "
                                        "(rollout.max_frames_per_question); answer from what you have seen", call.arguments)
        counter = None
        if obs.error is not None:
            if call.name not in self.registry:
                counter = "unknown_tool"
            elif obs.error.startswith("invalid tool call"):
                counter = "bad_arguments"
            else:
                counter = "tool_failed"
        ids, videos = self._rendered(t, obs, ended=False)
        event = ToolEvent(len(t.turn_starts), "tool", call.name, call.arguments, obs.error is None, obs.text,
                          obs.error, self._visual(videos), time.perf_counter() - t0)
        return Injection(ids, videos, event, counter)

    def _relook(self, t: _Traj, text: str) -> Injection:
        """Inject the frames of the just-closed <time>a-b</time> span inline, inside the assistant's turn.

        An unparsable or unservable span injects nothing (the model simply goes on writing, as in
        plain intrinsic mode); it is counted as `bad_relook` and traced with the reason.
        """
        from engine.tools import inline_video_token_ids, relook_observation

        t0 = time.perf_counter()
        obs = relook_observation(text, t.ep.ctx, self.relook_frames)
        if obs is None or obs.error is not None:
            why = "the text before </time> is not a valid span" if obs is None else obs.error
            event = ToolEvent(len(t.turn_starts), "relook", None, text[-80:], False, "", why, 0, time.perf_counter() - t0)
            return Injection([], [], event, "bad_relook", new_turn=False)
        ids, videos = inline_video_token_ids(obs, self.tok, self.spec)
        event = ToolEvent(len(t.turn_starts), "relook", "frame_zoom", text[-80:], True, obs.text, None,
                          self._visual(videos), time.perf_counter() - t0)
        return Injection(ids, videos, event, new_turn=False)

    # ------------------------------------------------------------------ results

    def _sample(self, t: _Traj) -> Sample:
        last = t.turn_starts[-1] if t.turn_starts else 0
        ep = t.ep
        return Sample(
            group=ep.group, row_id=ep.row_id, prompt_ids=list(ep.prompt_ids), response_ids=t.response_ids,
            response_logprobs=t.logprobs, video=ep.videos[0] if ep.videos else None,
            response_text="".join(t.texts), finished=t.finish_reason == "stop", response_mask=t.mask,
            videos=t.videos, finish_reason=t.finish_reason or "stop", seed=t.seed, turns=len(t.turn_starts),
            final_text="".join(t.texts[last:]), tool_trace=t.trace, counters=t.counters,
            turn_texts=["".join(t.texts[a:b]) for a, b in zip(t.turn_starts, t.turn_starts[1:] + [len(t.texts)])],
        )
