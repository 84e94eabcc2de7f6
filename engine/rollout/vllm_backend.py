"""Generation backend on vLLM's `LLM` engine: token ids + video embeddings in, sampled ids + log-probs out.

Implements engine.rollout.backend.Backend. Three vLLM facts shape it:

* Videos go in as embeddings. vLLM's Qwen2.5-VL takes a video either as raw frames (run through
  the HF video processor, i.e. resized and normalised again) or as `{"video_embeds",
  "video_grid_thw"}` with `enable_mm_embeds=True`. Our videos arrive already patchified
  (VideoInput.pixel_values), so the engine's own vision tower turns them into embeddings through
  a worker-extension RPC — the same, in-place-updated weights as the language model — and
  `second_per_grid_ts` rides along so M-RoPE sees real time.
* vLLM expands each `<|video_pad|>` itself, so every run of pads in our (already expanded)
  prompt is collapsed to one pad before it is sent, after checking its length against the grid.
  Qwen3-VL's videos are `<t seconds><|vision_start|>pads<|vision_end|>` per temporal patch
  (engine.model.video_tokens); the whole region is collapsed to what vLLM's processor expands, and
  the patch times ride along as `timestamps`, from which vLLM writes the same tokens back.
* Weights change in place: `collective_rpc` runs the workers' `reload_weights` (vLLM's layerwise
  in-place reload), then the prefix cache (KV computed with old weights) is dropped. The engine
  is never rebuilt.

`n=G`: requests that differ only in seed, with seeds s, s+1, ..., s+G-1, become one vLLM request
with n=G and seed s — vLLM seeds child i with s+i, so the result equals G separate requests.

Log-probs and stops follow engine.rollout.backend: `logprobs_mode="processed_logprobs"` with no
logit bias is log_softmax(logits / T) over the full vocabulary (vLLM's "raw" modes are taken before
temperature); `ignore_eos` leaves the ending of a turn to the request's stop ids, as in the
transformers backend; placeholder ids are stop ids whose token is cut from the output.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import torch

from engine.errors import ConfigError, VideoRequestError
from engine.rollout.backend import (Backend, Generation, Request, SamplingParams, check_params, combine_digests,
                                   placeholder_ids, tensor_digest)
from engine.rollout.batch import VideoInput
from engine.model.loading import checkpoint_name
from engine.model.video_tokens import patch_timestamps
from engine.video.spec import arch_of


class VthinkWorkerExtension:
    """Methods mixed into every vLLM worker (`worker_extension_cls`), called via `collective_rpc`."""

    def vthink_reload_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        """vLLM's layerwise in-place reload; if it fails midway, put the untouched layers back.

        The reload first moves every layer to the meta device and rebuilds each one as its
        weights arrive; an exception in between would leave meta tensors behind, so the
        finaliser (which restores the kept kernel tensors of layers that got nothing) runs anyway.
        """
        from vllm.model_executor.model_loader.reload.layerwise import finalize_layerwise_reload

        try:
            self.reload_weights(weights_iterator=named_tensors, is_checkpoint_format=True)
        except Exception:
            finalize_layerwise_reload(self.model_runner.get_model(), self.vllm_config.model_config)
            raise

    @torch.inference_mode()
    def vthink_video_embeds(self, pixel_values: torch.Tensor, grid_thw: list[list[int]]) -> torch.Tensor:
        """The vision tower's merged-patch embeddings of concatenated videos, on CPU."""
        from vllm.forward_context import set_forward_context

        model = self.model_runner.get_model()
        visual = model.visual
        device = next(visual.parameters()).device
        # Inside a forward context, as the engine runs its own encoder: vLLM's attention layers read it.
        with set_forward_context(None, self.vllm_config):
            embeds = visual(pixel_values.to(device=device, dtype=visual.dtype), grid_thw=grid_thw)
        return embeds.to("cpu")

    def vthink_param_pointers(self) -> dict[str, int]:
        """Storage address of every parameter: unchanged across a load means it was in place."""
        return {name: p.data_ptr() for name, p in self.model_runner.get_model().named_parameters()}


@dataclass(frozen=True)
class _TokenIds:
    video_pad: int
    image_pad: int
    vision_start: int
    vision_end: int
    vocab_size: int
    merge_size: int
    temporal_patch_size: int
    qwen3: bool  # videos as timestamped per-patch blocks (Qwen3-VL), else one run of pads (Qwen2.5-VL)


def _read_token_ids(model_dir: Path) -> _TokenIds:
    config = json.loads((model_dir / "config.json").read_text())
    text = {**config, **config.get("text_config", {})}  # older Qwen configs keep text keys at top level
    vision = config.get("vision_config", {})
    try:
        return _TokenIds(video_pad=config["video_token_id"], image_pad=config["image_token_id"],
                         vision_start=config["vision_start_token_id"], vision_end=config["vision_end_token_id"],
                         vocab_size=text["vocab_size"],
                         merge_size=vision.get("spatial_merge_size", 2),
                         temporal_patch_size=vision.get("temporal_patch_size", 2),
                         qwen3=arch_of(config.get("model_type")) == "qwen3_vl")
    except KeyError as e:
        raise ConfigError("model.path", f"{model_dir}/config.json has no {e.args[0]!r}; not a Qwen2.5-VL "
                                        "checkpoint") from None


def _video_target(ids: _TokenIds) -> list[int]:
    """What vLLM's Qwen3-VL processor replaces per video: the bare pad when transformers' processor expands only
    that (transformers >= 5.10, whose blocks nest inside the template's), else the whole vision block."""
    from transformers import ProcessorMixin
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    if getattr(Qwen3VLProcessor, "replace_video_token", None) not in (None, getattr(ProcessorMixin, "replace_video_token", None)):
        return [ids.video_pad]
    return [ids.vision_start, ids.video_pad, ids.vision_end]


def _checkpoint_shapes(model_dir: Path, digests: dict[str, bytes] | None = None) -> dict[str, tuple[int, ...]]:
    """{HF weight name: shape} of the safetensors checkpoint, read from the file headers only (and, given a
    `digests` dict, each tensor's tensor_digest under its checkpoint name)."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ConfigError("model.path", f"{str(model_dir)!r} has no *.safetensors weights")
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                shapes[name] = tuple(st.get_slice(name).get_shape())
                if digests is not None:
                    digests[checkpoint_name(name)] = tensor_digest(st.get_tensor(name))
    return shapes


def _video_digest(video: VideoInput) -> str:
    """Key of the embedding cache: the decode identity (file, frames, crop, size) when the video service gave one,
    which costs nothing; else a hash of the patches (hand-built inputs), which reads every byte."""
    if video.key is not None:
        return repr(video.key)
    h = hashlib.blake2b(digest_size=16)
    pv = video.pixel_values.detach().contiguous().cpu()
    h.update(str((tuple(pv.shape), str(pv.dtype), tuple(video.grid_thw))).encode())
    h.update(pv.view(torch.uint8).numpy().tobytes() if pv.numel() else b"")
    return h.hexdigest()


class VLLMBackend(Backend):
    """vLLM `LLM` engine behind the Backend contract; weights replaced in place, never restarted."""

    # load_weights reloads the engine layer by layer and drops its caches: a sync hands it every tensor at once,
    # not one call per bucket (engine/orchestration/actors.py).
    loads_once = True

    def __init__(self, model_path: str | Path, *, dtype: str = "bfloat16", seed: int = 0,
                 gpu_memory_utilization: float = 0.5, max_model_len: int = 8192, max_videos_per_prompt: int = 8,
                 enforce_eager: bool = False, in_process: bool = True, embed_cache_size: int = 64,
                 track_digest: bool = False, **engine_kwargs):
        path = Path(model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError("model.path", f"{str(path)!r} is not a local Hugging Face model directory "
                                            "(no config.json)")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError("model.dtype", f"expected float32, bfloat16 or float16, got {dtype!r}")
        if in_process:
            # Engine core in this process: collective_rpc hands tensors over without pickling, and no
            # spawned child has to re-import the caller's __main__.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM  # vLLM is installed only where this backend runs (GPU boxes, .venv-vllm)

        self.ids = _read_token_ids(path)
        self.max_model_len = int(max_model_len)
        # vLLM fuses and repacks weights, so its own tensors cannot be hashed in the HF layout: with
        # track_digest, the digest of every tensor the engine was given (at start and by load_weights).
        self._digests: dict[str, bytes] | None = {} if track_digest else None
        self._checkpoint_shapes = _checkpoint_shapes(path, self._digests)
        self.llm = LLM(
            model=str(path),
            dtype=dtype,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            enable_mm_embeds=True,
            # Our pixel values arrive normalised (engine.video); vLLM 0.32 otherwise expects raw
            # uint8 patches and normalises them again inside the vision tower.
            mm_device_do_normalize=False,
            limit_mm_per_prompt={"image": 0, "video": max_videos_per_prompt},
            # log_softmax(logits / T) of the sampled token: nothing else processes the logits (no
            # bias, no penalties), and top_p < 1 is refused by the config where it would matter.
            logprobs_mode="processed_logprobs",
            worker_extension_cls=f"{__name__}.VthinkWorkerExtension",
            **engine_kwargs,
        )
        self._version = 0
        self._embed_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._embed_cache_size = embed_cache_size
        # The pad id comes from the tokenizer, as in the transformers backend (Qwen configs often omit it).
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.placeholder_ids = placeholder_ids(AutoConfig.from_pretrained(path, local_files_only=True),
                                               self.tokenizer.pad_token_id)
        self._video_target = _video_target(self.ids) if self.ids.qwen3 else None

    @property
    def weight_version(self) -> int:
        return self._version

    # ---- weights -------------------------------------------------------------------------------

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        """Copy new weights (HF names, e.g. from `model.named_parameters()`) into the running engine.

        Runs the workers' `reload_weights`: vLLM's layerwise in-place reload, which loads the
        checkpoint-format tensors through the model's own loader (fusing q/k/v, gate/up), re-runs
        any post-load processing (e.g. the CPU backend's weight packing) and copies the result
        back into the existing storage. Weights not named keep their values. Names and shapes are
        checked against the checkpoint the engine started from before anything is sent, so a bad
        name or shape raises ValueError and changes nothing.
        """
        weights: list[tuple[str, torch.Tensor]] = []
        for name, tensor in named_tensors:
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(f"load_weights: {name!r} is a {type(tensor).__name__}, not a tensor")
            want = self._checkpoint_shapes.get(name, self._checkpoint_shapes.get(checkpoint_name(name)))
            if want is None:
                raise ValueError(f"load_weights: {name!r} is not a weight of this model's checkpoint "
                                 f"(expected Hugging Face names such as {next(iter(self._checkpoint_shapes))!r})")
            if tuple(tensor.shape) != want:
                raise ValueError(f"load_weights: {name!r} has shape {tuple(tensor.shape)}, the model's is {want}")
            weights.append((name, tensor.detach()))
        self.llm.collective_rpc("vthink_reload_weights", args=(weights,))
        if self._digests is not None:
            self._digests.update((checkpoint_name(n), tensor_digest(t)) for n, t in weights)
        # KV blocks and video embeddings computed with the old weights must not be reused.
        self.llm.reset_prefix_cache()
        self.llm.reset_mm_cache()
        self._embed_cache.clear()
        self._version = int(version)

    def weights_digest(self) -> str:
        """engine.rollout.backend.weights_digest of the weights the engine was given (checkpoint names)."""
        if self._digests is None:
            raise RuntimeError("VLLMBackend.weights_digest needs the backend built with track_digest=True (off in "
                               "`vthink train`: it hashes every received tensor on the host, a cost on each sync)")
        return combine_digests(self._digests)

    def param_pointers(self) -> dict[str, int]:
        """Worker 0's parameter storage addresses (vLLM names); equal before/after load_weights = in place."""
        return self.llm.collective_rpc("vthink_param_pointers")[0]

    # ---- generation ----------------------------------------------------------------------------

    def check(self, request: Request) -> None:
        """VideoRequestError / ValueError when the engine would refuse `request`: a malformed prompt or video, bad
        sampling parameters, or a prompt that leaves no room under max_model_len."""
        self._prompt_ids(0, request)
        self._check_params(0, request.params)
        if len(request.prompt_ids) >= self.max_model_len:
            raise VideoRequestError(f"the prompt holds {len(request.prompt_ids)} tokens, the engine's max_model_len is "
                                    f"{self.max_model_len} (rollout.max_model_len)")

    def generate(self, requests: list[Request]) -> list[Generation]:
        if not requests:
            return []
        from vllm.inputs import TokensPrompt

        prompts = [self._prompt_ids(i, r) for i, r in enumerate(requests)]
        for i, r in enumerate(requests):
            self._check_params(i, r.params)
        digests = [[_video_digest(v) for v in r.videos] for r in requests]
        self._embed_missing(requests, digests)

        # Group requests equal but for seed whose seeds run s, s+1, ...: one vLLM request with n=len(run).
        runs: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            key = (tuple(prompts[i]), tuple(digests[i]), replace(r.params, seed=0))
            runs.setdefault(key, []).append(i)
        groups: list[list[int]] = []
        for members in runs.values():
            members.sort(key=lambda i: requests[i].params.seed)
            run = [members[0]]
            for i in members[1:]:
                if requests[i].params.seed == requests[run[-1]].params.seed + 1:
                    run.append(i)
                else:
                    groups.append(run)
                    run = [i]
            groups.append(run)

        vllm_prompts, vllm_params = [], []
        for group in groups:
            first = requests[group[0]]
            prompt = TokensPrompt(prompt_token_ids=prompts[group[0]])
            if first.videos:
                prompt["multi_modal_data"] = {"video": self._video_data(first.videos, digests[group[0]])}
            vllm_prompts.append(prompt)
            # The context ends the continuation at max_model_len, as max_new_tokens would (finish "length").
            room = self.max_model_len - len(first.prompt_ids)
            vllm_params.append(self._sampling_params(replace(first.params, max_new_tokens=min(
                first.params.max_new_tokens, max(room, 1))), n=len(group)))
        outputs = self.llm.generate(vllm_prompts, vllm_params, use_tqdm=False)

        results: list[Generation | None] = [None] * len(requests)
        for group, out in zip(groups, outputs):
            completions = sorted(out.outputs, key=lambda c: c.index)
            for i, completion in zip(group, completions):
                results[i] = self._generation(completion)
        return results  # type: ignore[return-value]

    def _prompt_ids(self, index: int, request: Request) -> list[int]:
        """Validate the prompt and collapse each run of video pads to the one pad vLLM expands itself."""
        ids = request.prompt_ids
        if not ids:
            raise ValueError(f"request {index}: prompt_ids is empty")
        vocab = self.ids.vocab_size
        bad = next((t for t in ids if not (isinstance(t, int) and 0 <= t < vocab)), None)
        if bad is not None:
            raise ValueError(f"request {index}: prompt token {bad!r} is not an id in [0, {vocab})")
        if self.ids.image_pad in ids:
            raise VideoRequestError(f"request {index}: image inputs (<|image_pad|>) are not supported by this backend")
        for k, video in enumerate(request.videos):
            t, h, w = (int(x) for x in video.grid_thw)
            if video.pixel_values.ndim != 2 or video.pixel_values.shape[0] != t * h * w:
                raise VideoRequestError(f"request {index}, video {k}: pixel_values shape "
                                        f"{tuple(video.pixel_values.shape)} does not match grid "
                                        f"{tuple(video.grid_thw)} ({t * h * w} patches)")
        if self.ids.qwen3:
            return self._collapse_timestamped(index, request)
        out: list[int] = []
        runs: list[int] = []
        for t in ids:
            if t == self.ids.video_pad:
                if out and out[-1] == self.ids.video_pad:
                    runs[-1] += 1
                    continue
                runs.append(1)
            out.append(t)
        if len(runs) != len(request.videos):
            raise VideoRequestError(f"request {index}: {len(runs)} runs of <|video_pad|> in the prompt but "
                                    f"{len(request.videos)} videos; give one video per run, in order")
        merge = self.ids.merge_size
        for k, (run, video) in enumerate(zip(runs, request.videos)):
            t, h, w = (int(x) for x in video.grid_thw)
            want = t * h * w // (merge * merge)
            if run != want:
                raise VideoRequestError(f"request {index}, video {k}: {run} <|video_pad|> tokens but grid "
                                        f"{tuple(video.grid_thw)} needs {want} (t*h*w/{merge * merge})")
            if not video.second_per_grid_t > 0:
                raise VideoRequestError(f"request {index}, video {k}: second_per_grid_t must be > 0, "
                                        f"got {video.second_per_grid_t}")
        return out

    def _collapse_timestamped(self, index: int, request: Request) -> list[int]:
        """Qwen3-VL: each video's blocks, checked to be exactly `<t seconds><|vision_start|>` + h*w/merge**2 pads +
        `<|vision_end|>` per temporal patch, collapsed to the placeholder vLLM's processor expands. vLLM
        tokenizes each timestamp alone, so the check also catches a timestamp merged with the text before it."""
        ids, pad = request.prompt_ids, self.ids.video_pad
        out: list[int] = []
        i = 0
        for k, video in enumerate(request.videos):
            t, h, w = (int(x) for x in video.grid_thw)
            n = h * w // self.ids.merge_size**2
            blocks: list[int] = []
            for stamp in self._timestamps(index, k, video):
                blocks += self.tokenizer.encode(f"<{stamp:.1f} seconds>", add_special_tokens=False)
                blocks += [self.ids.vision_start] + [pad] * n + [self.ids.vision_end]
            try:
                first_pad = ids.index(pad, i)
            except ValueError:
                raise VideoRequestError(f"request {index}: the prompt holds the pads of {k} videos but "
                                        f"{len(request.videos)} videos are given") from None
            start = first_pad - blocks.index(pad)
            if start < i or ids[start:start + len(blocks)] != blocks:
                raise VideoRequestError(
                    f"request {index}, video {k}: the prompt does not hold its {t} blocks of `<t seconds>"
                    f"<|vision_start|>` + {n} <|video_pad|> + `<|vision_end|>` (grid {(t, h, w)}, Qwen3-VL layout)")
            out += ids[i:start] + self._video_target
            i = start + len(blocks)
        if pad in ids[i:]:
            raise VideoRequestError(f"request {index}: <|video_pad|> tokens after the last of its "
                                    f"{len(request.videos)} videos")
        return out + ids[i:]

    def _timestamps(self, index: int, k: int, video: VideoInput) -> list[float]:
        stamps = patch_timestamps(video.frame_times_s, self.ids.temporal_patch_size)
        if len(stamps) != video.grid_thw[0]:
            raise VideoRequestError(f"request {index}, video {k}: {len(video.frame_times_s)} frame times make "
                                    f"{len(stamps)} temporal patches, the grid has {video.grid_thw[0]}")
        return stamps

    @staticmethod
    def _check_params(index: int, p: SamplingParams) -> None:
        try:
            check_params(p)
        except ValueError as e:
            raise ValueError(f"request {index}: {e}") from None

    def _embed_missing(self, requests: list[Request], digests: list[list[str]]) -> None:
        """Run the engine's vision tower once per distinct video not yet cached (one RPC for all)."""
        todo: dict[str, VideoInput] = {}
        for r, ds in zip(requests, digests):
            for v, d in zip(r.videos, ds):
                if d not in self._embed_cache:
                    todo.setdefault(d, v)
        if not todo:
            return
        videos = list(todo.values())
        pixels = torch.cat([v.pixel_values for v in videos])
        grids = [[int(x) for x in v.grid_thw] for v in videos]
        embeds = self.llm.collective_rpc("vthink_video_embeds", args=(pixels, grids))[0]
        merge = self.ids.merge_size ** 2
        sizes = [t * h * w // merge for t, h, w in grids]
        for d, e in zip(todo, embeds.split(sizes)):
            self._embed_cache[d] = e
        while len(self._embed_cache) > max(self._embed_cache_size, len(todo)):
            self._embed_cache.popitem(last=False)

    def _video_data(self, videos: list[VideoInput], digests: list[str]) -> dict[str, torch.Tensor]:
        for d in digests:
            self._embed_cache.move_to_end(d)
        data = {
            "video_embeds": torch.cat([self._embed_cache[d] for d in digests]),
            "video_grid_thw": torch.tensor([list(v.grid_thw) for v in videos], dtype=torch.long),
        }
        if self.ids.qwen3:  # time is text: the patch times vLLM writes before each block
            data["timestamps"] = [torch.tensor(self._timestamps(0, k, v), dtype=torch.float64)
                                  for k, v in enumerate(videos)]
        else:
            data["second_per_grid_ts"] = torch.tensor([float(v.second_per_grid_t) for v in videos], dtype=torch.float32)
        return data

    def _sampling_params(self, p: SamplingParams, n: int):
        from vllm import SamplingParams as VSamplingParams

        return VSamplingParams(
            n=n,
            temperature=p.temperature,
            top_p=p.top_p,
            max_tokens=p.max_new_tokens,
            seed=p.seed,
            stop=list(p.stop) or None,
            stop_token_ids=sorted(set(p.stop_token_ids) | self.placeholder_ids),
            ignore_eos=True,
            include_stop_str_in_output=True,
            logprobs=0,  # the sampled token's own log-prob only
        )

    def _generation(self, completion) -> Generation:
        ids = list(completion.token_ids)
        logprobs = [float(step[tok].logprob) for tok, step in zip(ids, completion.logprobs)]
        if completion.finish_reason == "stop" and ids and ids[-1] in self.placeholder_ids:
            return Generation(token_ids=ids[:-1], logprobs=logprobs[:-1], finish_reason="stop", stop=ids[-1])
        finish = completion.finish_reason
        if finish not in ("stop", "length"):
            raise RuntimeError(f"vLLM ended a request with finish_reason={finish!r}")
        stop: str | int | None = completion.stop_reason
        if finish == "stop" and stop is None and ids:
            stop = ids[-1]  # the model's end-of-sequence token
        return Generation(token_ids=ids, logprobs=logprobs, finish_reason=finish,
                          stop=stop if finish == "stop" else None)
