"""The embedded tiny model's reading warm-up (`model.path: tiny-reader`).

The embedded model starts from random weights: it knows no language, so it cannot read a multiple-choice question's
options, and with options shuffled per row it never learns to from the demo's few hundred trajectories (it names the
box's colour but not its letter; measured in ../shared/notes and the #25 notes). Nor does SFT on 120 video
trajectories teach it to pass a retrieved span on to the next call (it writes inverted windows, then junk). A real
VLM comes with these skills. This gives the tiny model them, from text alone, before it ever sees a video; batches
alternate between two kinds:

  reading   user:      What color is the box that appears briefly?  A. blue  B. yellow  C. red  D. green  ...
            assistant: <time>01:02-01:04</time> <caption>a red box</caption>    (given: not learned here)
                       <think>A. blue no. B. yellow no. C. red yes.</think> <answer>C</answer>    (learned)

  agent     system:    the agent prompt (without the tool schemas); user: either glimpse question
            assistant: <tool_call>clip_retrieval("colored box", 3)</tool_call>    (learned)
            tool:      clip_retrieval's own output for 1-3 random 2-s clips    (given)
            assistant: <tool_call>frame_zoom(the first clip's span, 8 frames)</tool_call>    (learned: the copy)
            tool:      frame_zoom's own text for that window (no frames)    (given)
            assistant: <time>..</time> <caption>a red box</caption>    (given)
                       <think>A. blue no. ...</think> <answer>C</answer>    (learned: reading the options back
                       past the tool turns, where the agent's answer has to find them)

The caption, which names the colour, is part of the prompt here and never a target: *which* colour the box is has
to come from the frames later (trained_blank, which sees blank frames, stays at chance); *where* the box is comes
from retrieval over the coarse captions. Fresh random examples every step; the result is cached beside the tiny
model, keyed by seed, architecture and READER_VERSION.

Measured limit: the lookup is short-sighted. Put the tool schemas a rollout's system turn carries (~640 tokens) before
the same exchange and this reader answers it at 0.48 instead of 1.00. Teaching it with them costs 2.5x the time (1.7 s
an agent step) and left option reading at 0.62 after 1600 steps, so the examples stay without them; the agent demo
closes each tool response with the question again instead (`rollout.question_reminder`), which puts the options a
few tokens before the answer, as in the thinker's prompt.
"""
from __future__ import annotations

import fcntl
import json
import random
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from engine.data.glimpse import COLOURS, QUERY, QUESTION, WHEN
from engine.data.schema import QARow
from engine.model.loading import (READER, READER_STAMP, READER_STEPS, built_reader, ensure_tiny, reader_dir,
                                   reader_stamp)
from engine.rollout.prompt import AGENT_PROMPT, SYSTEM_PROMPT, question_text
from engine.rollout.teacher import scan_options
from engine.tools import ToolCall, ToolContext, ToolRegistry, default_registry, format_tool_call
from engine.tools.render import TURN_CLOSE, TURN_OPEN, safe_text
from engine.tools.retrieval import ClipHit
from engine.tools.timefmt import format_time

BATCH, LR = 16, 1e-3
ZOOM_FRAMES = 8  # the demo's rollout.max_zoom_frames, which frame_zoom's schema states
STAMP = READER_STAMP


def example(rng: random.Random, tokenizer) -> tuple[str, str, str]:
    """(prompt text with the given time and caption, target text, answer letter) of one fresh question."""
    options = list(COLOURS)
    rng.shuffle(options)
    colour = rng.choice(options)
    letter = "ABCD"[options.index(colour)]
    row = QARow("reader", "reader", Path("reader.mp4"), "mcq", QUESTION, options, letter, None, "train")
    messages = [{"role": "system", "content": rng.choice([SYSTEM_PROMPT, AGENT_PROMPT])},
                {"role": "user", "content": [{"type": "text", "text": question_text(row)}]}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    a = rng.randrange(0, 110)
    b = a + rng.randrange(1, 4)
    given = f"<time>{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}</time> <caption>a {colour} box</caption> "
    target = f"<think>{scan_options(list(zip('ABCD', options)), colour)}</think> <answer>{letter}</answer><|im_end|>"
    return prompt + given, target, letter


class _GivenClips:
    """A clip index that ranks the clips it was given, so the example's tool output is clip_retrieval's own text."""

    def __init__(self, hits: list[ClipHit]):
        self.hits = hits

    def rank(self, video: str, query: str, topk: int) -> list[ClipHit]:
        return self.hits[:topk]


class _FrameTimes:
    """A video service whose windows are the demo's 2-fps frame times (no pixels), so the example's frame_zoom
    output is the tool's own text."""

    def window(self, video: str, start: float, end: float, policy):
        times = [t for t in (start, start + 0.5, end - 0.5, end) if start <= t <= end]
        return SimpleNamespace(start_s=start, end_s=end, num_frames=len(times), timestamps_s=torch.tensor(times),
                               notes=[])


def agent_example(rng: random.Random, tokenizer, registry) -> tuple[list[tuple[str, bool]], str, str]:
    """([(text, is_target)] of one whole agent exchange, the zoom call's span JSON, the answer): retrieve, zoom on
    the first clip (its span copied), answer. Hits are 1-3 two-second clips around a random time, ordered and
    scored as the caption index gives them; what the look shows (the time and colour) is given, as in `example`.
    Three in four ask the colour (options shuffled), one in four when the box appears, as the glimpse task does."""
    options = list(COLOURS)
    rng.shuffle(options)
    colour = rng.choice(options)
    best = 2 * rng.randrange(1, 59)
    seen = f"{best // 60:02d}:{best % 60:02d}-{(best + 2) // 60:02d}:{(best + 2) % 60:02d}"
    if rng.random() < 0.75:
        letter = "ABCD"[options.index(colour)]
        row = QARow("reader", "reader", Path("reader.mp4"), "mcq", QUESTION, options, letter, None, "train")
        answer, think = letter, scan_options(list(zip("ABCD", options)), colour)
    else:
        row = QARow("reader", "reader", Path("reader.mp4"), "grounding", WHEN, None, seen, None, "train")
        answer, think = seen, f"The box shows over {seen}."
    messages = [{"role": "system", "content": AGENT_PROMPT},
                {"role": "user", "content": [{"type": "text", "text": question_text(row)}]}]
    # Without the tool schemas the chat template adds to the system turn in a rollout: they would make the example
    # 3x longer (1.7 s a step on 2 cores); see "Measured limit" above for what stands in for them.
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    near = [t for t in (best - 2, best + 2) if rng.random() < 0.6]
    rng.shuffle(near)
    hits = [ClipHit(best, best + 2, 5.49)] + [ClipHit(t, t + 2, rng.choice([5.49, 4.16])) for t in near]
    retrieve = ToolCall("clip_retrieval", {"query": QUERY, "topk": 3})
    found = registry.execute(retrieve, ToolContext("reader.mp4", None, None, 120.0, _GivenClips(hits))).text
    span = {"start": format_time(best), "end": format_time(best + 2)}
    zoom = ToolCall("frame_zoom", {**span, "num_frames": ZOOM_FRAMES})
    looked = registry.execute(zoom, ToolContext("reader.mp4", _FrameTimes(), None, 120.0)).text
    given = f"<time>{seen}</time> <caption>a {colour} box</caption> "
    target = f"<think>{think}</think> <answer>{answer}</answer><|im_end|>"
    return ([(prompt, False), (format_tool_call(retrieve), True), (TURN_OPEN + safe_text(found) + TURN_CLOSE, False),
             (format_tool_call(zoom), True), (TURN_OPEN + safe_text(looked) + TURN_CLOSE + given, False),
             (target, True)], json.dumps(span), answer)


def demo_tools():
    """The demo agent's tools, in its config's order (rollout.tools: [clip_retrieval, frame_zoom])."""
    offered = default_registry(max_zoom_frames=ZOOM_FRAMES)
    return ToolRegistry([offered.get("clip_retrieval"), offered.get("frame_zoom")])


def _encode(segments: list[tuple[str, bool]], tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the segments, and 1 on the tokens of learned ones (0 elsewhere)."""
    ids, learned = [], []
    for text, target in segments:
        part = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += part
        learned += [int(target)] * len(part)
    return ids, learned


def _segments(rng: random.Random, tokenizer, registry, agent: bool) -> list[tuple[str, bool]]:
    if agent:
        return agent_example(rng, tokenizer, registry)[0]
    prompt, target, _ = example(rng, tokenizer)
    return [(prompt, False), (target, True)]


class Rehearsal:
    """`sft.reader_examples`: fresh warm-up examples, half of each kind, as text-only SFT samples to add to every
    batch. Measured on the agent demo (data seed 0): its SFT alone takes held-out text reading from 1.00 to 0.16, the
    span copy to 0.44; with 8 of these a batch all three warm-up measures stay at 1.00."""

    def __init__(self, tokenizer, n: int, seed: int):
        self.tokenizer, self.n = tokenizer, n
        self.rng, self.registry = random.Random(seed + 20_000), demo_tools()

    def __call__(self) -> list:
        from engine.rollout.batch import Sample

        out = []
        for i in range(self.n):
            ids, learned = _encode(_segments(self.rng, self.tokenizer, self.registry, agent=i % 2 == 1), self.tokenizer)
            start = learned.index(1)  # the prompt: everything before the first learned token
            out.append(Sample(group=0, row_id=f"reader-{i}", prompt_ids=ids[:start], response_ids=ids[start:],
                              response_logprobs=[0.0] * (len(ids) - start), response_mask=learned[start:]))
        return out


def _batch(rng: random.Random, tokenizer, registry, agent: bool):
    """Token ids, labels (-100 off target) and attention mask of BATCH fresh examples of one kind (one kind a
    batch pads less)."""
    rows = []
    for _ in range(BATCH):
        ids, learned = _encode(_segments(rng, tokenizer, registry, agent), tokenizer)
        rows.append((ids, [t if keep else -100 for t, keep in zip(ids, learned)]))
    n = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    out_ids = torch.full((BATCH, n), pad)
    out_labels = torch.full((BATCH, n), -100)
    mask = torch.zeros(BATCH, n, dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):
        out_ids[i, :len(ids)] = torch.tensor(ids)
        out_labels[i, :len(ids)] = torch.tensor(labels)
        mask[i, :len(ids)] = 1
    return out_ids, out_labels, mask


def warm_up(model, tokenizer, steps: int, seed: int, log=print) -> dict[str, float]:
    """Train `model` on `steps` batches of fresh examples; returns greedy accuracy on held-out ones of each kind
    (64, or `steps` for a shorter build, which is a test's): {"reading": right letter, "calling": the zoom repeats
    the first retrieved span, "answering": right answer at the end of an agent exchange}."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    registry = demo_tools()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        ids, labels, mask = _batch(rng, tokenizer, registry, agent=step % 2 == 1)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if (step + 1) % 200 == 0 or step + 1 == steps:
            log(f"reader warm-up {step + 1}/{steps} | loss {loss.item():.4f} | {time.perf_counter() - t0:.0f} s")
    model.eval()
    held = random.Random(seed + 10_000)

    def greedy(prompt: str, tokens: int) -> str:
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        out = model.generate(ids, max_new_tokens=tokens, do_sample=False)
        return tokenizer.decode(out[0, ids.shape[1]:])

    reading = calling = answering = 0
    n = min(64, steps)
    with torch.no_grad():
        for _ in range(n):
            prompt, _, letter = example(held, tokenizer)
            reading += f"<answer>{letter}</answer>" in greedy(prompt, 40)
            segments, span, answer = agent_example(held, tokenizer, registry)
            calling += span[:-1] in greedy("".join(text for text, _ in segments[:3]), 60)
            answering += f"<answer>{answer}</answer>" in greedy("".join(text for text, _ in segments[:5]), 60)
    return {"reading": reading / n, "calling": calling / n, "answering": answering / n}


def ensure_reader(seed: int = 0, arch: str = "qwen2_5_vl", steps: int = READER_STEPS, log=print) -> Path:
    """The tiny model of `seed` / `arch` after the reading warm-up, built once (a file lock keeps racing processes
    from building it twice) and reused while its stamp matches."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    final = reader_dir(seed, arch, steps)
    name = final.name
    if built_reader(seed, arch, steps) is not None:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then reuse its result
        if built_reader(seed, arch, steps) is not None:
            return final
        tiny = ensure_tiny(seed, arch)
        log(f"building {final.name}: the tiny model after {steps} steps of text-only option reading (once; cached)")
        model = AutoModelForImageTextToText.from_pretrained(tiny, dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
        accuracy = warm_up(model, tokenizer, steps, seed, log)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        try:
            shutil.copytree(tiny, tmp, dirs_exist_ok=True)  # tokenizer, processor files, generation config
            model.save_pretrained(tmp)
            (tmp / STAMP).write_text(json.dumps({**reader_stamp(seed, arch, steps), "heldout_accuracy": accuracy})
                                     + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"{final.name}: held-out option reading {accuracy['reading']:.2f}, span copy {accuracy['calling']:.2f}, "
            f"answer after the tools {accuracy['answering']:.2f}")
    return final


def build_if_named(model, log=print) -> None:
    """Build the reader before a command starts when `model` (a config's model section) names it, so every process
    of the run (driver and actors) finds it built (engine/model/loading.py: model_dir)."""
    if model.path == READER:
        ensure_reader(model.seed, model.arch, log=log)
