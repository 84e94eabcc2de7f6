"""Atomic learner checkpoints: HF safetensors model, sharded optimizer, scheduler, per-rank RNG, step and extra.

Layout of <root>/step-<NNNNNNNN>/ (a directory plain `from_pretrained` loads as a model):
  config.json, generation_config.json, model*.safetensors, tokenizer files, processor files  (the policy, in
                      model.dtype, for from_pretrained / AutoProcessor / vLLM)
  optimizer/          torch.distributed.checkpoint (DCP) of the fp32 master weights and the AdamW state, one
                      file per rank; DCP reshards on load, so a different world size can resume
  scheduler.pt        LR scheduler state
  rng/rank-<r>.pt     torch (CPU and CUDA), Python `random` and NumPy generator states of rank r
  trainer_state.json  step, skipped updates, world size and the caller's `extra` (e.g. dataloader position)

Writes go to <root>/.tmp-step-<N> and are renamed into place once every rank has finished, so a crash never
leaves a directory that looks complete; older step directories beyond `keep_checkpoints` are deleted. The
root must be on a filesystem every rank sees (as DCP requires anyway).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from engine.learner.errors import CheckpointError
from engine.model.loading import policy_dir

if TYPE_CHECKING:
    from engine.learner.fsdp import FSDPLearner

PREFIX = "step-"
STATE = "trainer_state.json"
FORMAT_VERSION = 2  # 2: the fp32 master weights live in optimizer/ (the HF files are in model.dtype)
# Files of a model folder that are neither weights nor config nor tokenizer: the processor's, so a saved
# folder loads with plain AutoProcessor (and vLLM) like the one it came from.
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json",
                   "chat_template.json", "chat_template.jinja")


def copy_processor_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the processor files `src` has into `dst` (existing ones are replaced); returns their names."""
    copied = []
    for name in PROCESSOR_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
            copied.append(name)
    return copied


def write_frame_policy(folder: str | os.PathLike, video) -> None:
    """Make the saved video processor sample and size clips as training did (a VideoConfig's fps, min / max frames
    and max pixels), so plain transformers inference sees the frames the policy was trained on."""
    from engine.video.policy import FramePolicy

    file = Path(folder) / "video_preprocessor_config.json"
    if not file.is_file():
        return
    config = json.loads(file.read_text())
    min_pixels = FramePolicy().min_pixels
    config.update(do_sample_frames=True, fps=video.fps, min_frames=video.min_frames, max_frames=video.max_frames)
    if config.get("video_processor_type") == "Qwen3VLVideoProcessor":
        # Qwen3-VL's processor budgets the whole clip (frames x height x width), vthink each frame.
        config["size"] = {"shortest_edge": min_pixels * video.min_frames,
                          "longest_edge": video.max_pixels * video.max_frames}
    else:
        config.update(min_pixels=min_pixels, max_pixels=video.max_pixels,
                      size={"shortest_edge": min_pixels, "longest_edge": video.max_pixels})
    file.write_text(json.dumps(config, indent=2) + "\n")


def step_dir(root: str | os.PathLike, step: int) -> Path:
    return Path(root) / f"{PREFIX}{step:08d}"


def complete_steps(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories under root, oldest first (temporary ones start with '.')."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()
             and (p / STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory under root, or None."""
    steps = complete_steps(root)
    return steps[-1] if steps else None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = [kind, keys.tolist(), pos, has_gauss, gauss]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _source_dir(learner: FSDPLearner) -> Path:
    return policy_dir(learner.spec.model)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(learner: FSDPLearner, root: str | os.PathLike, extra: dict) -> Path:
    """Write learner state + `extra` to <root>/step-<learner.step> atomically; collective, returns the path."""
    # DCP is imported here, not at the top: the driver imports this module (for `latest`) and never saves.
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    try:
        extra_json = json.dumps(extra)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint extra must be JSON-serialisable: {e}") from e
    rank = learner.rank
    root = Path(root)
    final = step_dir(root, learner.step)
    tmp = root / f".tmp-{final.name}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a crash while saving this very step
        (tmp / "rng").mkdir(parents=True)
    dist.barrier()

    try:
        # The model, gathered tensor by tensor (every rank takes part), written by rank 0 in HF layout.
        export_hf(learner, tmp)  # model.dtype on disk; the fp32 master copy goes into the DCP state below
        dcp.save({"model": get_model_state_dict(learner.policy),
                  "optim": get_optimizer_state_dict(learner.policy, learner.optimizer)},
                 checkpoint_id=str(tmp / "optimizer"))
        torch.save(rng_state(), tmp / "rng" / f"rank-{rank}.pt")
        if rank == 0:
            torch.save(learner.scheduler.state_dict(), tmp / "scheduler.pt")
            state = {"format_version": FORMAT_VERSION, "step": learner.step, "skipped": learner.skipped,
                     "world_size": learner.world_size, "extra": json.loads(extra_json)}
            (tmp / STATE).write_text(json.dumps(state, indent=1) + "\n")
    except (Exception, CheckpointException) as e:  # a full disk, a folder gone: the checkpoints before stay as they are
        # (a full disk reaches here as OSError, or as DCP's CheckpointException, a BaseException, around a RuntimeError
        # of torch's zip writer)
        free = shutil.disk_usage(root).free if root.is_dir() else 0
        shutil.rmtree(tmp, ignore_errors=True)  # the space it took is needed back
        newest = latest(root)
        if isinstance(e, CheckpointException) and e.failures:  # {rank: (exception, stack)}: the first rank's
            e = next(iter(e.failures.values()))[0]
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise CheckpointError(f"could not write the checkpoint of step {learner.step} under {root} "
                              f"({free / 2**20:.1f} MiB were free there): {type(e).__name__}: {first[:200]}; "
                              + (f"the newest complete checkpoint, {newest}, is intact" if newest else
                                 "no earlier checkpoint exists")) from e
    dist.barrier()

    if rank == 0:
        if final.exists():  # saving the same step again: rename cannot replace a non-empty directory
            old = root / f".old-{final.name}"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(root)
        for stale in complete_steps(root)[:-learner.options.keep_checkpoints]:
            shutil.rmtree(stale, ignore_errors=True)
    dist.barrier()
    return final


def export_hf(learner: FSDPLearner, path: str | os.PathLike) -> Path:
    """The policy as a Hugging Face folder at `path`: weights in model.dtype, config, tokenizer and processor
    files, loadable with plain from_pretrained / AutoProcessor / vLLM. Collective (every rank gathers its
    shards); rank 0 writes."""
    path = Path(path)
    dtype = getattr(torch, learner.spec.model.dtype)
    full = {}
    for name, tensor in learner.named_full_tensors():
        if learner.rank == 0:
            full[name] = tensor.to("cpu", dtype if tensor.is_floating_point() else tensor.dtype)
    if learner.rank == 0:
        path.mkdir(parents=True, exist_ok=True)
        learner.hf.save_pretrained(path, state_dict=full)
        learner.tokenizer.save_pretrained(path)
        config = json.loads((path / "config.json").read_text())
        config["dtype"] = learner.spec.model.dtype  # what the weights hold, not the fp32 of the master copy
        (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        copy_processor_files(_source_dir(learner), path)
        write_frame_policy(path, learner.spec.video)
    del full
    dist.barrier()
    return path


def load(learner: FSDPLearner, path: str | os.PathLike) -> dict:
    """Restore learner state from a step directory (or the newest under a root); collective, returns `extra`."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)

    path = Path(path)
    if not (path / STATE).is_file():
        newest = latest(path)
        if newest is None:
            raise CheckpointError(f"{path} is neither a checkpoint directory nor a root holding one")
        path = newest
    state = json.loads((path / STATE).read_text())
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {state.get('format_version')}, expected {FORMAT_VERSION}")

    # Templates in this run's sharding; DCP fills them from whatever sharding wrote the files.
    msd = get_model_state_dict(learner.policy)
    osd = get_optimizer_state_dict(learner.policy, learner.optimizer)
    dcp.load({"model": msd, "optim": osd}, checkpoint_id=str(path / "optimizer"))
    set_model_state_dict(learner.policy, msd)
    set_optimizer_state_dict(learner.policy, learner.optimizer, osd)
    learner.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))

    rng_file = path / "rng" / f"rank-{learner.rank % state['world_size']}.pt"
    set_rng_state(torch.load(rng_file, weights_only=True))
    learner.step = int(state["step"])
    learner.skipped = int(state["skipped"])
    dist.barrier()
    return state["extra"]
