"""The `vthink` command: train, sft, eval, synth, demo, plan, make-data, data check, config show (a YAML config plus
key=value overrides), bench and view."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import ConfigError, VthinkError

EPILOG = """\
config: a YAML file (see configs/tiny_cpu.yaml); without one, the built-in defaults (the embedded
tiny model on synthetic videos). overrides: dotted key=value pairs applied on top, e.g.
  vthink train configs/tiny_cpu.yaml trainer.steps=5 rollout.group_size=4
A bad key, type or value exits with status 2 before anything starts, naming the key, and so do bad
data rows (see `vthink data check`; data.on_bad_row=skip goes on without them).

outputs go to trainer.output_dir (default runs/default): metrics.jsonl, tb/, reward.png, config.json,
data.json (+ bad_rows.jsonl), eval.json, checkpoints/step-N/ (Hugging Face folders), sft/ (the SFT
policy), synth/trajectories.jsonl; `vthink view DIR` renders DIR/report.html."""


def _split(args: list[str]) -> tuple[str | None, list[str]]:
    """First argument is the config file unless it is a key=value override."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def _load(args: list[str]):
    from engine.config import load_config

    path, overrides = _split(args)
    if path is not None and Path(path).is_dir():  # a run folder: its resolved config and its newest policy
        from engine.model.loading import run_model

        run = Path(path)
        if not (run / "config.json").is_file() or run_model(run) is None:
            raise ConfigError("config", f"{path!r} is a folder but not a vthink run with a checkpoint or an sft/ "
                                        "policy (give a YAML config, or a trainer.output_dir)")
        print(f"run {run}: config {run / 'config.json'}, model {run_model(run)} (override any key after it)",
              file=sys.stderr)
        return load_config(str(run / "config.json"), [f"model.path={run_model(run)}", *overrides])
    return load_config(path, overrides)


def cmd_train(cfg, resume: bool = False) -> int:
    from engine.orchestration.ray_start import start_ray

    start_ray(cfg)  # in the background, while the trainer imports and the data is checked
    from engine.recipes.grpo import train

    train(cfg, resume=resume)
    return 0


def cmd_sft(cfg, resume: bool = False) -> int:
    from engine.orchestration.ray_start import start_ray

    start_ray(cfg)
    from engine.data.sources import prepare
    from engine.recipes.sft import run_sft

    if cfg.sft.steps < 1 and cfg.sft.epochs < 1:
        raise ConfigError("sft.steps", "`vthink sft` needs sft.steps >= 1 or sft.epochs >= 1")
    out = Path(cfg.trainer.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))  # what a Ctrl-C's --resume continues
    run_sft(cfg, prepare(cfg, "train", out), out / "sft", resume=resume,
            resume_with=f"vthink sft {out / 'config.json'} --resume")
    return 0


def cmd_eval(cfg) -> int:
    from engine.orchestration.evaluation import evaluate_session
    from engine.orchestration.session import build_session

    result = evaluate_session(cfg, build_session(cfg, purpose="eval"), tool_gate=cfg.rollout.tool_gate)
    out = Path(cfg.trainer.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    print(f"wrote {out / 'eval.json'}")
    return 0


def cmd_synth(cfg) -> int:
    from engine.data.sources import prepare
    from engine.synth import synthesize

    data = prepare(cfg, "train", cfg.trainer.output_dir)
    out = Path(cfg.trainer.output_dir) / "synth" / "trajectories.jsonl"
    _, report = synthesize(cfg, data.train, data.records, out)
    print(json.dumps(report.to_json()))
    print(f"wrote {out}")
    return 0


def cmd_demo(cfg, controls: bool = False) -> int:
    from engine.orchestration.ray_start import start_ray

    start_ray(cfg)  # its SFT and GRPO phases run on this one instance
    from engine.recipes.demo import run_demo

    run_demo(cfg, controls=controls)
    return 0


def cmd_make_data(cfg) -> int:
    from engine.data.synthetic import make_dataset

    d = cfg.data
    paths = make_dataset(
        Path(d.dir), num_videos=d.num_videos, seed=d.seed, codec=d.codec,
        width=d.width, height=d.height, fps=d.fps, duration_s=d.duration_s, task=d.task,
        eval_fraction=d.eval_fraction, min_duration_s=d.min_duration_s,
    )
    print(f"wrote {d.num_videos} {d.codec} videos and their questions to {paths.dir}")
    return 0


def cmd_data_check(cfg) -> int:
    """Every row checked (fields, values, the video's header), no model loaded; exit 2 when the run would refuse."""
    from engine.data.sources import load_data, report, skip_hint

    d = cfg.data
    if not (d.train_files or d.val_files) and not (Path(d.dir) / "train.jsonl").is_file():
        # A check writes nothing: the synthetic dataset is rendered by make-data, train or demo, not here.
        print(f"data.dir {d.dir} holds no dataset yet: `vthink make-data` (or the first `vthink train`) renders "
              f"{d.num_videos} synthetic {d.task} clips there; nothing to check")
        return 0
    data = load_data(d)
    print(report(data))
    if data.train and data.eval:
        from engine.data.near_duplicates import split_overlap

        o = split_overlap(data)
        print(f"held-out clips: {o['eval_clips']}, training clips: {o['train_clips']}, "
              f"eval_clips_identical_to_train: {o['eval_clips_identical_to_train']} (near-duplicates by decoded pixels)")
    if data.bad and cfg.data.on_bad_row == "error":
        print(f"vthink: data check failed (data.on_bad_row=error); {skip_hint(data)}", file=sys.stderr)
        return 2
    if not data.train and not data.eval:
        print("vthink: data check failed: no usable row", file=sys.stderr)
        return 2
    return 0


def cmd_plan(cfg, as_json: bool = False) -> int:
    from engine.orchestration.plan import plan

    p = plan(cfg)
    print(json.dumps(p.to_json(), indent=2) if as_json else p.table())
    return 0 if p.fits else 2


def cmd_config_show(cfg) -> int:
    """The resolved config, every default included, as YAML that `vthink train FILE` takes back, each key under
    its documentation (engine/config_docs.py)."""
    from engine.config_docs import commented_yaml

    print(commented_yaml(cfg))
    return 0


def bench_dir() -> Path:
    """bench/ of the source checkout vthink is installed from (benchmarks are scripts, not package modules)."""
    return Path(__file__).resolve().parents[1] / "bench"


def cmd_bench(name: str, args: list[str]) -> int:
    import runpy

    script = bench_dir() / f"{name}.py"
    if not script.is_file():
        names = ", ".join(sorted(p.stem for p in bench_dir().glob("*.py"))) or "none (not a source checkout)"
        print(f"vthink: no benchmark {name!r}; available: {names}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def cmd_view(run_dir: str) -> int:
    from engine.telemetry.view import render_run

    try:
        print(f"wrote {render_run(run_dir)}")
    except (FileNotFoundError, ValueError) as e:
        print(f"vthink: {e}", file=sys.stderr)
        return 2
    return 0


COMMANDS = {
    "train": (cmd_train, "GRPO on Ray: rollout workers sample G answers per question, FSDP learners update, "
                         "weights sync every step (optional SFT warm-up first; --resume continues a run)"),
    "sft": (cmd_sft, "supervised fine-tuning on the FSDP learners on reasoning traces (sft.steps steps or sft.epochs "
                     "epochs; --resume continues); saves <output_dir>/sft"),
    "eval": (cmd_eval, "accuracy and format reward of model.path (or the tiny model) on the held-out split"),
    "synth": (cmd_synth, "VideoThinker trajectory synthesis in caption space, grounded to video; writes "
                         "<output_dir>/synth/trajectories.jsonl"),
    "demo": (cmd_demo, "the learning proof: fresh data, base eval, synthesis, SFT, eval, GRPO, eval, ablations and "
                       "controls (--controls: also the trained ones); writes <output_dir>/demo.json"),
    "plan": (cmd_plan, "the memory plan: per role (learner rank, rollout worker, driver) the predicted peak by "
                       "component on cluster.* (this machine where null); exit 0 when it fits, 2 when it does not "
                       "(train and sft refuse the same); --json for the machine-readable form"),
    "make-data": (cmd_make_data, "render the synthetic video dataset described by the data.* keys into data.dir "
                                 "(an empty or new folder, or one holding an earlier synthetic dataset)"),
}
# Two-word commands: `vthink data check`, `vthink config show`.
GROUPS = {
    "data": {"check": (cmd_data_check, "check every row of the configured data (fields, answer among options, the "
                                       "video exists and its header decodes) without loading a model; lists each "
                                       "bad row and counts per reason; exit 2 if the run would refuse them")},
    "config": {"show": (cmd_config_show, "print the resolved config (YAML) with every default")},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vthink", description="GRPO for video LLMs that think with videos.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("args", nargs="*", metavar="[config.yaml] [key=value ...]")
        if name in ("train", "sft"):
            where = "checkpoints" if name == "train" else "sft/checkpoints"
            p.add_argument("--resume", action="store_true",
                           help=f"continue from the newest checkpoint under <trainer.output_dir>/{where}")
        if name == "plan":
            p.add_argument("--json", action="store_true", help='print {"fits", "roles": {role: {"count", "device", '
                                                               '"peak_gib", "components"}}, ...} instead of the table')
        if name == "demo":
            p.add_argument("--controls", action="store_true",
                           help="also train the controls (sft_long, trained_blank, trained_no_tools) the same way")
    for group, actions in GROUPS.items():
        g = sub.add_parser(group, help=" / ".join(f"{group} {a}: {h.split(';')[0]}" for a, (_, h) in actions.items()))
        gsub = g.add_subparsers(dest="action", required=True, metavar="ACTION")
        for action, (_, help_text) in actions.items():
            p = gsub.add_parser(action, help=help_text, description=help_text, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
            p.add_argument("args", nargs="*", metavar="[config.yaml] [key=value ...]")
    p = sub.add_parser("bench", help="run a benchmark script from bench/ (prints a table, writes bench/results/*.json)",
                       description="Run bench/NAME.py with the remaining arguments, e.g. `vthink bench native`.")
    p.add_argument("name", help="a script in bench/: e2e, peer, demo, plan, learner_memory, learner_build, kernels, "
                                "native, decode, rollout, agent_reuse, sync, make_data, tiny_model or gpu_check")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed to the script")
    p = sub.add_parser("view", help="render a training run (metrics, reward plot, config) as an HTML page",
                       description="Write RUN_DIR/report.html from a `vthink train` output directory.")
    p.add_argument("run_dir", help="a trainer.output_dir, e.g. runs/tiny_cpu")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Flags may come anywhere among the overrides (`vthink demo CONFIG --controls data.seed=3`): argparse stops a
    # positional list at a flag, so whatever follows it is taken back here as more overrides.
    ns, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(ns, "args") or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        ns.args += extra
    if ns.command == "bench":
        return cmd_bench(ns.name, ns.bench_args)
    if ns.command == "view":
        return cmd_view(ns.run_dir)
    try:
        cfg = _load(ns.args)
    except ConfigError as e:
        print(f"vthink: config error: {e}", file=sys.stderr)
        return 2
    from engine.data.sources import DataCheckError
    from engine.orchestration.interrupt import Interrupted

    try:
        if ns.command in ("train", "sft", "eval", "synth"):  # commands that load the weights (run_demo does its own)
            from engine.recipes.reader import build_if_named

            build_if_named(cfg.model)
        if ns.command == "train":
            return cmd_train(cfg, resume=ns.resume)
        if ns.command == "sft":
            return cmd_sft(cfg, resume=ns.resume)
        if ns.command == "demo":
            return cmd_demo(cfg, controls=ns.controls)
        if ns.command == "plan":
            return cmd_plan(cfg, as_json=ns.json)
        if ns.command in GROUPS:
            return GROUPS[ns.command][ns.action][0](cfg)
        return COMMANDS[ns.command][0](cfg)
    except ConfigError as e:
        print(f"vthink: config error: {e}", file=sys.stderr)
        return 2
    except Interrupted:
        return 130  # the recipe said where it stopped and how to go on
    except KeyboardInterrupt:  # outside a training loop (loading, data checks, evals): nothing to keep
        print("\nvthink: interrupted", file=sys.stderr)
        return 130
    except DataCheckError as e:
        print(f"vthink: data check failed:\n{e}", file=sys.stderr)
        return 2
    except VthinkError as e:
        print(f"vthink: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
