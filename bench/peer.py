"""vthink against TRL's GRPOTrainer on the same GRPO run, side by side: `vthink bench peer`.

Both train the embedded tiny model from the same weights on the embedded default's training rows (configs/tiny_cpu.yaml,
no SFT): G = 4 samples of at most 160 tokens for each of 4 prompts per step, temperature 0.7, KL 0.04 to the frozen
reference, lr 1e-4, AdamW, vthink's reward (accuracy + format). vthink runs `vthink train` (one rollout worker, one
FSDP learner: the default layout on this machine), on-policy and with trainer.max_staleness=2. TRL runs in its own
virtualenv (bench/peer_venv.sh: TRL 1.16.0, the same torch and transformers), generating with transformers'
`generate` (TRL's non-vLLM path) in its one process.

The clip: vthink gives the model each prompt's video (T frames, two per temporal patch); TRL's Qwen-VL path takes
images, so it gets every other of those frames at the same size, T / 2 images: the same number of visual tokens.

Per trainer, after the first step: sampled tokens per second of training (completion tokens per step / step time,
the step's rollout, scoring, update and weight sync included), median s/step, time to the first step (launch to its
end) and the peak PSS of the process tree. Rounds interleave the trainers (vthink, vthink async, TRL, then again) so
that drift on this noisy machine hits all alike; figures are medians over rounds.

Differences that remain: TRL's loss is `bnpo` (token-mean over the batch, vthink's `token-mean`); TRL clips the
completion at 160 tokens in one call, vthink likewise (rollout.max_new_tokens); TRL samples with transformers'
`generate`, vthink with its own decode loop (engine/rollout/hf_backend.py); images instead of a video (above).

    vthink bench peer [--steps 6] [--rounds 2]       # writes bench/results/peer-trl-<device>.json
"""
from __future__ import annotations

import argparse
import json
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from e2e import follow, run_case  # noqa: E402

from engine.recipes.demo import source_commit  # noqa: E402

TRL_VENV = ROOT / ".venv-trl"
CONFIG = "configs/tiny_cpu.yaml"
# No checkpoints, as TRL's save_strategy="no": with restarts allowed, a 6-step run would checkpoint every step.
CASES = {"vthink": ["ray.rollout_workers=1", "ray.learners=1", "trainer.max_restarts=0"],
         "vthink-async-2": ["ray.rollout_workers=1", "ray.learners=1", "trainer.max_restarts=0", "trainer.max_staleness=2"]}


def prepare_rows(out: Path) -> Path:
    """rows.pkl, prompts.json and the frames (PNG) TRL trains on: the config's training rows, each with vthink's
    system prompt and question text, and every other frame vthink samples for it, at the size vthink gives them."""
    import av
    import numpy as np
    from PIL import Image

    from engine.config import load_config
    from engine.data.sources import prepare
    from engine.rollout.prompt import build_messages, question_text
    from engine.video.policy import FramePolicy, select_frames, smart_resize

    cfg = load_config(ROOT / CONFIG, ["sft.steps=0"])
    data = prepare(cfg, "train", None, log=lambda _: None)
    v = cfg.video
    policy = FramePolicy(fps=v.fps, min_frames=v.min_frames, max_frames=v.max_frames, max_pixels=v.max_pixels)
    out.mkdir(parents=True, exist_ok=True)
    prompts = []
    for i, row in enumerate(data.train):
        with av.open(str(row.video)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            fps = float(stream.average_rate)
        picked = select_frames(0, len(frames) - 1, fps, policy)
        h, w = smart_resize(*frames[0].shape[:2], min_pixels=policy.min_pixels, max_pixels=policy.max_pixels)
        names = []
        for k, idx in enumerate(picked[::2]):  # one image per temporal patch (2 frames): the same visual tokens
            name = f"r{i:03d}-{k}.png"
            Image.fromarray(np.asarray(frames[idx])).resize((w, h), Image.BICUBIC).save(out / name)
            names.append(name)
        system = build_messages(row, layout=cfg.reward.format_layout)[0]["content"]
        prompts.append({"system": system, "user": question_text(row), "images": names})
    (out / "rows.pkl").write_bytes(pickle.dumps(data.train))
    (out / "prompts.json").write_text(json.dumps(prompts))
    return out


def throughput(times: list[float], tokens: list[float]) -> dict:
    """Figures after the first step: tokens per second of training, median s/step, first step."""
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"first_step_s": times[0], "median_step_s": statistics.median(gaps),
            "tokens_per_s": sum(tokens[1:]) / sum(gaps)}


def run_vthink(name: str, steps: int, out: Path, per_step: int) -> dict:
    """`per_step`: the samples a step draws (prompts_per_step x group_size; no dynamic sampling)."""
    r = run_case(name, CASES[name], steps, out)
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {**throughput(r["step_times"], [m["response_len"] * per_step for m in metrics]),
            "peak_pss_gib": r["peak_pss_gib"]}


def run_trl(data: Path, model: str, steps: int, out: Path) -> dict:
    cmd = [str(TRL_VENV / "bin" / "python"), str(ROOT / "bench" / "peer_trl.py"), "--data", str(data), "--model", model,
           "--out", str(out), "--steps", str(steps)]
    run = follow(cmd)
    if run["proc"].returncode or len(run["step_lines"]) < 2:
        raise SystemExit(f"peer: TRL failed (exit {run['proc'].returncode}):\n{run['tail']}")
    # Launch-relative times come from `follow`; the tokens from TRL's own count of each step's completions.
    tokens = [float(line.split()[3]) for line in run["step_lines"]]
    return {**throughput(run["step_times"], tokens), "peak_pss_gib": run["peak_pss"] / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="runs/bench_peer")
    ap.add_argument("--device", default="cpu-2core")
    args = ap.parse_args()
    subprocess.run(["bash", str(ROOT / "bench" / "peer_venv.sh"), str(TRL_VENV)], check=True)
    from engine.config import load_config
    from engine.model import model_dir

    cfg = load_config(ROOT / CONFIG, [])
    per_step = cfg.trainer.prompts_per_step * cfg.rollout.group_size
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    data = prepare_rows(out / "trl-data")
    model = str(model_dir(None))
    rounds = []
    for k in range(args.rounds):
        got = {name: run_vthink(name, args.steps, out / f"{name}-{k}", per_step) for name in CASES}
        got["trl"] = run_trl(data, model, args.steps, out / f"trl-{k}")
        rounds.append(got)
        print(f"round {k + 1}/{args.rounds}: " + ", ".join(f"{n} {r['tokens_per_s']:.0f} tok/s" for n, r in got.items()),
              flush=True)
    table = {n: {key: statistics.median(r[n][key] for r in rounds) for key in rounds[0][n]} for n in rounds[0]}
    trl = table["trl"]
    for n, row in table.items():
        row["x_trl_tokens_per_s"] = row["tokens_per_s"] / trl["tokens_per_s"]
        row["x_trl_pss"] = row["peak_pss_gib"] / trl["peak_pss_gib"]
    print(f"{'trainer':<16}{'tok/s':>8}{'x TRL':>7}{'s/step':>8}{'1st step s':>11}{'PSS GiB':>9}{'x TRL':>7}")
    for n, row in table.items():
        print(f"{n:<16}{row['tokens_per_s']:>8.0f}{row['x_trl_tokens_per_s']:>7.2f}{row['median_step_s']:>8.2f}"
              f"{row['first_step_s']:>11.1f}{row['peak_pss_gib']:>9.2f}{row['x_trl_pss']:>7.2f}")
    path = ROOT / "bench" / "results" / f"peer-trl-{args.device}.json"
    path.write_text(json.dumps({"bench": "peer", "peer": "trl 1.16.0", "device": args.device, "config": CONFIG,
                                "steps": args.steps, "rounds": rounds, "table": table, "commit": source_commit(),
                                "python": platform.python_version()}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
