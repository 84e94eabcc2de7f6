"""engine.native M-RoPE ids: equal to the original Qwen2.5-VL rule (native and Python), and bad inputs.

The reference (mrope_original.py) is transcribed from the original published get_rope_index; transformers
5.x's get_rope_index follows another rule and is deliberately not the reference.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import native
from tests.native.mrope_original import original_rope_index

IMAGE_ID, VIDEO_ID, VISION_START, VISION_END = 60, 61, 62, 63
SECONDS = [0.25, 1 / 3, 1.5, 7.3, 0.5, 1.0, 2.0, 0.1, 0.7]


def reference(sms, tps, ids, image_grid_thw=None, video_grid_thw=None, second_per_grid_ts=None, attention_mask=None):
    return original_rope_index(ids, image_grid_thw, video_grid_thw, second_per_grid_ts, attention_mask,
                               spatial_merge_size=sms, tokens_per_second=tps, image_token_id=IMAGE_ID,
                               video_token_id=VIDEO_ID, vision_start_token_id=VISION_START)


def assert_same(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert torch.equal(g, w), (g, w)


def types_of(ids):
    return (ids == VIDEO_ID).long() * 2 + (ids == IMAGE_ID).long()


def segment(kind, n):
    """Token ids of one vision segment as the chat template writes it: start, n pads, end."""
    return [VISION_START] + [IMAGE_ID if kind == 1 else VIDEO_ID] * n + [VISION_END]


def build_batch(rows, pad_side, L, use_mask, id_dtype=torch.int64):
    """rows: per row a list of token ids. Pads (masked, plain-text ids) go left or right."""
    B = len(rows)
    ids = torch.zeros(B, L, dtype=id_dtype)
    mask = torch.zeros(B, L, dtype=torch.int64)
    for b, row in enumerate(rows):
        off = L - len(row) if pad_side[b] == "left" else 0
        ids[b, off:off + len(row)] = torch.tensor(row, dtype=id_dtype)
        mask[b, off:off + len(row)] = 1
    return ids, (mask if use_mask else None)


@st.composite
def mm_batches(draw):
    """Rows of text / video / text / image / text ... (videos also right after 'generated' text)."""
    sms = draw(st.sampled_from([1, 2]))
    tps = draw(st.sampled_from([1, 2, 4, 25, 2.0, 0.5]))
    rows, images, videos = [], [], []
    use_mask = draw(st.booleans())
    for _ in range(draw(st.integers(1, 3))):
        row = []
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from([0, 1, 2, 2]))
            if kind == 0:
                row += draw(st.lists(st.integers(0, 58), min_size=1, max_size=6))
                continue
            t = 1 if kind == 1 else draw(st.integers(1, 12))
            h = sms * draw(st.integers(1, 3)) + draw(st.integers(0, sms - 1))  # odd sizes: floor division
            w = sms * draw(st.integers(1, 3)) + draw(st.integers(0, sms - 1))
            (images if kind == 1 else videos).append([t, h, w])
            row += segment(kind, t * (h // sms) * (w // sms))
        rows.append(row or draw(st.lists(st.integers(0, 58), min_size=1, max_size=4)))
    L = max(map(len, rows)) + (draw(st.integers(0, 3)) if use_mask else 0)
    pad_side = [draw(st.sampled_from(["left", "right"])) for _ in rows]
    seconds = [draw(st.one_of(st.sampled_from(SECONDS), st.floats(0.01, 8.0, allow_nan=False))) for _ in videos]
    kind = draw(st.sampled_from(["none", "f32", "list_float"]))
    spgt = {"none": None, "f32": torch.tensor(seconds, dtype=torch.float32),
            "list_float": [float(s) for s in seconds]}[kind]
    ids, mask = build_batch(rows, pad_side, L, use_mask)
    grids = (torch.tensor(images).reshape(-1, 3) if images else None,
             torch.tensor(videos).reshape(-1, 3) if videos else None)
    return sms, tps, ids, grids, spgt, mask


@settings(max_examples=300, deadline=None)
@given(batch=mm_batches())
def test_native_mrope_matches_original_rule(batch):
    sms, tps, ids, (ig, vg), spgt, mask = batch
    want = reference(sms, tps, ids, ig, vg, spgt, mask)
    cfg = dict(spatial_merge_size=sms, tokens_per_second=tps)
    assert_same(native.mrope_position_ids(ids, types_of(ids), ig, vg, spgt, mask, **cfg), want)
    assert_same(native.mrope_position_ids_py(ids, types_of(ids), ig, vg, spgt, mask, **cfg), want)
    # Token types derived from the token ids give the same answer.
    assert_same(native.mrope_position_ids(ids, None, ig, vg, spgt, mask, image_token_id=IMAGE_ID,
                                          video_token_id=VIDEO_ID, **cfg), want)


def test_native_mrope_text_after_video_starts_past_its_last_frame():
    # Hand-worked: 2 text tokens, <vision_start>, a video of 4 temporal x 4 x 4 patches (merge 2: 16 tokens) at
    # 1 s per grid step and 2 tokens/s, <vision_end>, 1 text token. The video starts at 3 with temporal ids
    # 0, 2, 4, 6, so <vision_end> sits at 3 + 6 + 1 = 10 (transformers 5.x puts it at 3 + 4 / 2 = 5).
    ids, _ = build_batch([[5, 6] + segment(2, 16) + [7]], ["left"], 21, use_mask=False)
    for impl in (native.mrope_position_ids, native.mrope_position_ids_py):
        pos, delta = impl(ids, types_of(ids), None, torch.tensor([[4, 4, 4]]), torch.tensor([1.0]),
                          spatial_merge_size=2, tokens_per_second=2)
        assert pos[:, 0, :3].tolist() == [[0, 1, 2]] * 3
        assert sorted(set(pos[0, 0, 3:19].tolist())) == [3, 5, 7, 9]
        assert sorted(set(pos[1, 0, 3:19].tolist())) == [3, 4] == sorted(set(pos[2, 0, 3:19].tolist()))
        assert pos[:, 0, 19].tolist() == [10, 10, 10] and pos[:, 0, 20].tolist() == [11, 11, 11]
        assert delta.tolist() == [[12 - 21]]  # a decode step at cache position 21 sits at 12


def agent_trajectory(rng, n_videos, target_len, sms=2):
    """A prompt video plus tool-observation videos (each its own grid and seconds) after generated text."""
    row, images, videos, seconds = [], [], [], []
    per_video = max(1, (target_len // (n_videos + 1)))
    for v in range(n_videos):
        row += rng.integers(0, 59, int(rng.integers(5, 40))).tolist()
        if v % 3 == 1:
            images.append([1, 2 * sms, 3 * sms])
            row += segment(1, 6) + rng.integers(0, 59, 4).tolist()
        hw = int(rng.integers(2, 9)) * sms
        t = max(1, per_video // ((hw // sms) ** 2))
        videos.append([t, hw, hw])
        seconds.append(float(rng.choice(SECONDS + [float(rng.uniform(0.05, 3))])))
        row += segment(2, t * (hw // sms) ** 2)
    row += rng.integers(0, 59, max(1, target_len - len(row))).tolist()
    return row, images, videos, seconds


@pytest.mark.parametrize("target_len", [600, 4096])
@pytest.mark.parametrize("tps", [2, 25])
def test_native_mrope_many_video_segments(target_len, tps):
    rng = np.random.default_rng(target_len + tps)
    rows, images, videos, seconds = [], [], [], []
    for n_videos in (8, 5):
        row, im, vi, se = agent_trajectory(rng, n_videos, target_len)
        rows.append(row)
        images += im
        videos += vi
        seconds += se
    L = max(map(len, rows)) + 7
    ids, mask = build_batch(rows, ["left", "right"], L, use_mask=True)
    ig, vg, spgt = torch.tensor(images), torch.tensor(videos), torch.tensor(seconds)
    want = reference(2, tps, ids, ig, vg, spgt, mask)
    cfg = dict(spatial_merge_size=2, tokens_per_second=tps)
    assert_same(native.mrope_position_ids(ids, types_of(ids), ig, vg, spgt, mask, **cfg), want)
    assert_same(native.mrope_position_ids_py(ids, types_of(ids), ig, vg, spgt, mask, **cfg), want)
    # numpy and list inputs give the same ids (returned as int64 torch tensors on the CPU).
    types = types_of(ids)
    as_np = native.mrope_position_ids(ids.numpy(), types.numpy().astype(np.int32), ig.numpy(), vg.numpy(),
                                      spgt.numpy(), mask.numpy().astype(bool), **cfg)
    assert_same(as_np, want)
    as_list = native.mrope_position_ids(ids.tolist(), types.tolist(), images, videos, seconds, mask.tolist(), **cfg)
    assert_same(as_list, want)


@pytest.mark.parametrize("impl", [native.mrope_position_ids, native.mrope_position_ids_py])
def test_native_mrope_float32_arithmetic(impl):
    # The temporal id is long(float32(float32(t * s) * tps)) whatever dtype the seconds arrive in: 0.7 - 1e-12
    # s at t = 10 gives 7 in float32 (6 in float64), and float32(t * s) * tps rounds apart from
    # t * float32(s * tps) for some (t, s, tps): find one and check the two-step rounding is the one used.
    t_max = 200
    cases = [(s, tps) for s in SECONDS for tps in (3, 25, 0.3)]
    two_step = lambda s, tps: ((np.arange(t_max, dtype=np.float32) * np.float32(s)) * np.float32(tps)).astype(np.int64)
    one_step = lambda s, tps: (np.arange(t_max, dtype=np.float32) * np.float32(np.float32(s) * np.float32(tps))).astype(np.int64)
    s, tps = next((s, tps) for s, tps in cases if not np.array_equal(two_step(s, tps), one_step(s, tps)))
    ids, _ = build_batch([[0] + segment(2, t_max) + [0]], ["left"], t_max + 4, use_mask=False)
    got = impl(ids, types_of(ids), None, torch.tensor([[t_max, 2, 2]]), [s], spatial_merge_size=2, tokens_per_second=tps)
    assert got[0][0, 0, 2:2 + t_max].tolist() == (two_step(s, tps) + 2).tolist()

    v = 0.7 - 1e-12
    vg = torch.tensor([[12, 2, 2]])
    ids, _ = build_batch([[0] + segment(2, 12) + [0]], ["left"], 16, use_mask=False)
    for spgt in (torch.tensor([v], dtype=torch.float32), torch.tensor([v], dtype=torch.float64), [v],
                 [np.float32(v)], np.array([v]), np.array([v], dtype=np.float16), list(torch.tensor([v]))):
        got = impl(ids, types_of(ids), None, vg, spgt, spatial_merge_size=2, tokens_per_second=1)
        assert int(got[0][0, 0, 12]) - 2 == 7  # t = 10
    got = impl(ids, types_of(ids), None, vg, None, spatial_merge_size=2, tokens_per_second=1)
    assert int(got[0][0, 0, 12]) - 2 == 10  # no seconds: 1 s per grid step


def test_native_mrope_keeps_input_dtype_and_text_only_rows():
    ids, _ = build_batch([[3] * 9, [4, 4] + segment(1, 4) + [5]], ["left", "left"], 9, use_mask=False,
                         id_dtype=torch.int32)
    ig = torch.tensor([[1, 4, 4]])
    want = reference(2, 2, ids.long(), ig)
    got = native.mrope_position_ids(ids, types_of(ids), ig, None, None, None, spatial_merge_size=2, tokens_per_second=2)
    assert got[0].dtype == torch.int32
    assert torch.equal(got[0].long(), want[0]) and torch.equal(got[1], want[1])
    # Text only, with left padding: the original's cumsum rule.
    ids, mask = build_batch([[3] * 5, [4] * 7], ["left", "left"], 7, use_mask=True)
    assert_same(native.mrope_position_ids(ids, types_of(ids), attention_mask=mask, spatial_merge_size=2,
                                          tokens_per_second=2), reference(2, 2, ids, attention_mask=mask))


def test_native_mrope_empty_batch():
    pos, deltas = native.mrope_position_ids(torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5, dtype=torch.long),
                                            spatial_merge_size=2, tokens_per_second=2)
    assert pos.shape == (3, 0, 5) and deltas.shape == (0, 1)


def _bad_cases():
    t = torch.tensor
    ok_types = t([[0, 2, 2, 2, 2, 0]])
    ids = torch.zeros(1, 6, dtype=torch.long)
    vg = t([[1, 4, 4]])
    return [
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=t([[1, 4, 6]])),
         r"video_grid_thw\[0\].*needs 6 tokens.*segment has 4"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=t([[1, 2, 4]])),
         r"needs 2 tokens.*segment has 4"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types), "more video segments than video_grid_thw has rows"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=t([[1, 4, 4], [1, 4, 4]])),
         "video_grid_thw has 2 rows but the batch has 1 video segments"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, image_grid_thw=t([[1, 2, 2]])),
         "image_grid_thw has 1 rows but the batch has 0 image segments"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, second_per_grid_ts=t([1.0, 2.0])),
         "second_per_grid_ts has 2 entries"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, second_per_grid_ts=t([True])),
         "real numbers"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, second_per_grid_ts=t([-0.5])),
         "negative"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, second_per_grid_ts=t([float("nan")])),
         "not finite"),
        (dict(input_ids=ids, mm_token_type_ids=t([[0, 3, 3, 3, 3, 0]]), video_grid_thw=vg),
         r"mm_token_type_ids\[0, 1\] = 3"),
        (dict(input_ids=ids, mm_token_type_ids=t([[0, 2, 2, 2, 2]]), video_grid_thw=vg),
         "mm_token_type_ids has shape"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, attention_mask=torch.ones(2, 6)),
         "attention_mask has shape"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, attention_mask=torch.zeros(1, 6)),
         "row 0 has no attended tokens"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=t([[1, 4, 4, 1]])), r"shape \(n, 3\)"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=t([[-1, 4, 4]])), "negative entry"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=t([[1.0, 4.0, 4.0]])), "must hold integers"),
        (dict(input_ids=ids[0], mm_token_type_ids=ok_types[0], video_grid_thw=vg), "input_ids must be 2-D"),
        (dict(input_ids=ids[0], video_grid_thw=vg, video_token_id=VIDEO_ID), "input_ids must be 2-D"),
        (dict(input_ids=ids, video_grid_thw=vg), "pass mm_token_type_ids"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg, spatial_merge_size=0),
         "spatial_merge_size must be >= 1"),
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=t([[2**40, 2**40, 2**40]])),
         "too large|needs"),
    ]


@pytest.mark.parametrize("impl", [native.mrope_position_ids, native.mrope_position_ids_py])
@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_native_mrope_bad_inputs(impl, case):
    kwargs, match = _bad_cases()[case]
    kwargs = {"spatial_merge_size": 2, "tokens_per_second": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        impl(**kwargs)


def test_native_mrope_core_backends_agree_on_errors_and_values():
    # The two cores on identical prepared inputs, including a video split by a masked token (still one run).
    types = np.array([[0, 2, 2, 0, 2, 2, 0], [1, 1, 1, 1, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0]], dtype=bool)
    x = native.prepare_mrope_inputs(types, types, [[1, 4, 4]], [[4, 2, 2]], [1 / 3], mask,
                                    spatial_merge_size=2, tokens_per_second=25)
    for a, b in zip(native.mrope_core_native(x), native.mrope_core_py(x)):
        np.testing.assert_array_equal(a, b)
