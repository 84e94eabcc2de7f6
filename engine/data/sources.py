"""Where the rows come from: the user's files in one of three layouts, or the synthetic dataset, every row
checked before anything trains or is evaluated.

Layouts (data.format; "auto" decides per file by its first row's keys, qa_jsonl when data.fields are renamed):
  vthink    the rows `vthink make-data` writes (engine/data/schema.py QARow), videos.jsonl beside them if any;
  video_r1  Video-R1 / Video-Thinker-10K rows: problem_id, problem, data_type, problem_type, options
            ("A. ..."), solution ("<answer>...</answer>", possibly after reasoning), path, data_source;
            the reasoning (`process`, or the solution's text before its answer) becomes the SFT target;
  qa_jsonl  video, question, options, answer (names set by data.fields.*).
Files are .jsonl (one row per line), .json (a list of rows) or .parquet. Relative video paths resolve
against data.video_root, else the file's own folder.

A row that cannot be used becomes a BadRow (file, line or index, id, reason) instead of an exception:
`vthink data check` lists them all, and data.on_bad_row decides whether a run refuses them (error, the
default) or goes on without them (skip).
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engine.data.answers import number_text
from engine.data.schema import DatasetError, QARow, VideoRecord, parse_span
from engine.errors import ConfigError, VideoDecodeError

# Video-R1 problem_type -> vthink kind.
R1_KINDS = {"multiple choice": "mcq", "numerical": "numerical", "ocr": "ocr", "free-form": "free-form",
            "regression": "regression", "grounding": "grounding"}
_OPTION = re.compile(r"^\s*\(?([A-Z])\)?[.:)]\s*(.*)$", re.S)
# Upper case only, unlike the reward's reading of model answers: a dataset answer "a cat" is text, not option A.
_LETTER = re.compile(r"^\s*\(?([A-Z])\)?(?:[.:)\s]|$)")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


class RowError(DatasetError):
    """One row is unusable; `reason` is its class (what `vthink data check` counts), the message the detail."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class BadRow:
    file: str
    where: str  # "line 7", "index 3" (a .json list) or "row 3" (parquet)
    row_id: str | None
    reason: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "where": self.where, "row_id": self.row_id, "reason": self.reason,
                "detail": self.detail}

    def __str__(self) -> str:
        return f"{self.file}:{self.where} id={self.row_id}: {self.reason}: {self.detail}"


@dataclass
class Data:
    """Usable rows of both splits, the video records known for them, and every row that was refused."""

    train: list[QARow]
    eval: list[QARow]
    records: dict[str, VideoRecord] = field(default_factory=dict)
    bad: list[BadRow] = field(default_factory=list)

    def bad_counts(self) -> dict[str, int]:
        return dict(Counter(b.reason for b in self.bad).most_common())

    def summary(self) -> dict[str, Any]:
        """What a run reports about its data (run summary, data.json, report.html)."""
        return {"train_rows": len(self.train), "eval_rows": len(self.eval), "bad_rows": len(self.bad),
                "bad_by_reason": self.bad_counts()}


# ---------------------------------------------------------------------------------------------- files


def read_file(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, raw row) of every row in a .jsonl / .json / .parquet file; a line that is not JSON comes as
    a RowError in place of the row. A file that cannot be read at all raises DatasetError."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"line {lineno}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"line {lineno}", RowError("not JSON", f"{e.msg} at column {e.colno}")
    elif suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
        if not isinstance(rows, list):
            raise DatasetError(f"{path}: a .json dataset must hold a list of rows, got {type(rows).__name__}")
        yield from ((f"index {i}", r) for i, r in enumerate(rows))
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises its own error classes for every kind of damage
            raise DatasetError(f"{path}: not a readable parquet file ({e})") from None
        yield from ((f"row {i}", r) for i, r in enumerate(rows))
    else:
        raise DatasetError(f"{path}: unknown dataset file type {suffix!r}; expected .jsonl, .json or .parquet")


def detect_format(raw: dict) -> str:
    if any(k in raw for k in ("problem_id", "problem", "problem_type", "solution")):
        return "video_r1"
    if "video_id" in raw and "kind" in raw and "split" in raw:
        return "vthink"
    return "qa_jsonl"


# ---------------------------------------------------------------------------------------------- row layouts


def _get(raw: dict, key: str, types: type | tuple, what: str | None = None) -> Any:
    if key not in raw or raw[key] is None:
        raise RowError("missing field", f"no {what or key!r}")
    value = raw[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise RowError("bad value", f"{key!r} has type {type(value).__name__}")
    return value


def _video_path(path: str, base: Path) -> Path:
    if not path.strip():
        raise RowError("bad value", "empty video path")
    p = Path(path)
    return p if p.is_absolute() else (base / p).resolve()


def _options(raw_options: Any, row_id: str) -> list[str]:
    """Option texts of a ["A. text", "B. text"] list (letters must run A, B, C...); plain texts pass."""
    if not isinstance(raw_options, list) or not all(isinstance(o, str) for o in raw_options):
        raise RowError("bad value", "'options' must be a list of strings")
    lettered = [_OPTION.match(o) for o in raw_options]
    if raw_options and all(lettered):
        letters = [m.group(1) for m in lettered]
        if letters != [chr(ord("A") + i) for i in range(len(letters))]:
            raise RowError("bad value", f"option letters must run A, B, C..., got {letters}")
        return [m.group(2).strip() for m in lettered]
    return [o.strip() for o in raw_options]


def _mcq_letter(answer: str, options: list[str]) -> str:
    """The option letter an answer names: 'B', '(B)', 'B. text', or the option's own text."""
    text = answer.strip()
    for i, opt in enumerate(options):
        if text.casefold() == opt.casefold():
            return chr(ord("A") + i)
    m = _LETTER.match(text)
    letter = m.group(1) if m else None
    if letter is None or not (0 <= ord(letter) - ord("A") < len(options)):
        raise RowError("answer not among options", f"answer {answer!r}, options {options}")
    return letter


def _number(text: str, row_id: str, kind: str) -> str:
    found = number_text(text)  # the rule the numerical / regression rewards read answers by
    if found is None:
        raise RowError("bad value", f"a {kind} answer must hold a number, got {text!r}")
    return found


def row_video_r1(raw: dict, base: Path, split: str) -> QARow:
    """A Video-R1 row (the layout of Video-R1-260k, Video-R1-COT-165k and Video-Thinker-10K)."""
    row_id = str(_get(raw, "problem_id", (int, str)))
    data_type = raw.get("data_type", "video")
    if data_type != "video":
        raise RowError("unsupported data_type", f"{data_type!r}: vthink trains on video rows only")
    ptype = _get(raw, "problem_type", str)
    kind = R1_KINDS.get(ptype.strip().lower())
    if kind is None:
        raise RowError("bad value", f"problem_type {ptype!r}; expected one of {sorted(R1_KINDS)}")
    question = _get(raw, "problem", str)
    solution = _get(raw, "solution", str)
    answers = _ANSWER.findall(solution)
    if not answers or not answers[-1].strip():
        raise RowError("bad value", f"solution holds no <answer>...</answer>: {solution[:80]!r}")
    answer = answers[-1].strip()
    before = solution[: solution.rfind("<answer>")].strip()
    process = raw.get("process")
    reasoning = process.strip() if isinstance(process, str) and process.strip() else before or None
    options = _options(raw.get("options") or [], row_id) if kind == "mcq" else []
    if kind == "mcq":
        answer = _mcq_letter(answer, options)
    elif kind in ("numerical", "regression"):
        answer = _number(answer, row_id, kind)
    path = _video_path(_get(raw, "path", str), base)
    return QARow(id=row_id, video_id=str(path), video=path, kind=kind, question=question, options=options,
                 answer=answer, answer_span_s=None, split=split, reasoning=reasoning, fields=_plain(raw))


def row_qa(raw: dict, base: Path, split: str, fields, default_id: str) -> QARow:
    """A plain question/answer row; field names from data.fields."""
    row_id = str(raw.get(fields.id) or default_id)
    path = _video_path(_get(raw, fields.video, str), base)
    question = _get(raw, fields.question, str)
    answer = _get(raw, fields.answer, (str, int, float))
    answer = str(answer)
    options = _options(raw.get(fields.options) or [], row_id)
    kind = raw.get(fields.kind)
    if kind is None:
        kind = "mcq" if options else _kind_of(answer)
    elif kind not in R1_KINDS.values():
        kind = R1_KINDS.get(str(kind).strip().lower(), kind)
    if kind == "mcq":
        answer = _mcq_letter(answer, options)
    elif kind in ("numerical", "regression"):
        answer = _number(answer, row_id, kind)
    reasoning = raw.get("reasoning")
    return QARow(id=row_id, video_id=str(path), video=path, kind=str(kind), question=question, options=options,
                 answer=answer, answer_span_s=None, split=split,
                 reasoning=reasoning if isinstance(reasoning, str) and reasoning.strip() else None, fields=_plain(raw))


def _plain(raw: dict) -> dict:
    """The source row's columns as JSON values (Parquet may hold dates or bytes), kept on the row for reward.fn."""
    return json.loads(json.dumps(raw, default=str))


def _kind_of(answer: str) -> str:
    try:
        parse_span(answer)
        return "grounding"
    except DatasetError:
        pass
    try:
        float(answer.replace(",", ""))
        return "numerical"
    except ValueError:
        return "free-form"


def row_vthink(raw: dict, base: Path, split: str) -> QARow:
    try:
        row = QARow.from_json(raw, base)
    except DatasetError as e:
        reason = "missing field" if "missing key" in str(e) else (
            "answer not among options" if "answer among" in str(e) else "bad value")
        raise RowError(reason, str(e)) from None
    if row.split != split:
        row.split = split  # the file's role decides: a row of a val file is held out
    return row


# ---------------------------------------------------------------------------------------------- loading


def load_files(files: list[str], split: str, cfg, key: str, bad: list[BadRow]) -> tuple[list[QARow], dict]:
    """Usable rows of `files` and the video records found beside vthink-format files; bad rows go to `bad`."""
    rows: list[QARow] = []
    records: dict[str, VideoRecord] = {}
    for i, name in enumerate(files):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConfigError(f"{key}[{i}]", f"no such file: {path}" + (" (a folder: name its .json/.jsonl/.parquet "
                                                                      "files)" if path.is_dir() else ""))
        base = Path(cfg.video_root).expanduser().resolve() if cfg.video_root else path.resolve().parent
        fmt = cfg.format if cfg.format != "auto" else ("qa_jsonl" if cfg.fields != type(cfg.fields)() else None)
        for where, raw in read_file(path):
            row_id = None
            try:
                if isinstance(raw, RowError):
                    raise raw
                if not isinstance(raw, dict):
                    raise RowError("bad value", f"a row must be a JSON object, got {type(raw).__name__}")
                fmt = fmt or detect_format(raw)  # "auto": decided once per file, by its first row
                row_id = _row_id(raw, fmt, cfg.fields)
                if fmt == "video_r1":
                    row = row_video_r1(raw, base, split)
                elif fmt == "vthink":
                    row = row_vthink(raw, base, split)
                else:
                    row = row_qa(raw, base, split, cfg.fields, f"{path.stem}:{where.split()[-1]}")
            except RowError as e:
                bad.append(BadRow(str(path), where, row_id, e.reason, str(e).split(": ", 1)[1]))
                continue
            except DatasetError as e:  # QARow's own checks (kind, options, answer)
                reason = "answer not among options" if "answer among" in str(e) else "bad value"
                bad.append(BadRow(str(path), where, row_id, reason, str(e)))
                continue
            except (ValueError, TypeError) as e:  # e.g. float("abc") in a span, a NUL byte in a path
                bad.append(BadRow(str(path), where, row_id, "bad value", f"{type(e).__name__}: {e}"))
                continue
            row.source = f"{path}:{where}"
            rows.append(row)
        videos_jsonl = path.resolve().parent / "videos.jsonl"
        if fmt == "vthink" and videos_jsonl.is_file():  # the records `vthink make-data` writes beside its rows
            from engine.data.dataset import load_videos

            records.update(load_videos(videos_jsonl.parent))
    return rows, records


def _row_id(raw: dict, fmt: str, fields) -> str | None:
    key = {"video_r1": "problem_id", "vthink": "id"}.get(fmt, fields.id)
    value = raw.get(key)
    return None if value is None else str(value)


def load_data(cfg, log=print) -> Data:
    """Every row of data.train_files / data.val_files (or of the synthetic dataset in data.dir), checked:
    fields, values, duplicate ids, and that each row's video exists and its header decodes."""
    bad: list[BadRow] = []
    if cfg.train_files or cfg.val_files:
        train, records = load_files(cfg.train_files, "train", cfg, "data.train_files", bad)
        held, more = load_files(cfg.val_files, "eval", cfg, "data.val_files", bad)
        records.update(more)
    else:
        from engine.data.synthetic import ensure_dataset

        root = ensure_dataset(cfg, log)
        train, records = load_files([str(root / "train.jsonl")], "train", _as_vthink(cfg), "data.dir", bad)
        held, _ = load_files([str(root / "eval.jsonl")], "eval", _as_vthink(cfg), "data.dir", bad)
    train = _unique(train, bad)
    held = _unique(held, bad)
    both = {r.id for r in train} & {r.id for r in held}
    if both:
        log(f"data: warning: {len(both)} row id(s) are in both the training and the held-out files "
            f"(e.g. {sorted(both)[:3]}): held-out results would not be held out")
    data = Data(train, held, records, bad)
    check_videos(data, log)
    return data


def _as_vthink(cfg):
    from dataclasses import replace

    return replace(cfg, format="vthink", video_root=None)


def _unique(rows: list[QARow], bad: list[BadRow]) -> list[QARow]:
    first: dict[str, str] = {}
    out = []
    for r in rows:
        if r.id in first:
            file, _, where = r.source.rpartition(":")
            bad.append(BadRow(file, where, r.id, "duplicate id", f"first at {first[r.id]}"))
            continue
        first[r.id] = r.source
        out.append(r)
    return out


def check_videos(data: Data, log=print) -> None:
    """Move rows whose video is missing or unreadable (container header, stream, codec; no decoding) to
    data.bad. Each distinct file is opened once."""
    from engine.video.probe import check_header

    verdict: dict[Path, tuple[str, str] | None] = {}
    paths = {r.video for r in data.train + data.eval}
    if len(paths) > 200:
        log(f"data check: probing {len(paths)} videos ...")
    for p in paths:
        if not p.exists():
            verdict[p] = ("video not found", str(p))
            continue
        try:
            check_header(str(p))
            verdict[p] = None
        except VideoDecodeError as e:
            verdict[p] = ("video does not decode", str(e))
    for split in ("train", "eval"):
        kept = []
        for r in getattr(data, split):
            v = verdict[r.video]
            if v is None:
                kept.append(r)
            else:
                file, _, where = r.source.rpartition(":")
                data.bad.append(BadRow(file, where, r.id, v[0], v[1]))
        setattr(data, split, kept)


def write_bad_rows(data: Data, out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir) / "bad_rows.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(b.to_json()) + "\n" for b in data.bad))
    return path


def report(data: Data) -> str:
    """Every bad row (file, where, id, reason), then counts per reason and the usable rows."""
    lines = [str(b) for b in data.bad]
    if data.bad:
        lines.append("bad rows by reason: " + ", ".join(f"{k} {n}" for k, n in data.bad_counts().items()))
    # A wrong data.video_root shows as many missing videos: name the folders that do not exist, once each.
    missing = Counter(Path(b.detail).parent for b in data.bad if b.reason == "video not found")
    for folder, n in sorted(missing.items()):
        if not folder.exists():
            lines.append(f"folder not found: {folder} ({n} row(s) look for their video there; check data.video_root)")
    lines.append(f"usable rows: {len(data.train)} train, {len(data.eval)} held-out; {len(data.bad)} bad")
    return "\n".join(lines)


def skip_hint(data: Data) -> str:
    """What data.on_bad_row=skip would do, said only when it would leave rows to use."""
    if not (data.train or data.eval):
        return "no row is usable, so data.on_bad_row=skip would not help"
    return f"data.on_bad_row=skip would go on with the {len(data.train)} + {len(data.eval)} usable rows"


class DataCheckError(DatasetError):
    """The rows cannot be used as configured: bad rows under data.on_bad_row=error, or no usable row at all.
    `vthink` exits with status 2, before anything trains (train's actors, started meanwhile, are torn down)."""


def prepare(cfg, purpose: str, out_dir: str | os.PathLike | None = None, log=print) -> Data:
    """The checked rows a command needs ("train", "eval" or "sft"), with data.on_bad_row applied.

    error: any bad row raises DataCheckError listing them. skip: they are dropped, counted in the log and
    written to <out_dir>/bad_rows.jsonl. No usable row for `purpose` raises DataCheckError either way.
    `eval` with data.val_files reads only those (a bad training row does not stop it); without them (data.train_files
    only) it evaluates the training rows, and says so.
    """
    d = cfg.data
    if purpose == "eval" and d.val_files:  # eval reads and checks only the rows it scores
        from dataclasses import replace

        d = replace(d, train_files=[])
    data = load_data(d, log)
    if data.bad and d.on_bad_row == "error":
        raise DataCheckError(report(data) + f"\n({skip_hint(data)})")
    if data.bad:
        where = f"; listed in {write_bad_rows(data, out_dir)}" if out_dir is not None else ""
        log(f"data: skipping {len(data.bad)} bad rows ("
            + ", ".join(f"{k} {n}" for k, n in data.bad_counts().items()) + f"){where}")
    if purpose == "eval" and not data.eval and d.train_files and not d.val_files:
        log("data: no data.val_files; evaluating on the rows of data.train_files")
        data.eval = data.train
    need = data.eval if purpose == "eval" else data.train
    if not need:
        split = "held-out" if purpose == "eval" else "training"
        raise DataCheckError(f"no usable {split} row: {report(data)}")
    return data
