"""Shared helpers for the rollout tests: a tiny dataset session and a scripted-policy backend."""
from __future__ import annotations

from engine.rollout.backend import Backend, Generation, Request


class ScriptedBackend(Backend):
    """Replays fixed model outputs: `script[seed]` is the text the policy "writes" for the backend call
    with that seed (the agent loop gives each (prompt, sample, turn) its own seed). Stops exactly like a
    real backend: on a stop token, or on the token that completes a stop string, or at max_new_tokens.
    Log-probs are -0.5 - 0.001 * position, so tests can check where they land. `fallback` (another
    backend) answers seeds the script does not know; without one, that is a KeyError."""

    def __init__(self, tokenizer, script: dict[int, str], fallback=None):
        self.tok = tokenizer
        self.script = {seed: tokenizer(text, add_special_tokens=False)["input_ids"] for seed, text in script.items()}
        self.fallback = fallback
        self.calls: list[Request] = []
        self.weight_version = 0

    def check(self, request: Request) -> None:
        if self.fallback is not None and request.params.seed not in self.script:
            self.fallback.check(request)

    def generate(self, requests: list[Request]) -> list[Generation]:
        self.calls.extend(requests)
        out: list[Generation | None] = [None] * len(requests)
        rest = [i for i, r in enumerate(requests) if r.params.seed not in self.script]
        if rest:
            if self.fallback is None:
                raise KeyError(f"no script for seed {requests[rest[0]].params.seed}")
            for i, g in zip(rest, self.fallback.generate([requests[i] for i in rest])):
                out[i] = g
        for i, r in enumerate(requests):
            if out[i] is None:
                out[i] = self._replay(self.script[r.params.seed], r)
        return out

    def _replay(self, ids: list[int], r: Request) -> Generation:
        p = r.params
        got: list[int] = []
        for t in ids:
            got.append(t)
            lp = [-0.5 - 0.001 * k for k in range(len(got))]
            if t in p.stop_token_ids:
                return Generation(got, lp, "stop", t)
            text = self.tok.decode(got, skip_special_tokens=False)
            for s in p.stop:
                if s in text:
                    return Generation(got, lp, "stop", s)
            if len(got) >= p.max_new_tokens:
                return Generation(got, lp, "length", None)
        return Generation(got, [-0.5 - 0.001 * k for k in range(len(got))], "length", None)

    def load_weights(self, named_tensors, version: int) -> None:
        self.weight_version = version
