"""Caption-space synthesis: the planner's trajectories, rejection sampling, grounding to frame_zoom, the JSONL file."""
import json

import pytest

from engine.config import load_config
from engine.data.dataset import load_rows, load_videos
from engine.data.flash import FLASH_COLOURS, fine_captions
from engine.data.synthetic import make_dataset
from engine.rollout.prompt import question_text
from engine.synth import synthesize
from engine.synth.caption_space import CaptionSpace, Trajectory, Turn, ground
from engine.synth.planner import ScriptedPlanner
from engine.tools import parse_tool_call


@pytest.fixture(scope="module")
def flash(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root, num_videos=16, seed=1, width=128, height=96, fps=2, duration_s=16, eval_fraction=0.25,
                 task="flash")
    return root, load_videos(root), load_rows(root / "train.jsonl")


def test_greedy_planner_looks_densely_and_answers_right(flash):
    _, records, rows = flash
    space = CaptionSpace(records, fine_captions)
    for i, row in enumerate(rows):
        traj = space.run(ScriptedPlanner(FLASH_COLOURS, 16.0, temperature=0.0), row, "sys", question_text(row), i)
        assert traj.correct and traj.answer == row.answer
        assert [t.role for t in traj.turns] == ["assistant", "tool", "assistant"]
        colour = FLASH_COLOURS["ABCD".index(row.answer)]
        assert f"the screen is {colour}" in traj.turns[1].text  # the caption-space look saw it


def test_sampling_strays_and_rejection_drops_wrong_answers(flash, tmp_path):
    root, records, rows = flash
    cfg = load_config(None, [f"data.dir={root}", "data.task=flash", "data.duration_s=16", "rollout.mode=agent",
                             "synth.temperature=1.0", "synth.samples_per_question=3"])
    kept, report = synthesize(cfg, rows, records, tmp_path / "t.jsonl", log=lambda _: None)
    assert report.sampled > len(rows) and 0 < report.kept_fraction < 1  # some samples were wrong and dropped
    assert report.kept == len(kept) <= len(rows)
    lines = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert {x["row_id"] for x in lines} == set(kept)
    by_id = {r.id: r for r in rows}
    for x in lines:
        assert x["answer"] == by_id[x["row_id"]].answer  # only correct trajectories are kept
        calls = [parse_tool_call(t["text"]) for t in x["turns"] if t["role"] == "assistant" and "<tool_call>" in t["text"]]
        assert calls and all(c.name == "frame_zoom" for c in calls)  # grounded: no caption-space tool left
        assert any(t["name"] == "caption_zoom" for t in x["caption_space"] if t["role"] == "tool")
    assert report.to_json()["tool_mix"] == {"frame_zoom": report.kept}


def test_grounding_keeps_arguments_and_retrieval_text():
    call = '<tool_call>\n{"name": "caption_zoom", "arguments": {"start": "00:04.0", "end": "00:08.0"}}\n</tool_call>'
    traj = Trajectory("r", [Turn("assistant", "look: " + call), Turn("tool", "caption_zoom ...", "caption_zoom"),
                            Turn("assistant", '<tool_call>\n{"name": "clip_retrieval", "arguments": {"query": "x"}}\n</tool_call>'),
                            Turn("tool", "clip_retrieval: 1 best clip", "clip_retrieval"),
                            Turn("assistant", "<answer>A</answer>")])
    out = ground(traj)
    assert out[0]["text"].startswith("look: ")
    assert parse_tool_call(out[0]["text"]).arguments == {"start": "00:04.0", "end": "00:08.0"}
    assert parse_tool_call(out[0]["text"]).name == "frame_zoom"
    assert out[1] == {"role": "tool", "name": "frame_zoom", "text": None}  # filled by the real tool later
    assert out[3]["text"] == "clip_retrieval: 1 best clip" and out[4]["text"] == "<answer>A</answer>"


def test_thinker_mode_keeps_only_the_final_trace(flash, tmp_path):
    root, records, rows = flash
    cfg = load_config(None, [f"data.dir={root}", "data.task=flash", "data.duration_s=16", "rollout.mode=thinker",
                             "synth.temperature=0"])
    kept, report = synthesize(cfg, rows, records, tmp_path / "t.jsonl", log=lambda _: None)
    assert report.kept == len(rows)
    for turns in kept.values():
        assert len(turns) == 1 and turns[0]["text"].startswith("<time>") and "<answer>" in turns[0]["text"]


@pytest.fixture(scope="module")
def glimpse(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_glimpse")
    make_dataset(root, num_videos=16, seed=2, width=128, height=96, fps=2, duration_s=30, min_duration_s=20,
                 eval_fraction=0.25, task="glimpse")
    return root, load_videos(root), load_rows(root / "train.jsonl")


def test_glimpse_planner_retrieves_then_zooms_on_the_retrieved_span_verbatim(glimpse):
    from engine.data import glimpse as task
    from engine.synth.planner import RetrieveZoomPlanner

    _, records, rows = glimpse
    space = CaptionSpace(records, task.fine_captions, max_turns=3)
    for i, row in enumerate(rows):
        traj = space.run(RetrieveZoomPlanner(20, temperature=0.0), row, "sys", question_text(row), i)
        assert traj.correct, (row.id, [t.text for t in traj.turns])
        first, retrieved, zoom, looked, answer = traj.turns
        assert parse_tool_call(first.text).name == "clip_retrieval" and retrieved.name == "clip_retrieval"
        best = json.loads(retrieved.text.split("\n")[1].split(" ", 1)[1].rsplit(" (score", 1)[0])
        call = parse_tool_call(zoom.text)
        assert call.name == "caption_zoom" and {k: call.arguments[k] for k in ("start", "end")} == best
        assert "box is shown" in looked.text and "<answer>" in answer.text


def test_glimpse_planner_recovers_from_a_look_that_missed(glimpse):
    from engine.data import glimpse as task
    from engine.synth.planner import RetrieveZoomPlanner

    _, records, rows = glimpse
    space = CaptionSpace(records, task.fine_captions, max_turns=3)
    recovered = 0
    for i, row in enumerate(rows):
        for k in range(6):
            traj = space.run(RetrieveZoomPlanner(20, temperature=1.0), row, "sys", question_text(row), 100 * i + k)
            names = [t.name for t in traj.turns if t.role == "tool"]
            if names[:1] == ["caption_zoom"] and "box is shown" not in traj.turns[1].text:
                assert names[1:] == ["clip_retrieval", "caption_zoom"]  # a wasted look, then retrieval and zoom
                assert traj.correct or row.kind == "grounding"  # a grounding span may be judged too partial
                recovered += 1
    assert recovered > 0


def test_synthesis_works_on_a_fraction_of_the_training_questions(glimpse, tmp_path):
    root, records, rows = glimpse
    cfg = load_config(None, [f"data.dir={root}", "data.task=glimpse", "data.duration_s=30", "data.min_duration_s=20",
                             "rollout.mode=agent", "rollout.max_turns=3", "synth.question_fraction=0.25"])
    kept, report = synthesize(cfg, rows, records, tmp_path / "t.jsonl", log=lambda _: None)
    assert report.questions == len(rows) // 4 and report.training_questions == len(rows)
    assert 0 < len(kept) <= len(rows) // 4
    assert report.to_json()["tool_mix"]["clip_retrieval"] >= len(kept)  # every kept trajectory retrieved
