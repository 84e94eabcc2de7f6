"""clip_retrieval: rank fixed-length clips of a video for a text query behind a pluggable ClipIndex.

`ClipIndex` is the seam for a real video-text embedding model (embed clips once, rank by cosine
similarity). The default `CaptionClipIndex` scores the captions of the synthetic dataset's segments
with BM25: each clip's text is the captions of the segments it overlaps.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Protocol, runtime_checkable

from engine.errors import ConfigError, ToolCallError
from engine.tools.registry import Observation, Tool, ToolContext, arg_int
from engine.tools.timefmt import format_time

_WORD = re.compile(r"[^\W_]+")
# Words that carry no content in questions and captions ("When does the ... appear?").
STOPWORDS = frozenset(
    "a an the at in on of to and or is are was were be does do did when what which where who how it its this "
    "that these those there video clip clips scene frame frames time moment first then".split())
MAX_QUERY_CHARS = 1000
MAX_TOPK = 10


@dataclass(frozen=True)
class ClipHit:
    """One ranked clip: [start_s, end_s] of the video, its relevance score, and its text (if any)."""

    start_s: float
    end_s: float
    score: float
    text: str = ""


@runtime_checkable
class ClipIndex(Protocol):
    def rank(self, video: str, query: str, topk: int) -> list[ClipHit]:
        """The `topk` clips of `video` (a video id or path) most relevant to `query`, best first."""
        ...


def terms(text: str) -> list[str]:
    """Lower-cased content words with a plural/3rd-person 's' stripped (appears -> appear)."""
    out = []
    for word in _WORD.findall(text.casefold()):
        if word in STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class CaptionClipIndex:
    """BM25 over fixed-length clips whose text is the captions of the segments they overlap.

    Clips are [k * clip_s, min((k + 1) * clip_s, duration)] for each video. Document frequencies and
    the mean clip length are taken over every clip in the index (one video has too few clips for
    stable statistics). Ties are broken by start time, so the ranking is deterministic. Clips that
    share no term with the query are not returned.
    """

    def __init__(self, records: Iterable | Mapping, clip_s: float = 2.0, k1: float = 1.2, b: float = 0.75):
        if not (isinstance(clip_s, (int, float)) and math.isfinite(clip_s) and clip_s > 0):
            raise ConfigError("clip_index.clip_s", f"must be a positive number of seconds, got {clip_s!r}")
        self.clip_s, self.k1, self.b = float(clip_s), float(k1), float(b)
        if isinstance(records, Mapping):
            records = records.values()
        self._clips: dict[str, list[tuple[ClipHit, Counter, int]]] = {}
        self._keys: dict[str, str] = {}
        df: Counter = Counter()
        total_len = n_docs = 0
        for rec in records:
            clips = []
            for hit in self._windows(rec):
                words = terms(hit.text)
                clips.append((hit, Counter(words), len(words)))
                df.update(set(words))
                total_len += len(words)
                n_docs += 1
            self._clips[rec.video_id] = clips
            for key in (rec.video_id, str(rec.path), os.path.realpath(rec.path)):
                self._keys[key] = rec.video_id
        self._idf = {t: math.log(1 + (n_docs - n + 0.5) / (n + 0.5)) for t, n in df.items()}
        self._avg_len = total_len / n_docs if n_docs else 1.0

    @classmethod
    def from_dataset(cls, dataset_dir: str | os.PathLike, clip_s: float = 2.0) -> "CaptionClipIndex":
        from engine.data.dataset import load_videos

        return cls(load_videos(Path(dataset_dir)), clip_s=clip_s)

    def _windows(self, rec) -> list[ClipHit]:
        duration = float(rec.duration_s)
        count = max(1, math.ceil(duration / self.clip_s - 1e-9))
        hits = []
        for k in range(count):
            start, end = k * self.clip_s, min((k + 1) * self.clip_s, duration)
            captions = [s.caption for s in sorted(rec.segments, key=lambda s: s.start_s)
                        if s.start_s < end - 1e-9 and s.end_s > start + 1e-9]
            hits.append(ClipHit(start, end, 0.0, "; ".join(captions)))
        return hits

    def _video(self, video: str) -> str:
        key = self._keys.get(str(video))
        if key is None and isinstance(video, (str, os.PathLike)):
            key = self._keys.get(os.path.realpath(video))
        if key is None:
            raise ToolCallError(f"clip_retrieval: the clip index has no entry for this video ({Path(str(video)).name})")
        return key

    def clips(self, video: str) -> list[ClipHit]:
        """Every clip of `video` with its text (score 0), in time order."""
        return [hit for hit, _, _ in self._clips[self._video(video)]]

    def rank(self, video: str, query: str, topk: int) -> list[ClipHit]:
        if not isinstance(query, str):
            raise ToolCallError(f"clip_retrieval: the query must be a string, got {type(query).__name__}")
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ToolCallError(f"clip_retrieval: topk must be an integer >= 1, got {topk!r}")
        clips = self._clips[self._video(video)]
        wanted = set(terms(query))
        scored = []
        for hit, tf, length in clips:
            norm = self.k1 * (1 - self.b + self.b * length / self._avg_len)
            score = sum(self._idf[t] * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in wanted if t in tf)
            if score > 0:
                scored.append(ClipHit(hit.start_s, hit.end_s, score, hit.text))
        scored.sort(key=lambda h: (-h.score, h.start_s, h.end_s))
        return scored[:topk]


@dataclass(frozen=True)
class ClipRetrievalArgs:
    query: str
    topk: int


class ClipRetrievalTool(Tool):
    """clip_retrieval(query, topk). Uses the context's clip index, else the one given here.

    show_text=False (default) lists spans and scores only: with the caption index, the clip texts are
    the ground-truth captions, which would hand the model its answers; the model should look with
    frame_zoom instead.
    """

    name = "clip_retrieval"
    description = ("Find the moments of the video that best match a text description: returns the time "
                   "spans of the best-matching clips, best first, as frame_zoom start/end arguments.")
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to look for, e.g. 'the red circle moves left'"},
            "topk": {"type": "integer", "description": f"how many clips to return (1..{MAX_TOPK}, default 3)"},
        },
        "required": ["query"],
    }

    def __init__(self, index: ClipIndex | None = None, show_text: bool = False, default_topk: int = 3,
                 max_topk: int = MAX_TOPK):
        if not (1 <= default_topk <= max_topk):
            raise ConfigError("clip_retrieval.default_topk", f"must be in [1, max_topk={max_topk}], got {default_topk}")
        self.index, self.show_text = index, show_text
        self.default_topk, self.max_topk = default_topk, max_topk

    def convert(self, arguments: dict) -> ClipRetrievalArgs:
        query = arguments["query"].strip()
        if not query:
            raise ToolCallError("clip_retrieval: argument 'query' must be a non-empty description")
        if len(query) > MAX_QUERY_CHARS:
            raise ToolCallError(f"clip_retrieval: argument 'query' is {len(query)} characters long; "
                                f"the limit is {MAX_QUERY_CHARS}")
        topk = arg_int(self.name, arguments, "topk", self.default_topk)
        if topk < 1:
            raise ToolCallError(f"clip_retrieval: argument 'topk' must be >= 1, got {topk}")
        return ClipRetrievalArgs(query, topk)

    def run(self, args: ClipRetrievalArgs, ctx: ToolContext) -> Observation:
        index = ctx.clip_index if ctx.clip_index is not None else self.index
        if index is None:
            raise ToolCallError("clip_retrieval: no clip index is available for this video")
        topk, notes = min(args.topk, self.max_topk), ""
        if topk < args.topk:
            notes = f" Note: topk {args.topk} clamped to the maximum {self.max_topk}."
        hits = index.rank(ctx.video_path, args.query, topk)[:topk]
        quoted = json.dumps(args.query if len(args.query) <= 100 else args.query[:100] + "...", ensure_ascii=False)
        if not hits:
            return Observation(f"clip_retrieval: no clip matches {quoted}.{notes}")
        lines = []
        for i, h in enumerate(hits, 1):
            # The span in frame_zoom's own argument form, so a model passes it on verbatim.
            span = json.dumps({"start": format_time(h.start_s), "end": format_time(h.end_s)})
            line = f"{i}. {span} (score {h.score:.2f})"
            if self.show_text and h.text:
                line += f": {h.text}"
            lines.append(line)
        return Observation(f"clip_retrieval: {len(hits)} best clip(s) for {quoted}:\n" + "\n".join(lines) + notes)
