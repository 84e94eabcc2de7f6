"""Agent-loop throughput on the tiny model: G=8 groups with tool calls, tools overlapped vs serialised.

Workload (tool-heavy, deterministic in its tool use): every assistant turn is `--think` tokens sampled
by the real tiny model (batched, KV cache) followed by a frame_zoom call on a window that differs per
sample and turn (the untrained tiny model would not call tools on its own); after `--calls` calls the
last turn is sampled freely. Tools decode real synthetic H.264 clips with PyAV, frame cache off, so
every call decodes. Same seeds in both modes: the trajectories are the same, only the scheduling differs.

--tool-latency-ms N adds N ms of waiting to every call, with the frame cache on: a tool served elsewhere (a
retrieval service, a GPU decoder) whose latency costs this CPU nothing. On 2 cores, overlap can only win
against that kind of latency: a CPU-bound tool takes its cores from generation.

Prints a table and writes bench/results/rollout-<device>[-latency<N>ms].json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from engine.data.dataset import load_rows
from engine.data.synthetic import make_dataset
from engine.model import load_policy
from engine.native import mrope_config
from engine.rollout.agent import LoopConfig
from engine.rollout.backend import Backend, Generation, Request, SamplingParams
from engine.rollout.grouped import GroupedRollout
from engine.rollout.hf_backend import HFBackend
from engine.tools import ToolRegistry, default_registry
from engine.tools.video_tools import FrameZoomTool
from engine.video import FramePolicy, VideoService


class ThinkThenCall(Backend):
    """The HF backend samples `think` tokens; a frame_zoom call is appended to every turn before the last.

    The call's window depends on the request's seed, so samples and turns ask for different frames.
    Appended ids carry log-prob 0 (they are forced, not sampled)."""

    def __init__(self, hf: HFBackend, tokenizer, think: int, calls: int, duration: float):
        self.hf, self.tok, self.think, self.calls, self.duration = hf, tokenizer, think, calls, duration
        self.weight_version = 0

    def check(self, request: Request) -> None:
        self.hf.check(request)

    def generate(self, requests: list[Request]) -> list[Generation]:
        end = self.tok.convert_tokens_to_ids("<|im_end|>")
        inner = []
        for r in requests:
            turn = r.prompt_ids.count(self.tok.convert_tokens_to_ids("<tool_response>"))
            calling = turn < self.calls
            p = r.params
            inner.append(Request(r.prompt_ids, r.videos, SamplingParams(
                max_new_tokens=self.think if calling else p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                seed=p.seed, stop=() if calling else p.stop, stop_token_ids=() if calling else (end,))))
        out = []
        for r, g in zip(requests, self.hf.generate(inner)):
            turn = r.prompt_ids.count(self.tok.convert_tokens_to_ids("<tool_response>"))
            if turn >= self.calls:
                out.append(g)
                continue
            start = (r.params.seed % 1000) / 1000 * (self.duration - 3)
            call = json.dumps({"name": "frame_zoom", "arguments": {"start": round(start, 2), "end": round(start + 3, 2),
                                                                   "num_frames": 8}})
            ids = self.tok(f"<tool_call>\n{call}\n</tool_call>", add_special_tokens=False)["input_ids"]
            out.append(Generation(g.token_ids + ids, g.logprobs + [0.0] * len(ids), "stop", "</tool_call>"))
        return out

    def load_weights(self, named_tensors, version: int) -> None:
        self.hf.load_weights(named_tensors, version)


class RemoteFrameZoom(FrameZoomTool):
    """frame_zoom behind a service that answers after `latency_s` (time spent waiting, not computing)."""

    def __init__(self, latency_s: float):
        super().__init__()
        self.latency_s = latency_s

    def run(self, args, ctx):
        time.sleep(self.latency_s)
        return super().run(args, ctx)


def run_once(rollout: GroupedRollout, rows, group: int, seed: int) -> dict:
    t0 = time.perf_counter()
    batch, st = rollout.run(rows, group, SamplingParams(max_new_tokens=32, temperature=1.0, seed=seed))
    wall = time.perf_counter() - t0
    gen_tokens = sum(s.generated_tokens for s in batch.samples)
    calls = sum(len(s.tool_trace) for s in batch.samples)
    ok = sum(e.ok for s in batch.samples for e in s.tool_trace)
    return {"wall_s": wall, "samples_per_s": len(batch.samples) / wall, "gen_tokens_per_s": gen_tokens / wall,
            "generate_s": st.loop.generate_s, "tool_s": st.loop.tool_s, "tool_wait_s": st.loop.wait_s,
            "decode_s": st.decode_s, "rounds": st.loop.rounds, "samples": len(batch.samples),
            "gen_tokens": gen_tokens, "tool_calls": calls, "tool_ok": ok,
            "ids": [s.response_ids for s in batch.samples]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device-name", default="cpu-2core")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--calls", type=int, default=3, help="tool calls per sample")
    ap.add_argument("--think", type=int, default=8, help="sampled tokens before each call")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--tool-latency-ms", type=float, default=0.0, help="waiting added to each call (frame cache on)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_policy(None)
    duration = 12.0
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(Path(tmp), num_videos=max(2, args.prompts), seed=0, codec="h264", width=args.width,
                     height=args.height, fps=24.0, duration_s=duration)
        rows = load_rows(Path(tmp) / "train.jsonl")[: args.prompts]
        service = VideoService(device="cpu", backend="pyav", cache_bytes=2**28 if args.tool_latency_ms else 0)
        policy = FramePolicy(fps=1.0, min_frames=4, max_frames=8, max_pixels=112 * 112)
        results = {}
        for name, workers in (("overlapped", args.workers), ("serialised", 0)):
            loop = LoopConfig(tools=True, max_turns=args.calls, max_tokens_per_turn=64, max_total_tokens=512,
                              max_visual_tokens=100_000, tool_workers=workers)
            backend = ThinkThenCall(HFBackend(model, tok), tok, args.think, args.calls, duration)
            registry = default_registry()
            if args.tool_latency_ms:  # the same tools, frame_zoom behind its "service"
                registry = ToolRegistry([RemoteFrameZoom(args.tool_latency_ms / 1000),
                                         *(registry.get(n) for n in registry.names() if n != "frame_zoom")])
            ro = GroupedRollout(backend, tok, service, policy, loop, registry, "agent",
                                mrope=mrope_config(model.config))
            run_once(ro, rows, args.group, seed=99)  # warm-up
            runs = [run_once(ro, rows, args.group, seed=1000 + k) for k in range(args.repeats)]
            results[name] = runs
    same = all(a["ids"] == b["ids"] for a, b in zip(results["overlapped"], results["serialised"]))
    summary = {}
    for name, runs in results.items():
        summary[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "ids"}
    speedup = summary["serialised"]["wall_s"] / summary["overlapped"]["wall_s"]
    print(f"agent loop, tiny model, {args.prompts} prompts x G={args.group}, {args.calls} frame_zoom calls/sample, "
          f"{args.width}x{args.height} H.264, median of {args.repeats}"
          + (f", {args.tool_latency_ms:.0f} ms waiting per call" if args.tool_latency_ms else ""))
    cols = ["wall_s", "samples_per_s", "gen_tokens_per_s", "generate_s", "tool_s", "tool_wait_s", "decode_s", "rounds"]
    print(f"{'mode':<11}" + "".join(f"{c:>17}" for c in cols))
    for name, s in summary.items():
        print(f"{name:<11}" + "".join(f"{s[c]:>17.3f}" for c in cols))
    print(f"overlapped / serialised speed-up: {speedup:.2f}x (trajectories identical: {same})")
    suffix = f"-latency{args.tool_latency_ms:.0f}ms" if args.tool_latency_ms else ""
    out = Path(args.out) / f"rollout-{args.device_name}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "bench": "rollout", "device": args.device_name, "args": vars(args), "python": platform.python_version(),
        "torch": torch.__version__, "summary": summary, "speedup_overlapped_vs_serialised": speedup,
        "trajectories_identical": same,
        "runs": {k: [{kk: vv for kk, vv in r.items() if kk != "ids"} for r in v] for k, v in results.items()},
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
