"""The generation backend contract shared by the transformers and vLLM backends.

A backend turns prompts (token ids plus the videos they reference, in order) into sampled
continuations. It never re-tokenises: token ids in, token ids out, with the log-prob of every
produced token. Weights are replaced in place, never by restarting the engine.

The rules every backend keeps, so that a trajectory means the same whichever backend sampled it:

* A produced token's log-prob is the learner's quantity: log_softmax(logits / T) over the full
  vocabulary (T = 0 is greedy decoding; its log-probs are then those of T = 1). Nothing is masked or
  biased: with top_p = 1 that is exactly the distribution sampled from.
* Stops: a continuation ends at one of the request's stop_token_ids or stop strings (kept at the end
  of the output), at max_new_tokens, or at a placeholder id (`placeholder_ids`: vision markers and the
  pad token, which only the engine may insert). A sampled placeholder is cut from the output and
  reported as `stop`. The model's own end-of-sequence ids from its generation config are *not*
  stops: the caller says which ids end a turn.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

import torch

from engine.model.loading import checkpoint_name
from engine.rollout.batch import VideoInput


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0  # per request: the same seed and prompt reproduce the same continuation on a backend
    stop: tuple[str, ...] = ()  # stop strings; the matched string is kept at the end of the output
    stop_token_ids: tuple[int, ...] = ()  # kept at the end of the output too


@dataclass
class Request:
    prompt_ids: list[int]
    videos: list[VideoInput] = field(default_factory=list)  # one per <|video_pad|> run, in order
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class Generation:
    token_ids: list[int]  # produced ids, ending with the stop token / stop string when one was hit
    logprobs: list[float]  # log-prob of each produced id under the sampling distribution
    finish_reason: str  # "stop" (stop token or string) or "length" (max_new_tokens)
    stop: str | int | None = None  # the stop string or stop token id that ended it


class Backend:
    """The contract every backend implements (HFBackend, VLLMBackend, the SFT replay's TeacherBackend, test doubles).
    What callers may rely on is declared here, never probed with getattr."""

    # True when load_weights needs the whole state in one call (vLLM reloads it); False when it takes each
    # bucket of a sync as it arrives, into the model's own tensors (transformers)
    loads_once: bool = False
    weight_version: int = 0  # the version of the weights held (set by load_weights)

    def check(self, request: Request) -> None:
        """Raise VideoRequestError / ValueError, naming what is wrong, when this request cannot run as given (the
        agent loop then fails that sample alone instead of the whole batch)."""
        raise NotImplementedError

    def generate(self, requests: list[Request]) -> list[Generation]:
        raise NotImplementedError

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        raise NotImplementedError

    def weights_digest(self) -> str:
        raise NotImplementedError

    def pop_phases(self) -> dict[str, float]:
        """Seconds per phase (vision tower, prefill, sampling) since the last call; {} when not timed."""
        return {}

    def episodes_done(self) -> None:
        """A rollout's episodes are over: no later request continues them (state kept for them may go)."""


def placeholder_ids(config, pad_id: int | None) -> frozenset[int]:
    """Ids only the engine inserts: vision markers (a sampled <|video_pad|> would misalign the video
    features) and the pad token. A backend that samples one ends the continuation before it."""
    ids = {config.video_token_id, config.image_token_id, config.vision_start_token_id,
           getattr(config, "vision_end_token_id", None), pad_id}
    return frozenset(i for i in ids if i is not None)


def check_params(p: SamplingParams) -> None:
    """The one validation of SamplingParams, for every backend."""
    if p.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {p.max_new_tokens}")
    if not p.temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {p.temperature}")
    if not 0 < p.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p.top_p}")
    if any(not s for s in p.stop):
        raise ValueError("stop strings must be non-empty")


def tensor_digest(t: torch.Tensor) -> bytes:
    """BLAKE2b of a tensor's raw bytes (dtype and shape included)."""
    t = t.detach().cpu().contiguous()
    h = hashlib.blake2b(f"{t.dtype}{tuple(t.shape)}".encode(), digest_size=16)
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()


def combine_digests(digests: dict[str, bytes]) -> str:
    """One hex digest over {name: tensor_digest} in name order: equal digests, bit-equal weights."""
    h = hashlib.sha256()
    for name in sorted(digests):
        h.update(name.encode() + b"\0" + digests[name])
    return h.hexdigest()


def weights_digest(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """combine_digests of (name, tensor) pairs under checkpoint names: comparable between a learner, an HF
    backend and a vLLM backend."""
    return combine_digests({checkpoint_name(name): tensor_digest(t) for name, t in named_tensors})
