"""Turns a dataset row into chat messages: Video-Thinker (intrinsic, optional re-look) or tool-using agent."""
from __future__ import annotations

SYSTEM_PROMPT = (
    "Watch the video and answer the question. For each key segment write "
    "<time>MM:SS-MM:SS</time> <caption>what you see</caption> <think>your analysis</think>, "
    "then give the final answer as <answer>X</answer>."
)
RELOOK_PROMPT = SYSTEM_PROMPT + " After each </time> the frames of that span are shown to you again."
# The tool schemas follow in the system turn: the chat template renders them in Hermes <tools> format.
AGENT_PROMPT = (
    "Watch the video and answer the question. You may call the tools below to look at parts of the "
    "video again; each result shows you the frames with their real timestamps. When you are ready, "
    "for each key segment write <time>MM:SS-MM:SS</time> <caption>what you see</caption> "
    "<think>your analysis</think>, then give the final answer as <answer>X</answer>."
)


def question_text(row) -> str:
    """The user's question, with lettered options for multiple choice."""
    if row.kind == "mcq":
        letters = "ABCDEFGH"
        options = "\n".join(f"{letters[i]}. {opt}" for i, opt in enumerate(row.options))
        return f"{row.question}\n{options}\nAnswer with the option's letter."
    if row.kind == "numeric":
        return f"{row.question}\nAnswer with a number."
    return f"{row.question}\nAnswer with a time span MM:SS-MM:SS."


def build_messages(row, mode: str = "thinker", relook: bool = False) -> list[dict]:
    """System + user turns; in "agent" mode pass the registry's schemas as `tools=` to the template."""
    if mode not in ("thinker", "agent"):
        raise ValueError(f"unknown rollout mode {mode!r}; expected 'thinker' or 'agent'")
    system = AGENT_PROMPT if mode == "agent" else RELOOK_PROMPT if relook else SYSTEM_PROMPT
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question_text(row)}]},
    ]
