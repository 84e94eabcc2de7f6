"""Turns a dataset row and its video clip into prompt token ids (chat template + expanded video pads)."""
from __future__ import annotations

SYSTEM_PROMPT = (
    "Watch the video and answer the question. For each key segment write "
    "<time>MM:SS-MM:SS</time> <caption>what you see</caption> <think>your analysis</think>, "
    "then give the final answer as <answer>X</answer>."
)


def question_text(row) -> str:
    """The user's question, with lettered options for multiple choice."""
    if row.kind == "mcq":
        letters = "ABCDEFGH"
        options = "\n".join(f"{letters[i]}. {opt}" for i, opt in enumerate(row.options))
        return f"{row.question}\n{options}\nAnswer with the option's letter."
    return f"{row.question}\nAnswer with a time span MM:SS-MM:SS."


def build_messages(row) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question_text(row)}]},
    ]
