"""The embedded tiny model's reading warm-up (`model.path: tiny-reader`).

The embedded model starts from random weights: it knows no language, so it cannot read a multiple-choice question's
options, and with options shuffled per row it never learns to from the demo's few hundred trajectories (it names the
box's colour but not its letter; measured in ../shared/notes and the #25 notes). A real VLM comes with that skill.
This gives the tiny model the skill, from text alone, before it ever sees a video:

    user:      What color is the box that appears briefly?  A. blue  B. yellow  C. red  D. green  ...
    assistant: <time>01:02-01:04</time> <caption>a red box</caption>    (given: not learned here)
               <think>A. blue no. B. yellow no. C. red yes.</think> <answer>C</answer>    (learned)

The caption, which names the colour, is part of the prompt here and never a target: *which* colour the box is has
to come from the frames later (trained_blank, which sees blank frames, stays at chance). Fresh random examples
every step; 1000 steps of 16 take about 5 minutes on 2 cores and reach 1.00 on held-out examples. The result is
cached beside the tiny model, keyed by seed, architecture and READER_VERSION.
"""
from __future__ import annotations

import fcntl
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from engine.data.glimpse import COLOURS, QUESTION
from engine.data.schema import QARow
from engine.model.loading import cache_root, ensure_tiny
from engine.rollout.prompt import AGENT_PROMPT, SYSTEM_PROMPT, question_text
from engine.synth.planner import scan_options

READER_STEPS = 1000
READER_VERSION = 1  # bump when the examples or the recipe change, so cached readers are rebuilt
BATCH, LR = 16, 1e-3
STAMP = "vthink_reader.json"


def example(rng: random.Random, tokenizer) -> tuple[str, str, str]:
    """(prompt text with the given time and caption, target text, answer letter) of one fresh question."""
    options = list(COLOURS)
    rng.shuffle(options)
    colour = rng.choice(options)
    letter = "ABCD"[options.index(colour)]
    row = QARow("reader", "reader", Path("reader.mp4"), "mcq", QUESTION, options, letter, None, "train")
    messages = [{"role": "system", "content": rng.choice([SYSTEM_PROMPT, AGENT_PROMPT])},
                {"role": "user", "content": [{"type": "text", "text": question_text(row)}]}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    a = rng.randrange(0, 110)
    b = a + rng.randrange(1, 4)
    given = f"<time>{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}</time> <caption>a {colour} box</caption> "
    target = f"<think>{scan_options(list(zip('ABCD', options)), colour)}</think> <answer>{letter}</answer><|im_end|>"
    return prompt + given, target, letter


def warm_up(model, tokenizer, steps: int, seed: int, log=print) -> float:
    """Train `model` on `steps` batches of fresh examples; returns greedy accuracy on 64 held-out ones."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    pad = tokenizer.pad_token_id
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        pairs = [[tokenizer(t, add_special_tokens=False)["input_ids"] for t in example(rng, tokenizer)[:2]]
                 for _ in range(BATCH)]
        n = max(len(p) + len(t) for p, t in pairs)
        ids = torch.full((BATCH, n), pad)
        labels = torch.full((BATCH, n), -100)
        mask = torch.zeros(BATCH, n, dtype=torch.long)
        for i, (p, t) in enumerate(pairs):
            ids[i, :len(p) + len(t)] = torch.tensor(p + t)
            labels[i, len(p):len(p) + len(t)] = torch.tensor(t)
            mask[i, :len(p) + len(t)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if (step + 1) % 200 == 0 or step + 1 == steps:
            log(f"reader warm-up {step + 1}/{steps} | loss {loss.item():.4f} | {time.perf_counter() - t0:.0f} s")
    model.eval()
    held = random.Random(seed + 10_000)
    right = 0
    with torch.no_grad():
        for _ in range(64):
            prompt, _, letter = example(held, tokenizer)
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
            out = model.generate(ids, max_new_tokens=40, do_sample=False)
            right += f"<answer>{letter}</answer>" in tokenizer.decode(out[0, ids.shape[1]:])
    return right / 64


def ensure_reader(seed: int = 0, arch: str = "qwen2_5_vl", steps: int = READER_STEPS, log=print) -> Path:
    """The tiny model of `seed` / `arch` after the reading warm-up, built once (a file lock keeps racing processes
    from building it twice) and reused while its stamp matches."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    name = f"tiny-reader-{seed}" if arch == "qwen2_5_vl" else f"tiny-reader-{arch}-{seed}"
    final = cache_root() / (name if steps == READER_STEPS else f"{name}-{steps}steps")
    stamp = {"reader_version": READER_VERSION, "seed": seed, "arch": arch, "steps": steps}

    def current() -> bool:
        try:
            got = json.loads((final / STAMP).read_text())
        except (OSError, ValueError):
            return False
        return {k: got.get(k) for k in stamp} == stamp

    if current():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then reuse its result
        if current():
            return final
        tiny = ensure_tiny(seed, arch)
        log(f"building {final.name}: the tiny model after {steps} steps of text-only option reading (once; cached)")
        model = AutoModelForImageTextToText.from_pretrained(tiny, dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
        accuracy = warm_up(model, tokenizer, steps, seed, log)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
        try:
            shutil.copytree(tiny, tmp, dirs_exist_ok=True)  # tokenizer, processor files, generation config
            model.save_pretrained(tmp)
            (tmp / STAMP).write_text(json.dumps({**stamp, "heldout_accuracy": accuracy}) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"{final.name}: held-out option reading {accuracy:.2f}")
    return final
