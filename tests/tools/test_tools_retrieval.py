"""clip_retrieval: the caption index ranks the clip of the matching segment first, its BM25 scores match a
direct re-computation, ties break by time, and any ClipIndex plugs into the tool."""
import math
import os
from collections import Counter
from pathlib import Path

import pytest

from engine.data.dataset import load_rows
from engine.data.schema import Segment, VideoRecord
from engine.errors import ConfigError, ToolCallError
from engine.tools import CaptionClipIndex, ClipHit, ClipIndex, ToolCall, default_registry
from engine.tools.retrieval import ClipRetrievalTool, terms


def overlaps(hit: ClipHit, start: float, end: float) -> bool:
    return hit.start_s < end and hit.end_s > start


def test_segment_caption_query_ranks_its_segment_first(tools_dataset):
    _, videos = tools_dataset
    index = CaptionClipIndex(videos)
    checked = 0
    for rec in videos.values():
        captions = [s.caption for s in rec.segments]
        for seg in rec.segments:
            if captions.count(seg.caption) > 1:
                continue  # two segments with one caption: either is right
            top = index.rank(rec.video_id, seg.caption, 3)
            assert top and overlaps(top[0], seg.start_s, seg.end_s), (seg, top)
            assert seg.caption in top[0].text
            checked += 1
    assert checked >= 8


def test_grounding_questions_rank_the_answer_span_first(tools_dataset):
    paths, _ = tools_dataset
    index = CaptionClipIndex.from_dataset(paths.dir)
    rows = [r for r in load_rows(paths.train_jsonl) + load_rows(paths.eval_jsonl) if r.kind == "grounding"]
    assert rows
    for row in rows:
        top = index.rank(str(row.video), row.question, 1)
        assert top and overlaps(top[0], *row.answer_span_s), (row.question, row.answer, top)


def _reference_bm25(videos, clip_s, query, video_id, k1=1.2, b=0.75):
    """Okapi BM25 (Lucene idf) written out from the definition: clip = captions overlapping [k*clip_s, (k+1)*clip_s)."""
    docs = {}
    for rec in videos.values():
        n = math.ceil(rec.duration_s / clip_s)
        for k in range(n):
            lo, hi = k * clip_s, min((k + 1) * clip_s, rec.duration_s)
            text = " ".join(s.caption for s in rec.segments if s.start_s < hi and s.end_s > lo)
            docs[(rec.video_id, lo)] = terms(text)
    avg = sum(len(d) for d in docs.values()) / len(docs)
    df = Counter(t for d in docs.values() for t in set(d))
    scores = {}
    for (vid, lo), words in docs.items():
        if vid != video_id:
            continue
        tf = Counter(words)
        scores[lo] = sum(math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5)) * tf[t] * (k1 + 1)
                         / (tf[t] + k1 * (1 - b + b * len(words) / avg)) for t in set(terms(query)) if t in tf)
    return scores


@pytest.mark.parametrize("clip_s", [2.0, 1.5])
def test_scores_match_a_direct_bm25_computation(tools_dataset, clip_s):
    _, videos = tools_dataset
    index = CaptionClipIndex(videos, clip_s=clip_s)
    for rec in videos.values():
        query = rec.segments[-1].caption + " appears"
        hits = index.rank(rec.video_id, query, 100)
        reference = _reference_bm25(videos, clip_s, query, rec.video_id)
        assert {h.start_s: pytest.approx(h.score, rel=1e-12) for h in hits} == \
            {lo: s for lo, s in reference.items() if s > 0}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def _record(segments, duration=8.0, video_id="v"):
    return VideoRecord(video_id, Path(f"/nonexistent/{video_id}.mp4"), "h264", 8.0, int(duration * 8), 160, 120,
                       duration, [Segment(*s) for s in segments], [])


def test_ties_break_by_start_time_and_unmatched_clips_are_left_out():
    rec = _record([(0, 4, "a red circle moves left"), (4, 6, "nothing happens"), (6, 8, "a red circle moves left")])
    hits = CaptionClipIndex([rec]).rank("v", "red circle moving LEFT", 10)
    assert [(h.start_s, h.end_s) for h in hits] == [(0.0, 2.0), (2.0, 4.0), (6.0, 8.0)]
    assert len({h.score for h in hits}) == 1
    assert CaptionClipIndex([rec]).rank("v", "blue square", 10) == []
    assert CaptionClipIndex([rec]).rank("v", "", 10) == []


def test_last_clip_is_cut_at_the_duration():
    rec = _record([(0, 3, "x y"), (3, 5.5, "z w")], duration=5.5)
    clips = CaptionClipIndex([rec], clip_s=2.0).clips("v")
    assert [(c.start_s, c.end_s, c.text) for c in clips] == [(0.0, 2.0, "x y"), (2.0, 4.0, "x y; z w"), (4.0, 5.5, "z w")]


def test_video_lookup_by_id_path_and_real_path(tools_dataset):
    _, videos = tools_dataset
    index = CaptionClipIndex(videos)
    rec = next(iter(videos.values()))
    caption = rec.segments[0].caption
    by_id = index.rank(rec.video_id, caption, 2)
    assert index.rank(str(rec.path), caption, 2) == by_id
    assert index.rank(os.path.relpath(rec.path), caption, 2) == by_id
    with pytest.raises(ToolCallError, match="no entry for this video"):
        index.rank("/elsewhere/other.mp4", caption, 2)
    with pytest.raises(ToolCallError, match="topk"):
        index.rank(rec.video_id, caption, 0)
    with pytest.raises(ConfigError, match="clip_s"):
        CaptionClipIndex(videos, clip_s=0)
    assert isinstance(index, ClipIndex)


def test_tool_lists_ranked_spans(tools_dataset, make_ctx):
    _, videos = tools_dataset
    ctx = make_ctx()
    rec = next(r for r in videos.values() if str(r.path) == ctx.video_path)
    seg = rec.segments[-1]
    obs = default_registry().execute(ToolCall("clip_retrieval", {"query": seg.caption, "topk": 2}), ctx)
    assert obs.error is None and obs.clips == []
    expected = ctx.clip_index.rank(ctx.video_path, seg.caption, 2)
    lines = obs.text.split("\n")
    assert lines[0] == f'clip_retrieval: {len(expected)} best clip(s) for "{seg.caption}":'
    for i, hit in enumerate(expected, 1):
        assert lines[i].startswith(f'{i}. {{"start": "00:0{int(hit.start_s)}.0", "end": "00:0{int(hit.end_s)}.0"}} '
                                   f"(score {hit.score:.2f})")
    assert seg.caption not in "\n".join(lines[1:])  # captions are ground truth: not shown by default
    many = default_registry().execute(ToolCall("clip_retrieval", {"query": seg.caption, "topk": 50}), ctx)
    assert "topk 50 clamped to the maximum 10" in many.text
    none = default_registry().execute(ToolCall("clip_retrieval", {"query": "zebra"}), ctx)
    assert none.error is None and none.text == 'clip_retrieval: no clip matches "zebra".'
    shown = ClipRetrievalTool(show_text=True).run(ClipRetrievalTool().convert({"query": seg.caption}), ctx)
    assert seg.caption in shown.text


class FixedIndex:
    """A stand-in for an embedding-model index: the ClipIndex protocol is all the tool needs."""

    def __init__(self, tag):
        self.tag, self.calls = tag, []

    def rank(self, video, query, topk):
        self.calls.append((video, query, topk))
        return [ClipHit(1.0, 3.0, 0.9, self.tag), ClipHit(5.0, 7.0, 0.4, self.tag)][:topk]


def test_any_clip_index_plugs_in(make_ctx):
    ctx, fallback = make_ctx(with_index=False), FixedIndex("fallback")
    obs = default_registry(clip_index=fallback).execute(ToolCall("clip_retrieval", {"query": "q"}), ctx)
    assert fallback.calls == [(ctx.video_path, "q", 3)]
    assert ('1. {"start": "00:01.0", "end": "00:03.0"} (score 0.90)\n'
            '2. {"start": "00:05.0", "end": "00:07.0"} (score 0.40)') in obs.text
    preferred = FixedIndex("ctx")
    ctx.clip_index = preferred  # the context's index wins over the registry's
    default_registry(clip_index=fallback).execute(ToolCall("clip_retrieval", {"query": "q", "topk": 1}), ctx)
    assert preferred.calls == [(ctx.video_path, "q", 1)] and len(fallback.calls) == 1
