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

    Any two entries differ: a hash collision (astronomically rare) is resolved by re-hashing the
    later coordinate with a salt, in a fixed order, so the table stays a pure function of its inputs.
    """

    def __init__(self, base: int, n_prompts: int, group_size: int, max_turns: int, first_prompt: int = 0):
        self.shape = (n_prompts, group_size, max_turns + 1)
        self._seeds: dict[tuple[int, int, int], int] = {}
        used: set[int] = set()
        for p in range(n_prompts):
            for s in range(group_size):
                for t in range(max_turns + 1):
                    salt, seed = 0, derive_seed(base, first_prompt + p, s, t)
                    while seed in used:
                        salt += 1
                        seed = derive_seed(base, first_prompt + p, s, t, salt)
                    used.add(seed)
                    self._seeds[(p, s, t)] = seed

    def __call__(self, prompt: int, sample: int, turn: int) -> int:
        if (prompt, sample, turn) not in self._seeds:
            raise IndexError(f"no seed for prompt {prompt}, sample {sample}, turn {turn}; table shape {self.shape}")
        return self._seeds[(prompt, sample, turn)]

    def all(self) -> list[int]:
        return list(self._seeds.values())
