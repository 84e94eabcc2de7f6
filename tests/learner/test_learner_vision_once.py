"""The learner encodes each distinct video once per call (a group repeats its prompt video G times): the same
embeddings and the same vision-tower gradients as encoding every repeat, with fewer patches through the tower."""
import torch

from engine.model.vision import encode_distinct
from engine.model import load_policy
from tests.learner.learner_testlib import real_clips


def test_repeated_videos_are_encoded_once_with_exact_gradients(tmp_path):
    model, _ = load_policy(None)
    visual = model.model.visual
    a, b = real_clips(tmp_path / "clips", n=2)
    order = [a, a, b, a, b, a]  # two groups' prompt videos, repeated, interleaved
    pixels = torch.cat([c.pixel_values for c in order])
    grids = torch.tensor([list(c.grid_thw) for c in order])
    # A same-sized clip with one changed value is a different video, not a repeat.
    other = a.pixel_values.clone()
    other[0, 0] += 1.0
    pixels = torch.cat([pixels, other])
    grids = torch.cat([grids, torch.tensor([list(a.grid_thw)])])

    seen = []
    handle = visual.patch_embed.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    weights = torch.randn(int(grids.prod(-1).sum()) // 4, visual.config.out_hidden_size,
                          generator=torch.Generator().manual_seed(0))

    def grads(fn):
        model.zero_grad(set_to_none=True)
        out = fn()
        (out * weights).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in visual.named_parameters() if p.grad is not None}

    once, g_once = grads(lambda: encode_distinct(visual, pixels, grids)[0])
    patches_once = seen[-1]
    every, g_every = grads(lambda: visual(pixels, grid_thw=grids).pooler_output)
    handle.remove()
    assert patches_once == a.pixel_values.shape[0] * 2 + b.pixel_values.shape[0] < pixels.shape[0]
    torch.testing.assert_close(once, every, atol=1e-5, rtol=1e-5)
    assert g_once.keys() == g_every.keys() and g_once
    for name in g_every:
        torch.testing.assert_close(g_once[name], g_every[name], atol=1e-5, rtol=1e-4, msg=name)
