"""engine.native M-RoPE ids under rule "qwen3_vl": equal to the published Qwen3-VL rule (mrope_qwen3_original.py,
transcribed from transformers 4.57), native and Python, on Qwen3-VL's prompt layout (a timestamp, then each
temporal patch as its own vision block); and where transformers 5.19's implementation departs from it."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import native
from tests.native.mrope_qwen3_original import qwen3_rope_index
from tests.native.test_native_mrope import IMAGE_ID, VIDEO_ID, VISION_START, assert_same, build_batch, segment, types_of


def reference(sms, ids, image_grid_thw=None, video_grid_thw=None, attention_mask=None):
    return qwen3_rope_index(ids, image_grid_thw, None if video_grid_thw is None else video_grid_thw.clone(),
                            attention_mask, spatial_merge_size=sms, image_token_id=IMAGE_ID, video_token_id=VIDEO_ID,
                            vision_start_token_id=VISION_START)


@st.composite
def qwen3_batches(draw):
    """Rows of text / video (per temporal patch: timestamp text, then the patch's block) / image, padded."""
    sms = draw(st.sampled_from([1, 2]))
    rows, images, videos = [], [], []
    use_mask = draw(st.booleans())
    for _ in range(draw(st.integers(1, 3))):
        row = []
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from([0, 1, 2, 2]))
            if kind == 0:
                row += draw(st.lists(st.integers(0, 58), min_size=1, max_size=6))
                continue
            t = 1 if kind == 1 else draw(st.integers(1, 6))
            h = sms * draw(st.integers(1, 3)) + draw(st.integers(0, sms - 1))
            w = sms * draw(st.integers(1, 3)) + draw(st.integers(0, sms - 1))
            (images if kind == 1 else videos).append([t, h, w])
            per_patch = (h // sms) * (w // sms)
            for _ in range(t):  # "<0.5 seconds>" as a few text ids, then the patch's own vision block
                if kind == 2:
                    row += draw(st.lists(st.integers(0, 58), min_size=1, max_size=4))
                row += segment(kind, per_patch)
        rows.append(row or draw(st.lists(st.integers(0, 58), min_size=1, max_size=4)))
    L = max(map(len, rows)) + (draw(st.integers(0, 3)) if use_mask else 0)
    pad_side = [draw(st.sampled_from(["left", "right"])) for _ in rows]
    ids, mask = build_batch(rows, pad_side, L, use_mask)
    grids = (torch.tensor(images).reshape(-1, 3) if images else None,
             torch.tensor(videos).reshape(-1, 3) if videos else None)
    return sms, ids, grids, mask


@settings(max_examples=300, deadline=None)
@given(batch=qwen3_batches())
def test_qwen3_rule_matches_the_published_one(batch):
    sms, ids, (ig, vg), mask = batch
    want = reference(sms, ids, ig, vg, mask)
    cfg = dict(spatial_merge_size=sms, tokens_per_second=2, rule="qwen3_vl")  # no temporal scale in qwen3_vl
    assert_same(native.mrope_position_ids(ids, types_of(ids), ig, vg, None, mask, **cfg), want)
    assert_same(native.mrope_position_ids_py(ids, types_of(ids), ig, vg, None, mask, **cfg), want)
    spg = None if vg is None else torch.full((len(vg),), 0.7)  # timing is text in Qwen3-VL: ignored
    assert_same(native.mrope_position_ids(ids, None, ig, vg, spg, mask, image_token_id=IMAGE_ID,
                                          video_token_id=VIDEO_ID, **cfg), want)


def test_qwen3_and_qwen2_5_rules_differ_on_a_multi_patch_video():
    """One 3-patch video at 2 s per patch, laid out each rule's way: Qwen2.5-VL puts the three patches in one
    block at temporal ids 0, 2*tps, 4*tps; Qwen3-VL puts three blocks, each at temporal id 0 after its
    timestamp text, so positions keep rising through the timestamps instead."""
    sms, t, h, w = 2, 3, 4, 4
    per = (h // sms) * (w // sms)
    ids = torch.tensor([[1, 2, 7, 8] + segment(2, per) + [7, 9] + segment(2, per) + [7, 10] + segment(2, per) + [3]])
    vg = torch.tensor([[t, h, w]])
    pos3, delta3 = native.mrope_position_ids(ids, types_of(ids), None, vg, None, None, spatial_merge_size=sms,
                                             tokens_per_second=1, rule="qwen3_vl")
    assert_same((pos3, delta3), reference(sms, ids, None, vg))
    blocks = (ids[0] == VIDEO_ID).nonzero().flatten().split(per)
    starts = [int(pos3[0, 0, b[0]]) for b in blocks]
    assert starts == [int(pos3[1, 0, b[0]]) for b in blocks]  # temporal id = the block's start in every patch
    # A block spans start .. start + w / merge - 1; then vision_end, two timestamp ids, vision_start.
    assert starts == [5, 11, 17]
    q25, _ = native.mrope_position_ids(torch.tensor([[1, 2] + segment(2, t * per) + [3]]), None, None, vg,
                                       torch.tensor([2.0]), None, spatial_merge_size=sms, tokens_per_second=1,
                                       image_token_id=IMAGE_ID, video_token_id=VIDEO_ID)
    assert q25[0, 0, 3:3 + t * per:per].tolist() == [3, 5, 7]  # Qwen2.5-VL: one block, time in the temporal id
    with pytest.raises(ValueError, match="qwen3_vl images have one temporal patch"):
        native.mrope_position_ids(ids, types_of(ids), torch.tensor([[2, 4, 4]]), vg, None, None,
                                  spatial_merge_size=sms, tokens_per_second=1, rule="qwen3_vl")
    with pytest.raises(ValueError, match="unknown rule"):
        native.mrope_position_ids(ids, types_of(ids), None, vg, None, None, spatial_merge_size=sms,
                                  tokens_per_second=1, rule="qwen4")


def test_mrope_config_picks_the_rule_from_the_config():
    from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

    assert native.mrope_config(Qwen3VLConfig())["rule"] == "qwen3_vl"
    q25 = native.mrope_config(Qwen2_5_VLConfig())
    assert q25["rule"] == "qwen2_5_vl" and q25["tokens_per_second"] == Qwen2_5_VLConfig().vision_config.tokens_per_second


def _transformers_rope_index(sms, ids, ig, vg, mask):
    """transformers' own Qwen3VLModel.get_rope_index (the installed version), called without building a model."""
    import types

    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    fake = types.SimpleNamespace(config=types.SimpleNamespace(vision_config=types.SimpleNamespace(spatial_merge_size=sms)))
    fake.get_vision_position_ids = types.MethodType(Qwen3VLModel.get_vision_position_ids, fake)
    return Qwen3VLModel.get_rope_index(fake, ids, types_of(ids), ig, None if vg is None else vg.clone(), mask)


def test_transformers_5_19_departs_from_the_published_rule_only_on_padding():
    """Recorded for the note: on unpadded rows transformers 5.19 gives the published ids; on padded rows its
    masked slots hold 0 (published: 1) and its deltas count only the unmasked tokens (published: the whole row),
    so decoding a left-padded row would continue at other positions. vthink follows the published rule."""
    import transformers

    sms, per = 2, 4
    row = [1, 2, 7, 8] + segment(2, per) + [7, 9] + segment(2, per) + [4] + segment(1, per) + [3]
    vg, ig = torch.tensor([[2, 4, 4]]), torch.tensor([[1, 4, 4]])
    ids = torch.tensor([row])
    want = reference(sms, ids, ig, vg)
    got = _transformers_rope_index(sms, ids, ig, vg, None)
    assert_same(got, want)
    padded, mask = build_batch([row], ["left"], len(row) + 2, True)
    want = reference(sms, padded, ig, vg, mask)
    got = _transformers_rope_index(sms, padded, ig, vg, mask)
    m = mask.bool()
    assert torch.equal(got[0][:, m], want[0][:, m])  # same ids where it matters
    if transformers.__version__.startswith("5.19"):
        assert int(got[0][0, 0, 0]) == 0 and int(want[0][0, 0, 0]) == 1  # masked slots
        assert int(got[1][0]) - int(want[1][0]) == 2  # deltas: masked length vs full length (2 pads)
