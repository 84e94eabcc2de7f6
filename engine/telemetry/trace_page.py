"""The trace browser of report.html: the traces as embedded JSON, rendered and filtered by a small script.

Model text is untrusted input: the script only ever puts it into the page with textContent (never innerHTML),
and the embedded JSON escapes '<', so no generated text can close the script element or become markup.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

CSS = """
.filters{display:flex;gap:1em;flex-wrap:wrap;align-items:center;margin:.5em 0;padding:.5em;background:#f3f3f3}
.trace{border:1px solid #ccc;border-radius:4px;margin:.8em 0;padding:.5em .8em}
.trace h3{margin:.2em 0;font-size:15px}
.strip{display:flex;gap:4px;flex-wrap:wrap;margin:.3em 0}
.frame{text-align:center;font-size:11px;color:#555;border:2px solid transparent}
.frame img{display:block;height:72px}
.frame.hit{border-color:#e67e00;background:#fff3e0}
.turn{margin:.3em 0;padding:.3em .5em;border-left:3px solid #999;white-space:pre-wrap;font-family:monospace;font-size:12px}
.turn.assistant{border-color:#2b6cb0}.turn.tool{border-color:#2f855a;background:#f0fff4}
.tag-time{background:#ffe8a3;cursor:pointer;text-decoration:underline dotted}
.tag-caption{background:#d6f5d6}.tag-think{color:#666;font-style:italic}.tag-answer{background:#cfe2ff;font-weight:bold}
.tag-tool_call{background:#f9d5e5}
.call{font-size:12px;margin:.2em 0;color:#7a1f4f}
.rewards td,.rewards th{font-size:12px;padding:1px 6px;border:1px solid #ddd}
"""

SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('trace-data').textContent);
  const images = JSON.parse(document.getElementById('trace-images').textContent);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const toSeconds = (s) => {
    const m = /^\s*(\d+):(\d+(?:\.\d+)?)\s*$/.exec(s);
    return m ? Number(m[1]) * 60 + Number(m[2]) : (isFinite(Number(s)) ? Number(s) : NaN);
  };
  const TAGS = /<(time|caption|think|answer|tool_call)>([\s\S]*?)<\/\1>/g;

  function strip(frames) {
    const s = el('div', 'strip');
    for (const f of frames) {
      const box = el('div', 'frame');
      box.dataset.t = f.t;
      const img = el('img');
      img.alt = 'frame at ' + f.t + ' s';
      img.src = images[f.image] || '';
      box.appendChild(img);
      box.appendChild(el('span', null, Number(f.t).toFixed(1) + ' s'));
      s.appendChild(box);
    }
    return s;
  }

  function highlight(card, span) {
    const parts = span.split('-');
    const a = toSeconds(parts[0] || ''), b = toSeconds(parts.slice(1).join('-') || '');
    for (const f of card.querySelectorAll('.frame')) {
      const t = Number(f.dataset.t);
      f.classList.toggle('hit', isFinite(a) && isFinite(b) && t >= a && t <= b);
    }
  }

  function richText(text, card) {
    const box = el('div');
    let last = 0;
    for (const m of text.matchAll(TAGS)) {
      if (m.index > last) box.appendChild(document.createTextNode(text.slice(last, m.index)));
      const tag = el('span', 'tag-' + m[1], '<' + m[1] + '>' + m[2] + '</' + m[1] + '>');
      if (m[1] === 'time') tag.addEventListener('click', () => highlight(card, m[2]));
      box.appendChild(tag);
      last = m.index + m[0].length;
    }
    if (last < text.length) box.appendChild(document.createTextNode(text.slice(last)));
    return box;
  }

  function card(t) {
    const c = el('div', 'trace');
    c.dataset.step = t.step; c.dataset.kind = t.kind; c.dataset.split = t.split;
    c.dataset.reward = t.reward.total;
    c.dataset.tools = t.turns.some((u) => u.tool_call) ? 'yes' : 'no';
    c.appendChild(el('h3', null, `${t.split} step ${t.step} · row ${t.row_id} · sample ${t.sample} · ${t.kind} · ` +
                                 `reward ${Number(t.reward.total).toFixed(3)} · correct answer ${t.answer}`));
    // Options with the letters the question showed the model, so "correct answer B" can be read off.
    const options = t.options.map((o, i) => String.fromCharCode(65 + i) + '. ' + o);
    c.appendChild(el('div', 'question', t.question + (options.length ? '  [' + options.join(' | ') + ']' : '')));
    c.appendChild(strip(t.frames));
    for (const u of t.turns) {
      const turn = el('div', 'turn ' + u.role);
      turn.appendChild(el('b', null, u.role === 'tool' ? (u.name || u.observation || 'tool') + ' → ' : 'model: '));
      turn.appendChild(richText(u.text, c));
      if (u.tool_call) {
        turn.appendChild(el('div', 'call', 'call ' + (u.tool_call.name || '?') + ' ' +
                            JSON.stringify(u.tool_call.arguments) + (u.tool_call.ok ? '' : '  (failed: ' +
                            (u.tool_call.error || '') + ')')));
      }
      if (u.frames && u.frames.length) turn.appendChild(strip(u.frames));
      c.appendChild(turn);
    }
    const table = el('table', 'rewards');
    const head = el('tr'), row = el('tr');
    for (const [k, v] of Object.entries(t.reward)) {
      head.appendChild(el('th', null, k));
      row.appendChild(el('td', null, Number(v).toFixed(3)));
    }
    for (const [k, v] of [['advantage', t.advantage], ['logp_gap_max', t.logp_gap_max]]) {
      head.appendChild(el('th', null, k));
      row.appendChild(el('td', null, v === null || v === undefined ? '-' : Number(v).toPrecision(3)));
    }
    table.appendChild(head); table.appendChild(row);
    c.appendChild(table);
    return c;
  }

  const list = document.getElementById('traces');
  const cards = data.map(card);
  cards.forEach((c) => list.appendChild(c));
  const fill = (id, values) => {
    const s = document.getElementById(id);
    for (const v of values) { const o = el('option', null, v); o.value = v; s.appendChild(o); }
  };
  fill('f-step', [...new Set(data.map((t) => t.split + ' ' + t.step))]);
  fill('f-kind', [...new Set(data.map((t) => t.kind))]);
  const count = document.getElementById('f-count');
  function apply() {
    const step = document.getElementById('f-step').value, kind = document.getElementById('f-kind').value;
    const tools = document.getElementById('f-tools').value;
    const lo = Number(document.getElementById('f-rmin').value), hi = Number(document.getElementById('f-rmax').value);
    let shown = 0;
    for (const c of cards) {
      const r = Number(c.dataset.reward);
      const ok = (!step || step === c.dataset.split + ' ' + c.dataset.step) && (!kind || kind === c.dataset.kind) &&
                 (!tools || tools === c.dataset.tools) && r >= lo && r <= hi;
      c.style.display = ok ? '' : 'none';
      shown += ok;
    }
    count.textContent = shown + ' of ' + cards.length + ' samples';
  }
  for (const id of ['f-step', 'f-kind', 'f-tools', 'f-rmin', 'f-rmax']) {
    document.getElementById(id).addEventListener('input', apply);
    document.getElementById(id).addEventListener('change', apply);
  }
  apply();
  document.body.dataset.traceViewer = 'ready';
})();
"""

FILTERS = """<div class="filters">
<label>step <select id="f-step"><option value="">all</option></select></label>
<label>question kind <select id="f-kind"><option value="">all</option></select></label>
<label>tool use <select id="f-tools"><option value="">any</option><option value="yes">with tool calls</option>
<option value="no">without</option></select></label>
<label>reward from <input id="f-rmin" type="number" step="0.1" value="-1000"> to
<input id="f-rmax" type="number" step="0.1" value="1000"></label>
<span id="f-count"></span></div>"""


def _script_json(value) -> str:
    # '<' escaped: nothing inside can end the <script> element; JSON.parse reads \u003c back as '<'.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def trace_section(run: Path, traces: list[dict]) -> str:
    """The "Rollouts" section of report.html: filters, one card per traced sample, frames embedded."""
    if not traces:
        return ""
    names = {f["image"] for t in traces for f in t["frames"]}
    names |= {f["image"] for t in traces for u in t["turns"] for f in u.get("frames", [])}
    images = {}
    for name in sorted(names):
        path = run / "rollouts" / name
        if path.is_file():
            images[name] = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    return (f"<h2>Rollouts</h2><p>{len(traces)} traced samples from {html.escape(str(run / 'rollouts'))}. Click a "
            f"&lt;time&gt; span to mark the frames inside it.</p>{FILTERS}<div id=\"traces\"></div>"
            f"<script type=\"application/json\" id=\"trace-data\">{_script_json(traces)}</script>"
            f"<script type=\"application/json\" id=\"trace-images\">{_script_json(images)}</script>"
            f"<script>{SCRIPT}</script>")
