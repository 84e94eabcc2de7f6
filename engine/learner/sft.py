"""Supervised warm-up on ground-truth reasoning traces in the Video-Thinker format."""
from __future__ import annotations

from engine.data.schema import format_span
from engine.rollout.batch import RolloutBatch, Sample


def target_response(row, record) -> str:
    """The Video-Thinker trace a perfect model would write: one block per ground-truth segment, then the answer."""
    blocks = [
        f"<time>{format_span(s.start_s, s.end_s)}</time> <caption>{s.caption}</caption> "
        "<think>This segment matters.</think>"
        for s in record.segments
    ]
    return "\n".join(blocks) + f"\n<answer>{row.answer}</answer>"  # a letter, or the span as MM:SS-MM:SS


def sft_batch(rows, records, requests, tokenizer, end_id: int, mrope: dict) -> RolloutBatch:
    """Teacher-forced samples: the prompt of each request followed by its target response and end-of-turn.

    `mrope` (engine.native.mrope_config of the policy) makes the batch carry explicit M-RoPE position ids,
    so SFT trains at the positions the rollout generates at, not at transformers' own (different) ones.
    """
    samples = []
    for i, (row, req) in enumerate(zip(rows, requests)):
        ids = tokenizer(target_response(row, records[row.video_id]), add_special_tokens=False)["input_ids"] + [end_id]
        samples.append(Sample(i, row.id, req.prompt_ids, ids, [0.0] * len(ids), req.video))
    return RolloutBatch(samples=samples, group_size=1, mrope=mrope)
