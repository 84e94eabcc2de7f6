"""`vthink view RUN_DIR`: one self-contained HTML page for a run: reward plot, summary, data, the rollout trace
browser (engine/telemetry/trace_page.py), per-step metrics, config. Nothing is fetched at view time."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from engine.telemetry.metrics import read_metrics
from engine.telemetry.report import plot_rewards, summary_table
from engine.telemetry.trace_page import CSS, trace_section
from engine.telemetry.traces import read_traces

COLUMNS = ("step", "reward_mean", "accuracy", "format", "eval_accuracy", "loss", "kl", "entropy", "clip_frac",
           "grad_norm", "logp_gap_max", "response_len", "tool_calls", "tokens_per_s", "time_rollout_s",
           "time_update_s", "time_sync_s")


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def _data_section(run: Path) -> str:
    """Rows used, rows skipped by reason (bad_rows.jsonl) and prompts that failed mid-run, from data.json."""
    path = run / "data.json"
    if not path.is_file():
        return ""
    d = json.loads(path.read_text())
    lines = [f"rows: {d.get('train_rows', 0)} training, {d.get('eval_rows', 0)} held-out; "
             f"{d.get('bad_rows', 0)} bad rows skipped"]
    lines += [f"  {reason}: {n}" for reason, n in d.get("bad_by_reason", {}).items()]
    if d.get("bad_rows"):
        lines.append("  (each one listed in bad_rows.jsonl)")
    lines.append(f"prompts that failed during the run: {d.get('failed_prompts', 0)}")
    lines += [f"  {f}" for f in d.get("failures", [])[:50]]
    return f"<h2>Data</h2><pre>{html.escape(chr(10).join(lines))}</pre>"


def render_run(run_dir: str | Path) -> Path:
    """Write <run_dir>/report.html from metrics.jsonl (and config.json, data.json, rollouts/ when present)."""
    run = Path(run_dir)
    metrics_path = run / "metrics.jsonl"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{run} has no metrics.jsonl: is it a `vthink train` output_dir?")
    history = read_metrics(metrics_path)
    if not history:
        raise ValueError(f"{metrics_path} holds no steps yet")
    png = base64.b64encode(plot_rewards(history, run / "reward.png").read_bytes()).decode()
    cols = [c for c in COLUMNS if any(c in m for m in history)]
    rows = "\n".join("<tr>" + "".join(f"<td>{_cell(m.get(c, ''))}</td>" for c in cols) + "</tr>" for m in history)
    config = run / "config.json"
    config_html = (f"<h2>Config</h2><pre>{html.escape(json.dumps(json.loads(config.read_text()), indent=2))}</pre>"
                   if config.is_file() else "")
    data_html = _data_section(run)
    traces_html = trace_section(run, read_traces(run)) if (run / "rollouts").is_dir() else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vthink run {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}
.scroll{{overflow-x:auto;max-width:100%}} img{{max-width:100%}}
{CSS}</style></head>
<body><h1>vthink run: {html.escape(str(run))}</h1>
<img alt="reward per step" src="data:image/png;base64,{png}">
<h2>Summary</h2><pre>{html.escape(summary_table(history))}</pre>
{data_html}
{traces_html}
<h2>Per step</h2><div class="scroll"><table><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr>
{rows}
</table></div>
{config_html}
</body></html>
"""
    out = run / "report.html"
    out.write_text(page)
    return out
