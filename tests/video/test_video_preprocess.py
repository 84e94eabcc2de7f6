"""The torch preprocessing equals transformers' Qwen2VLImageProcessorPil and Pillow bit for bit."""
import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as hf_pil

from engine.video.policy import smart_resize
from engine.video.preprocess import normalize, patchify, preprocess, resize_bicubic_pil
from engine.video.spec import QWEN2_5_VL, QWEN3_VL


def _frames(rng, t, h, w, smooth=False):
    if smooth:  # gradients + shapes: realistic content where rounding ties are common
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) % 256)], -1)
        return np.stack([np.roll(base, k, axis=1) for k in range(t)]).astype(np.uint8)
    return rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("seed", range(4))
def test_resize_is_bit_identical_to_pillow(seed):
    rng = np.random.default_rng(seed)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(4, 260, 2))
        oh, ow = (int(v) for v in rng.integers(4, 300, 2))
        img = _frames(rng, 1, h, w, smooth=bool(rng.integers(2)))
        ref = np.array(Image.fromarray(img[0]).resize((ow, oh), Image.BICUBIC))
        out = resize_bicubic_pil(torch.from_numpy(img), oh, ow, use_pil=False)[0].numpy()
        assert out.shape == ref.shape
        np.testing.assert_array_equal(out, ref, err_msg=f"{h}x{w} -> {oh}x{ow}")


def test_resize_same_size_is_identity():
    img = torch.randint(0, 256, (2, 30, 40, 3), dtype=torch.uint8)
    assert torch.equal(resize_bicubic_pil(img, 30, 40, use_pil=False), img)
    assert torch.equal(resize_bicubic_pil(img, 30, 40, use_pil=True), img)


def test_torch_and_pillow_paths_agree_on_video_sizes():
    """The CPU service resizes with Pillow, the GPU one with torch: same bytes for typical frames."""
    rng = np.random.default_rng(7)
    for (h, w), (oh, ow) in [((480, 640), (252, 336)), ((720, 1280), (224, 420)), ((121, 161), (112, 168))]:
        x = torch.from_numpy(_frames(rng, 2, h, w, smooth=True))
        assert torch.equal(resize_bicubic_pil(x, oh, ow, use_pil=False), resize_bicubic_pil(x, oh, ow, use_pil=True))


@pytest.mark.parametrize("hw", [(120, 160), (480, 640), (57, 301), (1000, 37), (28, 28)])
@pytest.mark.parametrize("max_pixels", [128 * 28 * 28, 16 * 28 * 28])
def test_smart_resize_matches_transformers(hw, max_pixels):
    h, w = hw
    assert smart_resize(h, w, 28, 56 * 56, max_pixels) == hf_pil.smart_resize(h, w, 28, 56 * 56, max_pixels)


@pytest.mark.parametrize("spec", [QWEN2_5_VL, QWEN3_VL], ids=lambda s: s.arch)
@pytest.mark.parametrize("shape,max_pixels", [((4, 120, 160), 128 * 28 * 28), ((3, 97, 211), 64 * 28 * 28),
                                              ((2, 480, 640), 128 * 28 * 28), ((1, 50, 50), 16 * 28 * 28)])
def test_pixel_values_equal_the_hf_image_processor_pil(shape, max_pixels, spec):
    """Each temporal pair of our patches equals the HF image processor's patches of those two frames
    (HF repeats one image over the temporal patch; a video pairs consecutive frames). Qwen3-VL's image processor
    is the same class with patch 16 and mean = std = 0.5 (its preprocessor_config.json)."""
    t, h, w = shape
    p, f = spec.patch_size, spec.factor
    rng = np.random.default_rng(t * h)
    frames = _frames(rng, t, h, w, smooth=True)
    frames[..., 1] = rng.integers(0, 256, (t, h, w), dtype=np.uint8)  # one noisy channel
    proc = hf_pil.Qwen2VLImageProcessorPil(min_pixels=f * f, max_pixels=max_pixels, patch_size=p,
                                           image_mean=list(spec.image_mean), image_std=list(spec.image_std))
    rh, rw = smart_resize(h, w, f, f * f, max_pixels)
    assert (rh, rw) == hf_pil.smart_resize(h, w, f, f * f, max_pixels)
    _, ours, (gt, gh, gw) = preprocess(torch.from_numpy(frames), rh, rw, spec)
    assert (gt, gh, gw) == ((t + 1) // 2, rh // p, rw // p)
    assert ours.dtype == torch.float32 and ours.shape == (gt * gh * gw, 3 * 2 * p * p)
    ref = [proc([Image.fromarray(f)], return_tensors="np") for f in frames]
    for r in ref:
        assert r["image_grid_thw"].tolist() == [[1, gh, gw]]
    # [patches, C, T, p, p]; HF's T axis holds the same frame twice.
    ours = ours.view(gt, gh * gw, 3, 2, p, p)
    for k in range(gt):
        for j in range(2):
            src = min(2 * k + j, t - 1)  # odd T: the last frame is repeated
            hf = torch.from_numpy(ref[src]["pixel_values"]).view(gh * gw, 3, 2, p, p)[:, :, 0]
            assert torch.equal(ours[k, :, :, j], hf), f"pair {k} slot {j}"


def test_patchify_inverts_to_the_frames():
    """An independent check of the patch order: undo it with the documented layout."""
    video = torch.randn(4, 3, 56, 84)
    p, (gt, gh, gw) = patchify(video)
    back = p.view(gt, gh // 2, gw // 2, 2, 2, 3, 2, 14, 14).permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
    assert torch.equal(back.reshape(4, 3, 56, 84), video)


def test_normalize_matches_clip_statistics():
    x = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    out = normalize(x)
    mean = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
    ref = (np.array([0, 128, 255], np.float64) / 255).astype(np.float32)
    assert torch.equal(out.view(3), torch.from_numpy((ref - mean) / std))
