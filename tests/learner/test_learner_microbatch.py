"""Micro-batching: per-row visual slicing, balanced sharding, budget packing, and log-probs of sub-batches."""
import random

import pytest
import torch

from engine import native
from engine.learner import microbatch
from engine.learner.errors import LearnerBatchError
from engine.learner.logprob import policy_logprobs
from engine.model import load_policy
from learner_testlib import build_batch, real_clips

PLAN = (1, 0, 2, 1, 1, 0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return real_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def batch(clips):
    return build_batch(clips, video_plan=PLAN)


def _row_videos(clips):
    """The clips build_batch put in each row, in order (it cycles over `clips`)."""
    out, k = [], 0
    for n in PLAN:
        out.append([clips[(k + j) % len(clips)] for j in range(n)])
        k += n
    return out


def test_layout_assigns_each_row_its_videos(batch, clips):
    lay = microbatch.layout(batch, 2)
    assert lay.visual["pixel_values_videos"].num_items == list(PLAN)
    assert lay.tokens == batch["attention_mask"].sum(1).tolist()
    for r, videos in enumerate(_row_videos(clips)):
        sub = microbatch.select(batch, lay, [r])
        if not videos:
            assert "pixel_values_videos" not in sub and "video_grid_thw" not in sub
            continue
        assert torch.equal(sub["pixel_values_videos"], torch.cat([c.pixel_values for c in videos]))
        assert sub["video_grid_thw"].tolist() == [list(c.grid_thw) for c in videos]
        assert sub["second_per_grid_ts"].tolist() == pytest.approx([c.second_per_grid_t for c in videos])
        # Trimmed to the row's own length; the kept columns are the row's.
        assert sub["input_ids"].shape[1] == lay.ends[r]
        assert torch.equal(sub["input_ids"][0], batch["input_ids"][r, :lay.ends[r]])


def test_explicit_counts_agree_and_bad_ones_are_named(batch):
    lay = microbatch.layout({**batch, "video_counts": torch.tensor(PLAN)}, 2)
    assert lay.visual["pixel_values_videos"].num_items == list(PLAN)
    swapped = torch.tensor((0, 1, 2, 1, 1, 0))  # right total, wrong rows
    with pytest.raises(LearnerBatchError, match="video_grid_thw"):
        microbatch.layout({**batch, "video_counts": swapped}, 2)
    with pytest.raises(LearnerBatchError, match="pixel_values_videos"):
        microbatch.layout({**batch, "pixel_values_videos": batch["pixel_values_videos"][:-1]}, 2)
    types = batch["mm_token_type_ids"].clone()
    types[0, (types[0] == 2).nonzero()[0]] = 0  # one video token fewer in row 0
    with pytest.raises(LearnerBatchError, match="video_grid_thw"):
        microbatch.layout({**batch, "mm_token_type_ids": types}, 2)
    with pytest.raises(LearnerBatchError, match="loss_mask"):
        microbatch.layout({**batch, "loss_mask": batch["loss_mask"][:-1]}, 2)


def test_adjacent_videos_without_text_between_are_split_by_grid_tokens():
    # Row 0: two videos back to back (one run of video tokens: 2 + 4 tokens), row 1: one video (4 tokens).
    grids = torch.tensor([[1, 2, 4], [1, 4, 4], [1, 4, 4]])
    types = torch.tensor([[0] + [2] * 6 + [0], [0, 2, 2, 2, 2, 0, 0, 0]])
    batch = {"input_ids": torch.ones(2, 8, dtype=torch.long), "attention_mask": torch.ones(2, 8, dtype=torch.long),
             "mm_token_type_ids": types, "video_grid_thw": grids,
             "pixel_values_videos": torch.arange(8 + 16 + 16, dtype=torch.float32)[:, None].repeat(1, 3),
             "second_per_grid_ts": torch.tensor([1.0, 2.0, 3.0])}
    lay = microbatch.layout(batch, 2)
    assert lay.visual["pixel_values_videos"].num_items == [2, 1]
    sub = microbatch.select(batch, lay, [1])
    assert sub["pixel_values_videos"][:, 0].tolist() == list(range(24, 40))
    assert sub["second_per_grid_ts"].tolist() == [3.0]


def test_shards_and_micro_batches_cover_every_row_once():
    rng = random.Random(0)
    for trial in range(200):
        tokens = [rng.randint(1, 400) for _ in range(rng.randint(1, 40))]
        world = rng.randint(1, 5)
        budget = rng.randint(50, 800)
        parts = microbatch.shard(tokens, world)
        assert len(parts) == world
        assert sorted(r for p in parts for r in p) == list(range(len(tokens)))
        # Same partition as the pure-Python fallback (the csrc one when built).
        assert parts == [sorted(p) for p in native.balanced_partition_py(tokens, world)]
        for part in parts:
            bins = microbatch.pack(tokens, part, budget)
            assert sorted(r for b in bins for r in b) == part
            for b in bins:
                assert len(b) == 1 or sum(tokens[r] for r in b) <= budget
        if len(tokens) >= world:
            # Karmarkar-Karp keeps the heaviest rank within one (largest) item of the lightest.
            loads = [sum(tokens[r] for r in p) for p in parts]
            assert max(loads) - min(loads) <= max(tokens)


def test_sub_batch_logprobs_equal_full_batch_rows(batch):
    """Slicing rows, their videos and M-RoPE ids (csrc) gives each row the log-probs it has in the full batch."""
    model, _ = load_policy(None)
    with torch.no_grad():
        cfg = native.mrope_config(model.config)
        pos, _ = native.mrope_position_ids(batch["input_ids"], batch["mm_token_type_ids"], None,
                                           batch["video_grid_thw"], batch["second_per_grid_ts"],
                                           batch["attention_mask"], **cfg)
        withpos = {**batch, "position_ids": pos}
        full, _ = policy_logprobs(model, withpos, with_entropy=False)
        lay = microbatch.layout(withpos, 2)
        for rows in ([0, 2], [1, 5], [3], [4, 1]):
            sub = microbatch.select(withpos, lay, rows)
            part, _ = policy_logprobs(model, sub, with_entropy=False, run_visual=True)
            torch.testing.assert_close(part, full[rows, :part.shape[1]], atol=2e-5, rtol=0)
            assert full[rows, part.shape[1]:].abs().sum() == 0
