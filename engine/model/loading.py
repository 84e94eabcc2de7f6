"""Loads the policy model + tokenizer: the embedded tiny model (cached on disk) or a local HF dir."""
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from engine.errors import ConfigError
from engine.video.spec import ARCHS

# transformers is imported where a model is built or loaded, not here: resolving a path (the driver's only
# use of this module) should not cost its import.
log = logging.getLogger(__name__)

TINY_NAMES = (None, "tiny")
READER = "tiny-reader"  # the tiny model after a text-only warm-up reading multiple-choice options
STAMP = "vthink_tiny.json"
# The reader is built by a training recipe (engine/recipes/reader.py: ensure_reader) before a command needs it; this
# layer only finds the build. Bump READER_VERSION when the warm-up's examples or recipe change, so cached readers
# are rebuilt.
READER_STEPS = 1600
READER_VERSION = 3
READER_STAMP = "vthink_reader.json"
# Bump when anything that changes the saved tiny model changes (corpus, config, template), so caches of
# older builds are rebuilt instead of silently reused.
TINY_FORMAT_VERSION = 1


def cache_root() -> Path:
    """Where built tiny models live: $VTHINK_CACHE, else ~/.cache/vthink."""
    env = os.environ.get("VTHINK_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vthink"




def tiny_stamp(seed: int, arch: str = "qwen2_5_vl") -> dict:
    """What a built tiny model's stamp file holds."""
    stamp = {"format_version": TINY_FORMAT_VERSION, "seed": seed}
    return stamp if arch == "qwen2_5_vl" else {**stamp, "arch": arch}


def _is_current(path: Path, seed: int, arch: str) -> bool:
    try:
        stamp = json.loads((path / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp == tiny_stamp(seed, arch)


def ensure_tiny(seed: int = 0, arch: str = "qwen2_5_vl") -> Path:
    """Path of the tiny model of `arch` for `seed`, building it once; safe when processes race.

    The model is written to a temporary sibling directory and renamed into place, so readers
    never see a half-written model; the stamp file is written last and checked on reuse.
    """
    if arch not in ARCHS:
        raise ConfigError("model.arch", f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    final = cache_root() / (f"tiny-{seed}" if arch == "qwen2_5_vl" else f"tiny-{arch}-{seed}")
    if _is_current(final, seed, arch):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{seed}-", dir=final.parent))
    try:
        from engine.model.tiny import save_tiny

        save_tiny(tmp, seed=seed, arch=arch)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be readable
        if final.exists() and not _is_current(final, seed, arch):
            # A stale build (older format): move it aside first, rename cannot replace a dir.
            stale = Path(tempfile.mkdtemp(prefix=f".stale-{seed}-", dir=final.parent))
            try:
                os.replace(final, stale / "old")
            except FileNotFoundError:  # another process moved it first
                pass
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_current(final, seed, arch):  # lost a race to a writer that left nothing usable
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def reader_dir(seed: int, arch: str, steps: int = READER_STEPS) -> Path:
    """Where the reading warm-up of the tiny model of `seed` / `arch` is cached."""
    name = f"tiny-reader-{seed}" if arch == "qwen2_5_vl" else f"tiny-reader-{arch}-{seed}"
    return cache_root() / (name if steps == READER_STEPS else f"{name}-{steps}steps")


def reader_stamp(seed: int, arch: str, steps: int = READER_STEPS) -> dict:
    """What a current reader build's stamp file holds (besides its held-out accuracy)."""
    return {"reader_version": READER_VERSION, "seed": seed, "arch": arch, "steps": steps}


def built_reader(seed: int, arch: str, steps: int = READER_STEPS) -> Path | None:
    """The cached reader of `seed` / `arch` when its stamp is current, else None."""
    path, want = reader_dir(seed, arch, steps), reader_stamp(seed, arch, steps)
    try:
        got = json.loads((path / READER_STAMP).read_text())
    except (OSError, ValueError):
        return None
    return path if {k: got.get(k) for k in want} == want else None


def model_dir(path: str | None, seed: int = 0, arch: str = "qwen2_5_vl") -> Path:
    """The local Hugging Face directory `path` names: None or "tiny" is the embedded tiny model of `arch` (built
    once), "tiny-reader" that model after its reading warm-up (built before a command starts: the CLI and the demo
    call engine/recipes/reader.py: ensure_reader). A real checkpoint's architecture is its config's; `arch` does
    not apply to it."""
    if path == READER:
        found = built_reader(seed, arch)
        if found is None:
            raise ConfigError("model.path", f"tiny-reader (seed {seed}, {arch}) is not built yet: `vthink train`, "
                                            "`sft`, `eval`, `synth` and `demo` build it before they start (once, a few "
                                            "minutes); in code, call engine.recipes.reader.ensure_reader first")
        return found
    return ensure_tiny(seed, arch) if path in TINY_NAMES else _resolve(path)


def checkpoint_name(name: str) -> str:
    """transformers 5 module path -> the name its save_pretrained writes (the original Qwen layout).

    `named_parameters()` says model.language_model.* / model.visual.*; checkpoints (and so a vLLM
    engine's startup weights) say model.* / visual.*. vLLM's loader takes either.
    """
    if name.startswith("model.language_model."):
        return "model." + name[len("model.language_model."):]
    if name.startswith("model.visual."):
        return name[len("model."):]
    return name


def policy_dir(model) -> Path:
    """The local directory of a config's `model` section: model.path, or the embedded tiny model of model.seed and
    model.arch. The one place a run's policy folder is worked out."""
    return model_dir(model.path, model.seed, model.arch)


def policy_spec(model):
    """The VisionSpec (patch grid, pixel statistics) of a config's `model` section, from its config.json."""
    from transformers import AutoConfig

    from engine.video.spec import vision_spec

    return vision_spec(AutoConfig.from_pretrained(policy_dir(model), local_files_only=True))


def _resolve(path: str) -> Path:
    local = Path(path).expanduser()
    if not local.is_dir():
        raise ConfigError("model.path", f"{path!r} is not a local directory (no model hub access "
                                        "here; give a directory written by save_pretrained, or 'tiny')")
    if not (local / "config.json").is_file():
        raise ConfigError("model.path", f"{str(local)!r} has no config.json; not a Hugging Face "
                                        "model directory")
    if "model_type" not in _json(local / "config.json"):
        newest = run_model(local)
        if newest is None:
            raise ConfigError("model.path", f"{str(local)!r} is not a Hugging Face model directory (its config.json "
                                            "has no model_type) nor a vthink run with a checkpoint or an sft/ policy")
        log.warning("model.path: %s is a vthink run; using its newest policy, %s", local, newest)
        return newest
    return local


def run_model(run: Path) -> Path | None:
    """The newest policy a vthink run folder holds: its last GRPO checkpoint, else its SFT export; None if neither."""
    steps = sorted(p for p in (run / "checkpoints").glob("step-*") if (p / "config.json").is_file())
    if steps:
        return steps[-1]
    sft = run / "sft"
    return sft if (sft / "config.json").is_file() and "model_type" in _json(sft / "config.json") else None


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_policy(path: str | None, dtype=None, seed: int = 0, arch: str = "qwen2_5_vl"):
    """(model in eval mode, tokenizer) from `path` (dtype: default float32); None or "tiny" means the embedded
    tiny model of `arch`."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    dtype = torch.float32 if dtype is None else dtype
    local = model_dir(path, seed, arch)
    # local_files_only: never reach for a hub, even if a name slips through.
    tokenizer = AutoTokenizer.from_pretrained(local, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(local, dtype=dtype, local_files_only=True)
    check_vocab(model.config, tokenizer)
    return model.eval(), tokenizer


# Checkpoints pad the embedding past the tokenizer (Qwen2.5-VL: 151936 rows for 151665 tokens); far more
# unused rows than this means the tokenizer is not the model's.
VOCAB_PADDING = 2048
SPECIAL_TOKENS = {"video_token_id": "<|video_pad|>", "image_token_id": "<|image_pad|>",
                  "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}


def check_vocab(config, tokenizer) -> None:
    """ConfigError("model.path") when tokenizer and model disagree: a token id without an embedding row, an
    embedding far larger than the tokenizer (its samples would decode to ''), or a vision token whose id
    differs between the model's config and the tokenizer (both ids named)."""
    vocab = getattr(getattr(config, "text_config", None), "vocab_size", None) or config.vocab_size
    n = len(tokenizer)
    if n > vocab:
        raise ConfigError("model.path", f"the tokenizer has {n} tokens but the model's embedding only {vocab} rows: "
                                        f"token ids {vocab}..{n - 1} have no embedding")
    if vocab - n > VOCAB_PADDING:
        raise ConfigError("model.path", f"the model's vocabulary has {vocab} rows but the tokenizer only {n} tokens: "
                                        f"sampled ids {n}..{vocab - 1} would decode to nothing; is this the "
                                        "model's own tokenizer?")
    for key, token in SPECIAL_TOKENS.items():
        want = getattr(config, key, None)
        got = tokenizer.convert_tokens_to_ids(token)
        if want is not None and got != want:
            raise ConfigError("model.path", f"{token} is id {got} in the tokenizer but config.{key} = {want}")
