"""Distinct, reproducible sampling seeds per (base seed, prompt, sample, turn), collision-checked."""
from __future__ import annotations

import hashlib

_MASK = (1 << 63) - 1  # non-negative int64: every backend (torch, vLLM) takes it


def derive_seed(base: int, prompt: int, sample: int, turn: int, salt: int = 0) -> int:
    """A 63-bit seed hashed from its coordinates: neighbouring coordinates give unrelated seeds."""
    key = f"{base}/{prompt}/{sample}/{turn}/{salt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & _MASK


class SeedTable:
    """Seeds for one rollout call: n_prompts x group_size samples, each up to max_turns + 1 turns.

    `first_prompt` is the call's offset in the step, so calls that split one step's prompts between
    rollout workers derive their seeds from the prompts' positions in the whole step.

    The G samples of one (prompt, turn) get consecutive seeds h, h + 1, ..., h + G - 1 from one hash
    h: a backend can then send a group's identical first-turn prompts as one request with n = G (vLLM
    seeds child i with h + i), and each sample still reproduces alone. Any two entries differ: a block
    that would overlap an earlier one (astronomically rare) is re-hashed with a salt, in a fixed
    order, so the table stays a pure function of its inputs.
    """

    def __init__(self, base: int, n_prompts: int, group_size: int, max_turns: int, first_prompt: int = 0):
        self.shape = (n_prompts, group_size, max_turns + 1)
        self._seeds: dict[tuple[int, int, int], int] = {}
        used: set[int] = set()
        for p in range(n_prompts):
            for t in range(max_turns + 1):
                salt, h = 0, derive_seed(base, first_prompt + p, 0, t)
                while h + group_size - 1 > _MASK or any(h + s in used for s in range(group_size)):
                    salt += 1
                    h = derive_seed(base, first_prompt + p, 0, t, salt)
                for s in range(group_size):
                    used.add(h + s)
                    self._seeds[(p, s, t)] = h + s

    def __call__(self, prompt: int, sample: int, turn: int) -> int:
        if (prompt, sample, turn) not in self._seeds:
            raise IndexError(f"no seed for prompt {prompt}, sample {sample}, turn {turn}; table shape {self.shape}")
        return self._seeds[(prompt, sample, turn)]

    def all(self) -> list[int]:
        return list(self._seeds.values())
