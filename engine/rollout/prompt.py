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

# reward.format_layout "r1": think, then answer (Video-R1's layout).
R1_PROMPT = ("Watch the video and answer the question. First think it through inside <think> </think>, "
             "then give the final answer inside <answer> </answer>.")
# What the answer should look like, per kind (the instruction after the question).
ANSWER_HINTS = {
    "mcq": "Answer with the option's letter.",
    "grounding": "Answer with a time span MM:SS-MM:SS.",
    "numerical": "Answer with a number.",
    "regression": "Answer with a number.",
    "ocr": "Answer with the text, transcribed exactly.",
    "free-form": "Answer in words.",
}


def question_text(row) -> str:
    """The user's question, with lettered options for multiple choice, and the answer's expected form."""
    if row.kind not in ANSWER_HINTS:
        raise ValueError(f"row {row.id}: unknown question kind {row.kind!r}")
    if row.kind == "mcq":
        options = "\n".join(f"{chr(ord('A') + i)}. {opt}" for i, opt in enumerate(row.options))
        return f"{row.question}\n{options}\n{ANSWER_HINTS['mcq']}"
    return f"{row.question}\n{ANSWER_HINTS[row.kind]}"


def question_reminder(row) -> str:
    """rollout.question_reminder: the line that closes every tool response, the question again with its options.
    The answer then reads the options a few tokens back instead of past the tool schemas, the video and every tool
    turn: the embedded tiny model reads them back at 1.00 in a text-only exchange, 0.48 with the schemas before it."""
    return "Question: " + question_text(row)


def build_messages(row, mode: str = "thinker", relook: bool = False, layout: str = "video_thinker") -> list[dict]:
    """System + user turns; in "agent" mode pass the registry's schemas as `tools=` to the template."""
    if mode not in ("thinker", "agent"):
        raise ValueError(f"unknown rollout mode {mode!r}; expected 'thinker' or 'agent'")
    if layout == "r1" and mode == "thinker" and not relook:
        system = R1_PROMPT
    else:
        system = AGENT_PROMPT if mode == "agent" else RELOOK_PROMPT if relook else SYSTEM_PROMPT
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question_text(row)}]},
    ]
