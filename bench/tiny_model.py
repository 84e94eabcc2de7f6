"""Times the embedded tiny model: build+save, load, and greedy generation of 32 tokens on CPU."""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from engine.model.loading import load_policy
from engine.model.tiny import save_tiny
from engine.model.video_tokens import expand_vision_pads, mm_token_type_ids


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def patchify(frames: torch.Tensor, temporal=2, patch=14, merge=2):
    T, C, H, W = frames.shape
    t, h, w = T // temporal, H // patch, W // patch
    x = frames.reshape(t, temporal, C, h // merge, merge, patch, w // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(t * h * w, C * temporal * patch * patch), (t, h, w)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device-name", default="cpu-2core")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["build+save (s)"], path = timed(lambda: save_tiny(Path(tmp) / "m"), args.repeats)
        rows["load (s)"], (model, tok) = timed(lambda: load_policy(str(path)), args.repeats)
    rows["params total"] = sum(p.numel() for p in model.parameters())
    rows["params vision"] = sum(p.numel() for p in model.model.visual.parameters())
    rows["params text+lm_head"] = rows["params total"] - rows["params vision"]
    prompt = tok.apply_chat_template([{"role": "user", "content": "Which shape moves first?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
    with torch.no_grad():
        model.generate(**prompt, **gen)  # warm-up
        rows["generate 32 tok, text (s)"], _ = timed(lambda: model.generate(**prompt, **gen),
                                                     args.repeats)
        # One 8-frame 112x112 video: grid (4, 8, 8) -> 64 video tokens.
        pixels, grid = patchify(torch.randn(8, 3, 112, 112))
        msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"]
        vid, img = model.config.video_token_id, model.config.image_token_id
        ids = expand_vision_pads(ids, [grid], 2, vid)
        video = dict(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                     pixel_values_videos=pixels, video_grid_thw=torch.tensor([grid]),
                     second_per_grid_ts=torch.tensor([1.0]),
                     mm_token_type_ids=torch.tensor([mm_token_type_ids(ids, img, vid)]))
        rows["generate 32 tok, video 64 tok (s)"], _ = timed(lambda: model.generate(**video, **gen),
                                                             args.repeats)
    rows["tokens/s, text"] = 32 / rows["generate 32 tok, text (s)"]
    print(f"{'metric':<36}{'value':>14}")
    for k, v in rows.items():
        print(f"{k:<36}{v:>14.4g}" if isinstance(v, float) else f"{k:<36}{v:>14,}")
    out = Path(args.out) / f"tiny_model-{args.device_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": args.device_name, "torch_threads": 2, **rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
