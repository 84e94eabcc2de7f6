"""Vision pad expansion and modality ids, against counts computed independently."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from engine.errors import VideoRequestError
from engine.model.video_tokens import expand_vision_pads, mm_token_type_ids, num_vision_tokens

PAD, IMG = 7, 6


def test_expands_each_pad_by_its_own_grid():
    ids = [1, 2, PAD, 3, PAD, 4]
    out = expand_vision_pads(ids, [(2, 4, 6), (1, 2, 2)], merge_size=2, pad_id=PAD)
    assert out == [1, 2] + [PAD] * 12 + [3] + [PAD] * 1 + [4]


def test_accepts_tensor_grids():
    grids = torch.tensor([[4, 6, 8]])
    out = expand_vision_pads([PAD], grids, merge_size=2, pad_id=PAD)
    assert len(out) == 4 * 6 * 8 // 4 == num_vision_tokens((4, 6, 8), 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 5), st.just(PAD)), max_size=30),
       st.data())
def test_expansion_matches_reference(ids, data):
    n = ids.count(PAD)
    grids = data.draw(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
                               min_size=n, max_size=n))
    grids = [(t, 2 * h, 2 * w) for t, h, w in grids]
    out = expand_vision_pads(ids, grids, merge_size=2, pad_id=PAD)
    # Reference: text tokens keep their order; pads total sum(t*h*w)/4.
    assert [x for x in out if x != PAD] == [x for x in ids if x != PAD]
    assert out.count(PAD) == sum(t * h * w for t, h, w in grids) // 4
    # Each run of pads belongs to one grid (runs may touch when pads are adjacent).
    if n and all(a != PAD or b != PAD for a, b in zip(ids, ids[1:])):
        runs, run = [], 0
        for x in out + [None]:
            if x == PAD:
                run += 1
            elif run:
                runs.append(run)
                run = 0
        assert runs == [t * h * w // 4 for t, h, w in grids]


@pytest.mark.parametrize("ids, grids, match", [
    ([1, PAD, PAD], [(1, 2, 2)], "2 pad tokens"),
    ([1, 2], [(1, 2, 2)], "0 pad tokens"),
    ([PAD], [(1, 3, 2)], "multiples of merge_size"),
    ([PAD], [(0, 2, 2)], "positive"),
    ([PAD], [(1, 2)], "three positive ints"),
])
def test_bad_inputs_raise_typed_errors(ids, grids, match):
    with pytest.raises(VideoRequestError, match=match):
        expand_vision_pads(ids, grids, merge_size=2, pad_id=PAD)


def test_mm_token_type_ids():
    assert mm_token_type_ids([1, IMG, PAD, PAD, 2], image_pad_id=IMG, video_pad_id=PAD) == \
        [0, 1, 2, 2, 0]
