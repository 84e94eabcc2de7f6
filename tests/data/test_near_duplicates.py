"""Near-duplicate clips are found by decoded pixels: re-encodes, invisible noise and renames count; new content does not."""
import json

import av
import numpy as np
import pytest

from engine.cli import main
from engine.data.near_duplicates import THRESHOLD, near_duplicates, signature
from engine.data.synthetic import CODECS, _encode, make_dataset


def frames_of(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("dups")
    make_dataset(root, num_videos=4, seed=9, width=128, height=96, fps=2, duration_s=16, min_duration_s=16,
                 eval_fraction=0.5, task="glimpse")
    videos = sorted((root / "videos").glob("*.mp4"))
    original = frames_of(videos[0])
    rng = np.random.default_rng(0)
    # The same clip with invisible noise (+-2 grey levels), re-encoded in another codec under another name.
    noisy = [np.clip(f.astype(int) + rng.integers(-2, 3, f.shape), 0, 255).astype(np.uint8) for f in original]
    twin = root / "twin.webm"
    _encode(twin, iter(noisy), CODECS["vp9"], 2.0, 128, 96)
    return root, videos, twin


def test_a_noisy_reencoded_renamed_copy_is_a_duplicate_and_other_clips_are_not(clips):
    _, videos, twin = clips
    assert near_duplicates([twin], videos[1:]) == []
    assert near_duplicates([twin], videos) == [str(twin)]
    assert near_duplicates(videos[1:], videos[:1]) == []
    gap = np.abs(signature(twin) - signature(videos[0])).mean()
    assert gap < THRESHOLD / 2


def test_data_check_reports_held_out_clips_identical_to_training_ones(clips, tmp_path, capsys):
    root, videos, twin = clips
    # A held-out row whose clip is a noisy copy of a training clip: counted, though its file and name differ.
    train = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()]
    held = [json.loads(x) for x in (root / "eval.jsonl").read_text().splitlines()]
    copy = dict(train[0], id="copy", video=str(twin), video_id="twin", split="eval")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(dict(r, video=str(root / r["video"]))) + "\n" for r in train))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(dict(r, video=str(root / r["video"]))) + "\n"
                                                 for r in held) + json.dumps(copy) + "\n")
    rc = main(["data", "check", f"data.train_files=[{tmp_path / 'train.jsonl'}]",
               f"data.val_files=[{tmp_path / 'eval.jsonl'}]"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"held-out clips: {len(held) + 1}, training clips: {len(train)}, eval_clips_identical_to_train: 1" in out
