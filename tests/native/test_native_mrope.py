"""engine.native M-RoPE ids: equal to transformers' Qwen2.5-VL get_rope_index (native and Python), and bad inputs."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

from engine import native

IMAGE_ID, VIDEO_ID = 60, 61


@pytest.fixture(scope="module")
def model():
    cfg = Qwen2_5_VLConfig(
        text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=64, bos_token_id=0, eos_token_id=1,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=1, hidden_size=16, num_heads=2, intermediate_size=32, out_hidden_size=16,
                           spatial_merge_size=2, tokens_per_second=2),
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=62)
    return Qwen2_5_VLModel(cfg).eval()


def reference(model, sms, tps, *args, **kwargs):
    """transformers' get_rope_index with the config set to (spatial_merge_size, tokens_per_second)."""
    model.config.vision_config.spatial_merge_size = sms
    model.config.vision_config.tokens_per_second = tps
    return model.get_rope_index(*args, **kwargs)


def assert_same(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert torch.equal(g, w)


def build_batch(rows, pad_side, pad_types, L, use_mask, id_dtype=torch.int64):
    """rows: per row a list of token types. Pads (masked) go left or right and carry arbitrary types."""
    B = len(rows)
    types = torch.zeros(B, L, dtype=torch.int64)
    mask = torch.zeros(B, L, dtype=torch.int64)
    for b, row in enumerate(rows):
        pad = L - len(row)
        off = pad if pad_side[b] == "left" else 0
        types[b] = pad_types[b]
        types[b, off:off + len(row)] = torch.tensor(row)
        mask[b, off:off + len(row)] = 1
    if not use_mask:
        types[mask == 0] = 0  # without a mask the "pads" are ordinary text
    ids = torch.randint(0, 59, (B, L), generator=torch.Generator().manual_seed(B * 1000 + L)).to(id_dtype)
    ids[types == 1] = IMAGE_ID
    ids[types == 2] = VIDEO_ID
    return ids, types, (mask if use_mask else None)


@st.composite
def mm_batches(draw):
    sms = draw(st.sampled_from([1, 2]))
    tps = draw(st.sampled_from([1, 2, 4, 25]))
    rows, images, videos = [], [], []
    for _ in range(draw(st.integers(1, 3))):
        row = []
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from([0, 1, 2]))
            if kind == 0:
                row += [0] * draw(st.integers(1, 5))
                continue
            if row and row[-1] == kind:  # same-kind neighbours would merge into one segment
                row += [0] * draw(st.integers(1, 3))
            t = 1 if kind == 1 else draw(st.integers(1, 12))
            h = sms * draw(st.integers(1, 3)) + draw(st.integers(0, sms - 1))  # odd sizes: floor division
            w = sms * draw(st.integers(1, 3)) + draw(st.integers(0, sms - 1))
            (images if kind == 1 else videos).append([t, h, w])
            row += [kind] * (t * (h // sms) * (w // sms))
        rows.append(row or [0] * draw(st.integers(1, 4)))
    L = max(map(len, rows)) + draw(st.integers(0, 3))
    pad_side = [draw(st.sampled_from(["left", "right"])) for _ in rows]
    pad_types = [draw(st.sampled_from([0, 1, 2])) for _ in rows]
    use_mask = draw(st.booleans())
    seconds = [draw(st.one_of(st.sampled_from([0.5, 1.0, 2.0, 1 / 3, 0.1, 0.7, 0.9, 1.3]),
                              st.floats(0.01, 4.0, allow_nan=False))) for _ in videos]
    kind = draw(st.sampled_from(["none", "f32", "f64", "int", "list_float", "list_int", "np64"]))
    spgt = {
        "none": None,
        "f32": torch.tensor(seconds, dtype=torch.float32),
        "f64": torch.tensor(seconds, dtype=torch.float64),
        "int": torch.tensor([int(s * 3) for s in seconds], dtype=torch.int64),
        "list_float": [float(s) for s in seconds],
        "list_int": [int(s * 3) for s in seconds],
        "np64": np.array(seconds, dtype=np.float64),
    }[kind]
    ids, types, mask = build_batch(rows, pad_side, pad_types, L, use_mask)
    grids = (torch.tensor(images).reshape(-1, 3) if images else None,
             torch.tensor(videos).reshape(-1, 3) if videos else None)
    return sms, tps, ids, types, grids, spgt, mask


@settings(max_examples=250, deadline=None)
@given(batch=mm_batches())
def test_native_mrope_matches_transformers(model, batch):
    sms, tps, ids, types, (ig, vg), spgt, mask = batch
    want = reference(model, sms, tps, ids, mm_token_type_ids=types, image_grid_thw=ig, video_grid_thw=vg,
                     second_per_grid_ts=spgt, attention_mask=mask)
    cfg = dict(spatial_merge_size=sms, tokens_per_second=tps)
    assert_same(native.mrope_position_ids(ids, types, ig, vg, spgt, mask, **cfg), want)
    assert_same(native.mrope_position_ids_py(ids, types, ig, vg, spgt, mask, **cfg), want)
    # Token types derived from the token ids give the same answer.
    derived = native.mrope_position_ids(ids, None, ig, vg, spgt, mask, image_token_id=IMAGE_ID,
                                        video_token_id=VIDEO_ID, **cfg)
    if mask is not None:  # pads carry arbitrary types but plain-text ids: only the attended part can agree
        assert torch.equal(derived[1], want[1])
    else:
        assert_same(derived, want)


def agent_trajectory(rng, n_videos, target_len, sms=2):
    """A prompt video plus tool-observation videos (each its own grid and seconds), images and text between."""
    row, images, videos, seconds = [], [], [], []
    per_video = max(1, (target_len // (n_videos + 1)))
    for v in range(n_videos):
        row += [0] * int(rng.integers(5, 40))
        if v % 3 == 1:
            images.append([1, 2 * sms, 3 * sms])
            row += [1] * 6 + [0] * 4
        hw = int(rng.integers(2, 9)) * sms
        t = max(1, per_video // ((hw // sms) ** 2))
        videos.append([t, hw, hw])
        seconds.append(float(rng.choice([0.5, 1.0, 2.0, 0.25, 1 / 3, float(rng.uniform(0.05, 3))])))
        row += [2] * (t * (hw // sms) ** 2)
    row += [0] * max(1, target_len - len(row))
    return row, images, videos, seconds


@pytest.mark.parametrize("target_len", [600, 4096])
def test_native_mrope_many_video_segments(model, target_len):
    rng = np.random.default_rng(target_len)
    rows, images, videos, seconds = [], [], [], []
    for n_videos in (8, 5):
        row, im, vi, se = agent_trajectory(rng, n_videos, target_len)
        rows.append(row)
        images += im
        videos += vi
        seconds += se
    L = max(map(len, rows)) + 7
    ids, types, mask = build_batch(rows, ["left", "right"], [0, 2], L, use_mask=True)
    ig, vg, spgt = torch.tensor(images), torch.tensor(videos), torch.tensor(seconds)
    want = reference(model, 2, 2, ids, mm_token_type_ids=types, image_grid_thw=ig, video_grid_thw=vg,
                     second_per_grid_ts=spgt, attention_mask=mask)
    got = native.mrope_position_ids(ids, types, ig, vg, spgt, mask, **native.mrope_config(model.config))
    assert_same(got, want)
    assert_same(native.mrope_position_ids_py(ids, types, ig, vg, spgt, mask, spatial_merge_size=2,
                                             tokens_per_second=2), want)
    # numpy and list inputs give the same ids (returned as int64 torch tensors on the CPU).
    as_np = native.mrope_position_ids(ids.numpy(), types.numpy().astype(np.int32), ig.numpy(), vg.numpy(),
                                      spgt.numpy(), mask.numpy().astype(bool), spatial_merge_size=2,
                                      tokens_per_second=2)
    assert_same(as_np, want)
    as_list = native.mrope_position_ids(ids.tolist(), types.tolist(), images, videos, spgt.tolist(), mask.tolist(),
                                        spatial_merge_size=2, tokens_per_second=2)
    # A list of Python floats is the float64 path in transformers too: compare against that.
    want_list = reference(model, 2, 2, ids, mm_token_type_ids=types, image_grid_thw=ig, video_grid_thw=vg,
                          second_per_grid_ts=spgt.tolist(), attention_mask=mask)
    assert_same(as_list, want_list)


@pytest.mark.parametrize("impl", [native.mrope_position_ids, native.mrope_position_ids_py])
def test_native_mrope_seconds_dtype_arithmetic(model, impl):
    # 0.7 - 1e-12 seconds at t = 10: float32 arithmetic gives temporal offset 7, float64 gives 6, so
    # each dtype path of second_per_grid_ts must follow transformers' arithmetic exactly.
    ids, types, _ = build_batch([[0] + [2] * 12 + [0]], ["left"], [0], 14, use_mask=False)
    vg = torch.tensor([[12, 2, 2]])
    v = 0.7 - 1e-12
    temporal = {}
    for name, spgt in [("f32", torch.tensor([v], dtype=torch.float32)), ("f64", torch.tensor([v], dtype=torch.float64)),
                       ("list", [v]), ("np32", [np.float32(v)]), ("np64", np.array([v])),
                       ("np32_array", np.array([v], dtype=np.float32)), ("np16_array", np.array([v], dtype=np.float16)),
                       ("np_int_array", np.array([2])), ("list_of_tensors", list(torch.tensor([v]))),
                       ("int", torch.tensor([1])), ("none", None)]:
        want = reference(model, 2, 1, ids, mm_token_type_ids=types, video_grid_thw=vg, second_per_grid_ts=spgt)
        got = impl(ids, types, None, vg, spgt, spatial_merge_size=2, tokens_per_second=1)
        assert_same(got, want)
        temporal[name] = int(got[0][0, 0, 11]) - 1  # t = 10
    assert (temporal["f32"], temporal["f64"], temporal["list"]) == (7, 6, 7)


def test_native_mrope_keeps_input_dtype_and_text_only_rows(model):
    # int32 ids: transformers keeps that dtype for the positions (it only runs without a mask then).
    ids, types, _ = build_batch([[0] * 7, [0, 0, 1, 1, 1, 1, 0]], ["left", "left"], [0, 0], 7, use_mask=False,
                                id_dtype=torch.int32)
    ig = torch.tensor([[1, 4, 4]])
    want = reference(model, 2, 2, ids, mm_token_type_ids=types, image_grid_thw=ig)
    got = native.mrope_position_ids(ids, types, ig, None, None, None, spatial_merge_size=2, tokens_per_second=2)
    assert got[0].dtype == torch.int32
    assert_same(got, want)


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
        (dict(input_ids=ids, mm_token_type_ids=ok_types, video_grid_thw=vg,
              second_per_grid_ts=t([1.0], dtype=torch.bfloat16)), "float32, float64 or integer"),
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
    x = native.prepare_mrope_inputs(types, types, [[1, 4, 4]], [[1, 4, 4]], [0.75], mask,
                                    spatial_merge_size=2, tokens_per_second=2)
    for a, b in zip(native.mrope_core_native(x), native.mrope_core_py(x)):
        np.testing.assert_array_equal(a, b)
