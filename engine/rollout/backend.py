"""The generation backend contract shared by the transformers and vLLM backends.

A backend turns prompts (token ids plus the videos they reference, in order) into sampled
continuations. It never re-tokenises: token ids in, token ids out, with the log-prob of every
produced token. Weights are replaced in place, never by restarting the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Protocol

import torch

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


class Backend(Protocol):
    def generate(self, requests: list[Request]) -> list[Generation]: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> None: ...

    @property
    def weight_version(self) -> int: ...
