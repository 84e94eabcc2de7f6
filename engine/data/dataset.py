"""Loading vthink JSONL datasets (videos.jsonl, train.jsonl, eval.jsonl) with errors that name file and line."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

from engine.data.schema import DatasetError, QARow, VideoRecord

T = TypeVar("T")


def _read_jsonl(path: str | os.PathLike, parse: Callable[[dict[str, Any], Path], T], key: Callable[[T], str]) -> list[T]:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: no such dataset file")
    root = p.resolve().parent  # paths inside are relative to the file's own directory
    out: list[T] = []
    seen: dict[str, int] = {}
    with open(p, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = parse(json.loads(line), root)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{p}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
            except DatasetError as e:
                raise DatasetError(f"{p}:{lineno}: {e}") from None
            except (TypeError, ValueError) as e:  # e.g. float("abc") inside a record
                raise DatasetError(f"{p}:{lineno}: bad value ({e})") from None
            k = key(obj)
            if k in seen:
                raise DatasetError(f"{p}:{lineno}: duplicate id {k!r} (first on line {seen[k]})")
            seen[k] = lineno
            out.append(obj)
    return out


def load_rows(path: str | os.PathLike) -> list[QARow]:
    """QA rows of one JSONL file; video paths resolved against the file's directory."""
    return _read_jsonl(path, QARow.from_json, lambda r: r.id)


def load_videos(dataset_dir: str | os.PathLike) -> dict[str, VideoRecord]:
    """video_id -> VideoRecord from dataset_dir/videos.jsonl; video paths resolved against dataset_dir."""
    records = _read_jsonl(Path(dataset_dir) / "videos.jsonl", VideoRecord.from_json, lambda r: r.video_id)
    return {r.video_id: r for r in records}


def load_split(dataset_dir: str | os.PathLike, split: str) -> tuple[list[QARow], dict[str, VideoRecord]]:
    """Rows of dataset_dir/<split>.jsonl and the video records they refer to; every row's video must exist."""
    if split not in ("train", "eval"):
        raise DatasetError(f"split must be 'train' or 'eval', got {split!r}")
    rows = load_rows(Path(dataset_dir) / f"{split}.jsonl")
    videos = load_videos(dataset_dir)
    for r in rows:
        if r.video_id not in videos:
            raise DatasetError(f"{Path(dataset_dir) / f'{split}.jsonl'}: row {r.id} names unknown video {r.video_id!r}")
    return rows, videos
