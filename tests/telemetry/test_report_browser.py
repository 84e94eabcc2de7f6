"""report.html in a real browser (headless Chromium over DevTools): the trace browser renders every traced sample
and its frames, the filters work, clicking a <time> span marks its frames, no script error is raised, and model
text that looks like markup stays text."""
import json
import os
from pathlib import Path

import pytest

from engine.cli import main
from engine.reward import score_sample
from engine.telemetry.metrics import MetricsLog
from engine.telemetry.traces import TraceWriter
from engine.telemetry.view import COLUMNS
from tests.telemetry.browser import Browser, find_chromium
from tests.telemetry.test_traces import ANSWER, agent_setup, scripted_group

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> <answer>B</answer>'


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.fail("no chromium: run tests/telemetry/setup_chromium.sh (make test does)")
    b = Browser(binary)
    yield b
    b.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run dir: 2 steps of metrics, data.json, and traces of real agent trajectories (one with a tool call,
    one whose text is hostile markup) for steps 0 and 1 and an eval after step 2."""
    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "run"
    cfg, s, rollout = agent_setup(tmp)
    rows = [next(r for r in s.train_rows if r.kind == kind) for kind in ("mcq", "grounding")]
    writer = TraceWriter(out)
    all_lines = []
    for step, (row, second) in enumerate(zip(rows, (ANSWER, HOSTILE))):
        samples = scripted_group(cfg, s, rollout, row, second_text=second)
        rewards = [score_sample(x, row, cfg.reward, agent=True) for x in samples]
        lines = writer.lines(step, "train", samples, rewards, {row.id: row})
        writer.write(f"step-{step}", lines)
        all_lines += lines
    eval_lines = [dict(line, split="eval", step=2) for line in all_lines[:2]]
    writer.write("eval-2", eval_lines)
    log = MetricsLog(out, 3, tensorboard=False)
    log.write({"step": 0, "reward_mean": 0.0, "accuracy": 0.5, "format": 0.5, "loss": 0.1})
    log.write({"step": 1, "reward_mean": 0.5, "accuracy": 0.5, "format": 0.5, "loss": 0.1, "eval_accuracy": 0.5})
    log.write({c: 123456.789 for c in COLUMNS} | {"step": 2})  # every column, wide values: the table is wide
    (out / "data.json").write_text(json.dumps({"train_rows": 3, "eval_rows": 1, "bad_rows": 1,
                                               "bad_by_reason": {"video not found": 1}, "failed_prompts": 0}))
    assert main(["view", str(out)]) == 0
    return out, all_lines + eval_lines


def visible(b) -> int:
    return b.eval("[...document.querySelectorAll('.trace')].filter(c => c.style.display !== 'none').length")


def set_filter(b, element_id: str, value) -> None:
    b.eval(f"(() => {{ const e = document.getElementById({element_id!r}); e.value = {json.dumps(str(value))};"
           " e.dispatchEvent(new Event('change')); })()")


def test_report_renders_traces_frames_and_filters_in_chromium(browser, run, tmp_path):
    out, lines = run
    b = browser
    b.open((out / "report.html").as_uri(), ready="document.body.dataset.traceViewer === 'ready'")
    assert b.eval("document.querySelectorAll('.trace').length") == len(lines) == 6
    # Every frame of every sample and tool observation is in the DOM and its image decoded.
    want_frames = sum(len(t["frames"]) + sum(len(u["frames"]) for u in t["turns"]) for t in lines)
    assert b.eval("document.querySelectorAll('.trace .frame img').length") == want_frames
    assert b.eval("[...document.querySelectorAll('.trace .frame img')].every(i => i.complete && i.naturalWidth > 0)")
    assert b.eval("document.querySelector('.call').textContent").startswith("call frame_zoom")
    # Filters: step, tool use, reward range, kind; each count checked against the lines themselves.
    with_tools = sum(any(u["tool_call"] for u in t["turns"]) for t in lines)
    set_filter(b, "f-tools", "yes")
    assert visible(b) == with_tools > 0
    set_filter(b, "f-tools", "")
    set_filter(b, "f-step", "train 1")
    assert visible(b) == sum(t["split"] == "train" and t["step"] == 1 for t in lines) == 2
    set_filter(b, "f-step", "")
    set_filter(b, "f-rmin", 1.5)
    assert visible(b) == sum(t["reward"]["total"] >= 1.5 for t in lines)
    set_filter(b, "f-rmin", -1000)
    set_filter(b, "f-kind", "grounding")
    grounding = sum(t["kind"] == "grounding" for t in lines)
    assert visible(b) == grounding == 2
    assert f"{grounding} of 6" in b.eval("document.getElementById('f-count').textContent")
    set_filter(b, "f-kind", "")
    assert visible(b) == 6
    # Clicking <time>00:01-00:03</time> marks exactly the frames of that card within [1 s, 3 s].
    card = "[...document.querySelectorAll('.trace')].find(c => c.querySelector('.call'))"
    b.eval(f"{card}.querySelector('.tag-time').click()")
    hit = b.eval(f"[...{card}.querySelectorAll('.frame.hit')].map(f => Number(f.dataset.t))")
    every = b.eval(f"[...{card}.querySelectorAll('.frame')].map(f => Number(f.dataset.t))")
    assert hit and hit == [t for t in every if 1 <= t <= 3]
    # Hostile model text is shown as text and never runs.
    assert b.eval("window.__pwned === undefined")
    assert b.eval("document.querySelectorAll('script').length") == 3
    assert b.eval("document.querySelectorAll('img[onerror]').length") == 0
    assert b.eval("[...document.querySelectorAll('.turn')].some(t => t.textContent.includes("
                  "'<script>window.__pwned = 1</script>'))")
    assert "video not found: 1" in b.eval("document.body.textContent")
    assert b.errors == []
    shot = Path(os.environ.get("VTHINK_SCREENSHOT_DIR", tmp_path)) / "report.png"
    b.screenshot(shot)
    assert shot.stat().st_size > 10_000


def test_report_cards_label_what_they_show_and_a_narrow_window_never_scrolls_sideways(browser, run):
    out, lines = run
    b = browser
    b.call("Emulation.setDeviceMetricsOverride", width=700, height=1000, deviceScaleFactor=1, mobile=False)
    try:
        b.open((out / "report.html").as_uri(), ready="document.body.dataset.traceViewer === 'ready'")
        # The page fits the window; the wide per-step table scrolls inside its own box.
        assert b.eval("document.documentElement.scrollWidth <= window.innerWidth")
        assert b.eval("(() => { const box = document.querySelector('.scroll');"
                      " return box.scrollWidth > box.clientWidth && box.querySelectorAll('tr').length === 4; })()")
        mcq = next(t for t in lines if t["kind"] == "mcq")
        card = f"[...document.querySelectorAll('.trace')].find(c => c.dataset.kind === 'mcq')"
        head = b.eval(f"{card}.querySelector('h3').textContent")
        assert f"row {mcq['row_id']}" in head and f"correct answer {mcq['answer']}" in head
        question = b.eval(f"{card}.querySelector('.question').textContent")
        assert " | ".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(mcq["options"])) in question
        assert b.errors == []
    finally:
        b.call("Emulation.clearDeviceMetricsOverride")
