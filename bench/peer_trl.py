"""TRL's GRPOTrainer on the rows `bench/peer.py` prepared: run inside the TRL virtualenv (bench/peer_venv.sh), never
imported by vthink. Prints one line per optimizer step, `step <n> <seconds since start> <completion tokens>`.

    .venv-trl/bin/python bench/peer_trl.py --data DIR --model DIR --steps 6 [--group 4 --prompts 4 ...]

DIR (--data) holds rows.pkl (the QARow of each prompt, vthink's own) and prompts.json (per row: system prompt, user
text, image files). The reward is vthink's (engine.reward.score: accuracy + format, the same weights), so both
trainers chase the same number.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # engine.reward and engine.data.schema, for the reward only


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, every core)")
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from engine.reward import score

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    rows = pickle.loads((data / "rows.pkl").read_bytes())
    prompts = json.loads((data / "prompts.json").read_text())
    records = []
    for i, p in enumerate(prompts):
        content = [{"type": "image"} for _ in p["images"]] + [{"type": "text", "text": p["user"]}]
        records.append({"prompt": [{"role": "system", "content": [{"type": "text", "text": p["system"]}]},
                                   {"role": "user", "content": content}],
                        "images": [Image.open(data / f).convert("RGB") for f in p["images"]], "row": i})
    dataset = Dataset.from_list(records)

    def reward(prompts, completions, row, **_):
        return [score(c[0]["content"] if isinstance(c, list) else c, rows[r]).total for c, r in zip(completions, row)]

    start = [0.0]

    class Steps(TrainerCallback):
        """A line per finished step: its time since training began and the completion tokens it sampled."""

        def on_train_begin(self, *a, **k):
            start[0] = time.perf_counter()

        def on_log(self, _args, state, _control, logs=None, **_):
            if logs and "completions/mean_length" in logs:
                tokens = logs["completions/mean_length"] * args.prompts * args.group
                print(f"step {state.global_step} {time.perf_counter() - start[0]:.3f} {tokens:.0f}", flush=True)

    config = GRPOConfig(
        output_dir=args.out, max_steps=args.steps, learning_rate=args.lr, beta=args.beta, num_generations=args.group,
        per_device_train_batch_size=args.prompts * args.group, gradient_accumulation_steps=1,
        max_completion_length=args.max_new_tokens, temperature=args.temperature, loss_type="bnpo",
        logging_steps=1, save_strategy="no", report_to=[], bf16=False, use_cpu=True, dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False, seed=0, weight_decay=0.01, max_grad_norm=5.0, warmup_steps=0,
        lr_scheduler_type="constant")
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(args.model)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                          processing_class=processor, callbacks=[Steps()])
    trainer.train()


if __name__ == "__main__":
    main()
