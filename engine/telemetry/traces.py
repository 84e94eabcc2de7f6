"""Rollout traces: what the model saw, wrote, called and earned, sample by sample, on disk.

<run_dir>/rollouts/step-<N>.jsonl (training samples of GRPO step N) and eval-<N>.jsonl (held-out answers after
N steps), one JSON object per sample:

    {"step", "split", "row_id", "sample", "group", "kind", "question", "options", "answer",
     "reward": {"total", "accuracy", "format", "tool", <reward.fn components>}, "advantage", "logp_gap_max",
     "finish_reason", "frames": [prompt video frames], "turns": [turn, ...]}
    turn: {"role": "assistant" | "tool", "text", "tool_call": {"name", "arguments", "ok", "error"} | null,
           "frames": [{"t": seconds, "image": "frames/<digest>-<k>.jpg"}]}

Frames are the pixels the model was given (its patches, un-normalised), saved once per distinct clip as small
JPEGs under rollouts/frames/: the G samples of a group share their prompt's. A frame's time is its time in
the source video (VideoInput.frame_times_s).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from engine.video.preprocess import denormalize, unpatchify
from engine.video.spec import QWEN2_5_VL, VisionSpec

THUMB_PX = 128  # longest side of a saved frame


def choose(rewards: list[float], groups: list[int], budget: int) -> list[int]:
    """Up to `budget` sample indices: the best and the worst of each group in turn, then any others."""
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    picked: list[int] = []
    for members in by_group.values():
        ranked = sorted(members, key=lambda i: (-rewards[i], i))
        for i in (ranked[0], ranked[-1]):
            if i not in picked and len(picked) < budget:
                picked.append(i)
    rest = [i for i in range(len(rewards)) if i not in picked]
    return sorted(picked + rest[: max(0, budget - len(picked))])


class TraceWriter:
    def __init__(self, run_dir: str | Path, spec: VisionSpec = QWEN2_5_VL):
        self.dir = Path(run_dir) / "rollouts"
        self.spec = spec  # the policy's patch grid and pixel statistics: how to turn its inputs back into frames
        (self.dir / "frames").mkdir(parents=True, exist_ok=True)
        self._saved: dict[str, list[dict]] = {}

    def frames(self, video) -> list[dict]:
        """[{"t", "image"}] of a VideoInput, its JPEGs written the first time this clip is seen."""
        if video is None:
            return []
        pixels = video.pixel_values.detach().float().cpu().contiguous()
        key = hashlib.sha1(pixels.numpy().tobytes() + repr(tuple(video.grid_thw)).encode()).hexdigest()[:16]
        if key not in self._saved:
            from PIL import Image

            images = denormalize(unpatchify(pixels, video.grid_thw, self.spec), self.spec)
            times = video.frame_times_s or tuple(video.start_s + k * video.second_per_grid_t / 2
                                                 for k in range(len(images)))
            out = []
            for k, img in enumerate(images.numpy()[: len(times)]):  # an odd count was padded with a repeat
                name = f"frames/{key}-{k}.jpg"
                if not (self.dir / name).is_file():
                    im = Image.fromarray(img)
                    im.thumbnail((THUMB_PX, THUMB_PX))
                    im.save(self.dir / name, quality=85)
                out.append({"t": round(times[k], 3), "image": name})
            self._saved[key] = out
        return self._saved[key]

    def turns(self, sample) -> list[dict]:
        texts = sample.turn_texts or [sample.response_text]
        events: dict[int, list] = {}
        for e in sample.tool_trace:
            events.setdefault(e.turn, []).append(e)
        observations = iter(sample.videos[1:])  # videos[0] is the prompt's; then one per visual observation
        out = []
        for k, text in enumerate(texts, start=1):
            call = next((e for e in events.get(k, []) if e.kind in ("tool", "error")), None)
            out.append({"role": "assistant", "text": text, "frames": [], "tool_call": None if call is None else {
                "name": call.name, "arguments": _jsonable(call.arguments), "ok": call.ok, "error": call.error}})
            for e in events.get(k, []):
                video = next(observations, None) if e.visual_tokens > 0 else None
                out.append({"role": "tool", "text": e.result, "tool_call": None, "frames": self.frames(video),
                            "observation": e.kind, "name": e.name, "ok": e.ok})
        return out

    def lines(self, step: int, split: str, samples: list, rewards: list, rows_by_id: dict) -> list[dict]:
        out, seen = [], {}
        for x, r in zip(samples, rewards):
            row = rows_by_id[x.row_id]
            seen[x.group] = seen.get(x.group, -1) + 1
            reward = {k: _finite(v) for k, v in
                      {"total": r.total, "accuracy": r.accuracy, "format": r.format, "tool": r.tool, **r.user}.items()}
            gap = _finite(x.metrics.get("logp_gap_max"))
            out.append({
                "step": step, "split": split, "row_id": x.row_id, "sample": seen[x.group], "group": x.group,
                "kind": row.kind, "question": row.question, "options": list(row.options), "answer": row.answer,
                "reward": reward, "advantage": _finite(x.advantage), "logp_gap_max": gap, "finish_reason": x.finish_reason,
                "frames": self.frames(x.videos[0] if x.videos else x.video), "turns": self.turns(x),
            })
        return out

    def write(self, name: str, lines: list[dict]) -> Path:
        path = self.dir / f"{name}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(line, allow_nan=False) + "\n" for line in lines))  # JSON.parse-able
        tmp.replace(path)
        return path


def _finite(value):
    """A number as JSON can carry it: NaN and infinities (a skipped, non-finite update) become null."""
    return None if value is None or not math.isfinite(value) else float(value)


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def read_traces(run_dir: str | Path) -> list[dict]:
    """Every trace line of a run, training steps and evals, ordered by step."""
    lines = []
    for path in sorted((Path(run_dir) / "rollouts").glob("*.jsonl")):
        lines += [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return sorted(lines, key=lambda d: (d["step"], d["split"] != "train", d["group"], d["sample"]))
