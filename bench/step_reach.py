"""How much code one GRPO step runs: the files, lines and functions a reader must follow, and the longest function.

Method: the tiny config's GRPO loop in one process (the HF backend and a world-size-1 FSDP learner side by side,
as `bench/e2e.py`'s "single" case); after one warm-up step, the second step's rollout, rewards, advantages, update
and weight sync (`Trainer.rollout` and `Trainer.learn`; not the metrics line, traces or evals) traced with
sys.setprofile. Every Python function of engine/
entered during that step counts; a file counts with all its lines. The Ray glue (orchestration/cluster.py and
actors.py, which fan the same calls out to actors) is not traced here and is listed apart. Static measures over
engine/: the longest function (AST lines) and the package-level import graph: upward imports (a layer importing one
above it, by docs/architecture.md's order) and import cycles between packages.

    vthink bench step_reach                   # this tree
    python bench/step_reach.py --tree DIR     # another checkout, e.g. the commit before a redesign

Writes bench/results/step_reach[-<tag>].json and prints a table.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lower index = lower layer; a package may import its own layer or lower ones (docs/architecture.md).
LAYERS = [
    {"errors", "rules", "lazy", "engine"},
    {"video", "native", "data", "model", "reward", "algo", "config", "config_docs"},
    {"tools", "sync", "telemetry"},
    {"rollout", "learner", "synth"},
    {"orchestration"},
    {"recipes"},
    {"cli"},
]
GLUE = ("engine/orchestration/cluster.py", "engine/orchestration/actors.py")


def layer(pkg: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if pkg in names)


def static_measures(tree: Path) -> dict:
    """Longest function, upward package imports and package cycles of tree/engine."""
    longest, edges = ("", 0), defaultdict(set)
    for path in sorted((tree / "engine").rglob("*.py")):
        rel = path.relative_to(tree).as_posix()
        parts = path.relative_to(tree / "engine").parts
        pkg = parts[0].removesuffix(".py") if parts[0] != "__init__.py" else "engine"
        module = ast.parse(path.read_text())
        for node in ast.walk(module):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > longest[1]:
                    longest = (f"{rel}:{node.name}", n)
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                q = name.split(".")
                if q[0] == "engine" and len(q) > 1 and q[1] != pkg:
                    edges[pkg].add((q[1], rel))
    upward = sorted(f"{src}: {pkg} -> {tgt}" for pkg, out in edges.items() for tgt, src in out
                    if tgt in {p for layer_ in LAYERS for p in layer_} and pkg in {p for layer_ in LAYERS for p in layer_}
                    and layer(tgt) > layer(pkg))
    graph = {p: {t for t, _ in out} for p, out in edges.items()}
    cycles = sorted({" <-> ".join(sorted((a, b))) for a in graph for b in graph[a] if a in graph.get(b, ())})
    return {"longest_function": longest[0], "longest_function_lines": longest[1], "upward_imports": upward,
            "package_cycles": cycles}


CHILD = r'''
import json, os, sys, torch
import torch.distributed as dist
tree = sys.argv[1]
from engine.config import load_config
from engine.data.sources import prepare
from engine.learner.fsdp import FSDPLearner
from engine.orchestration.session import build_backend, build_rollout
from engine.sync import free_port
from engine.telemetry.metrics import MetricsLog
try:
    from engine.recipes.grpo import Trainer
except ImportError:
    from engine.orchestration.trainer import Trainer
out = sys.argv[2]
cfg = load_config(os.path.join(tree, "configs/tiny_cpu.yaml"), ["sft.steps=0", "trainer.steps=2",
                  f"trainer.output_dir={out}", "trainer.trace_every=1", "trainer.eval_every=0",
                  "ray.rollout_workers=1", "ray.learners=1", "trainer.max_restarts=0"])
data = prepare(cfg, "train", out)
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port('127.0.0.1')}", rank=0, world_size=1)
try:  # trees since the learner took a LearnerSpec
    from engine.learner.fsdp import LearnerSpec
    learner = FSDPLearner(LearnerSpec.of(cfg), 0, 1)
except ImportError:
    learner = FSDPLearner(cfg, 0, 1)
backend, tokenizer, config = build_backend(cfg)
engine = build_rollout(cfg, backend, tokenizer, config, data.records)
trained = {n for n, _ in learner.hf.named_parameters()}

class InProcess:
    version = -1
    def rollout(self, rows, group_size, params):
        return engine.run(rows, group_size, params)
    def update(self, *args):  # the learner builds its batch (samples) or is handed one (tensors, advantages)
        if len(args) == 2:
            return learner.update(*args)
        samples, = args
        return learner.update(learner.batch(samples), torch.tensor([x.advantage for x in samples]))
    def sync_weights(self, newer_than=-1):
        self.version = max(self.version, newer_than) + 1
        backend.load_weights(((n, t) for n, t in learner.named_full_tensors() if n in trained), self.version)
    def policy_ids(self):  # the driver's old round trip, where the trainer still asks for it
        from engine.native import mrope_config
        return tokenizer.pad_token_id, config.video_token_id, mrope_config(config), engine.spec

cluster = InProcess()
cluster.sync_weights()
trainer = Trainer(cfg, cluster, lambda _: None, data)
log = MetricsLog(out, 2, tensorboard=False)
trainer.run(1, log)  # warm-up: first-call imports and caches are not the step
seen = set()
engine_dir = os.path.join(tree, "engine") + os.sep
def profile(frame, event, arg):
    if event == "call":
        f = frame.f_code.co_filename
        if f.startswith(engine_dir):
            seen.add((os.path.relpath(f, tree), frame.f_code.co_name))
sys.setprofile(profile)
batch, rewards, _ = trainer.rollout(1)  # the step itself: prompts, rollout, rewards, advantages, update, sync
trainer.learn(batch, rewards)
sys.setprofile(None)
print("REACH " + json.dumps(sorted(seen)))
'''


def dynamic_measures(tree: Path) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
        run = subprocess.run([sys.executable, "-c", CHILD, str(tree), out], cwd=tree, env=env, capture_output=True,
                             text=True, timeout=1800)
        line = next((x for x in run.stdout.splitlines() if x.startswith("REACH ")), None)
        if line is None:
            raise SystemExit(f"step_reach: the traced run failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
    seen = [tuple(x) for x in json.loads(line[len("REACH "):])]
    files = sorted({f for f, _ in seen})
    lines = sum(len((tree / f).read_text().splitlines()) for f in files)
    glue = [f for f in GLUE if (tree / f).is_file()]
    return {"files": len(files), "lines": lines, "functions": len(seen), "file_list": files,
            "ray_glue_files": glue, "ray_glue_lines": sum(len((tree / f).read_text().splitlines()) for f in glue)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout to measure (default: this one)")
    ap.add_argument("--tag", default="", help="suffix of the result file")
    args = ap.parse_args()
    tree = args.tree.resolve()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()
    result = {"bench": "step_reach", "tree": str(tree), "commit": commit,
              **dynamic_measures(tree), **static_measures(tree)}
    print(f"{'one GRPO step (tiny, in process)':40} {result['files']:>4} files  {result['lines']:>6} lines  "
          f"{result['functions']:>4} functions  (+ Ray glue: {len(result['ray_glue_files'])} files, "
          f"{result['ray_glue_lines']} lines)")
    print(f"{'longest function':40} {result['longest_function']} ({result['longest_function_lines']} lines)")
    print(f"{'upward imports':40} {len(result['upward_imports'])}" +
          "".join(f"\n    {x}" for x in result["upward_imports"]))
    print(f"{'package cycles':40} {len(result['package_cycles'])}" +
          "".join(f"\n    {x}" for x in result["package_cycles"]))
    name = "step_reach" + (f"-{args.tag}" if args.tag else "")
    path = ROOT / "bench" / "results" / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
