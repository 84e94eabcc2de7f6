"""Observation rendering: chat messages for the template, and the exact token ids the agent loop appends.

Both follow engine/model/chat_template.py's `tool` role: a tool message becomes
`<|im_start|>user\\n<tool_response>\\n{text}{one vision block per clip}\\n</tool_response><|im_end|>\\n`.
Observation text is made safe first (the same way in both): control tokens and reasoning tags that
a tool may echo from model output (a query, an error snippet) are defused, and lone surrogates,
which no tokenizer can encode, become '?'.
"""
from __future__ import annotations

import re

from engine.errors import ConfigError
from engine.model.video_tokens import VIDEO_BLOCK, video_prompt_ids
from engine.video.spec import VisionSpec
from engine.video.types import VideoInput
from engine.tools.registry import Observation

# After a model turn that ended on </tool_call>: close it, open the tool turn ... then hand back.
TURN_OPEN = "<|im_end|>\n<|im_start|>user\n<tool_response>\n"
TURN_CLOSE = "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
VISION_START, VIDEO_PAD, VISION_END = "<|vision_start|>", "<|video_pad|>", "<|vision_end|>"
# '<|' opens every Qwen control token; the tags are the ones the model itself writes.
_DEFUSE = re.compile(r"<(?=\||/?(?:think|time|caption|answer|tool_call|tool_response)>)")


def safe_text(text: str) -> str:
    """Observation text that tokenizes as plain text: '<|x|>' -> '< |x|>', '<answer>' -> '< answer>'."""
    text = text if isinstance(text, str) else str(text)
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
    return _DEFUSE.sub("< ", text)


def observation_messages(obs: Observation, reminder: str = "") -> list[dict]:
    """[one `tool` message]: the text part (when not empty), then one video part per clip, then the question
    reminder (rollout.question_reminder) on a line of its own."""
    content: list[dict] = []
    text = safe_text(obs.text)
    if text:
        content.append({"type": "text", "text": text})
    content.extend({"type": "video"} for _ in obs.clips)
    if reminder:
        content.append({"type": "text", "text": "\n" + safe_text(reminder)})
    return [{"role": "tool", "content": content}]


def video_inputs(obs: Observation) -> list[VideoInput]:
    """The clips as model inputs, each with the span of the source video it shows when VideoInput has one."""
    return [VideoInput(clip.pixel_values, tuple(int(v) for v in clip.grid_thw), float(clip.second_per_grid_t),
                       float(clip.start_s), float(clip.end_s), tuple(float(t) for t in clip.timestamps_s), clip.key)
            for clip in obs.clips]


def observation_token_ids(obs: Observation, tokenizer, spec: VisionSpec, reminder: str = ""
                          ) -> tuple[list[int], list[VideoInput]]:
    """Ids to append after a model turn that ended on `</tool_call>`, and the videos they reference.

    The ids are `<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n{text}` + per clip
    `<|vision_start|>` + t*h*w/merge_size**2 `<|video_pad|>` + `<|vision_end|>` (Qwen3-VL: per temporal patch,
    after its real time, see video_prompt_ids), then `\\n{reminder}` when one is given, then
    `\\n</tool_response><|im_end|>\\n<|im_start|>assistant\\n`: exactly the chat template's rendering of the
    tool message plus the generation prompt, through the processor. The text starts after an added token, so it
    tokenizes the same here as inside the whole conversation.
    """
    texts = [TURN_OPEN, safe_text(obs.text), VIDEO_BLOCK * len(obs.clips),
             "\n" + safe_text(reminder) if reminder else "", TURN_CLOSE]
    return _encode("".join(texts), obs, tokenizer, spec)


def inline_video_token_ids(obs: Observation, tokenizer, spec: VisionSpec) -> tuple[list[int], list[VideoInput]]:
    """Only the vision blocks of `obs`'s clips, for injecting frames inside a model turn (the grounded
    re-look after `</time>`); the text is left out because the model wrote the span itself."""
    return _encode(VIDEO_BLOCK * len(obs.clips), obs, tokenizer, spec)


def _encode(text: str, obs: Observation, tokenizer, spec: VisionSpec) -> tuple[list[int], list[VideoInput]]:
    for token in (VIDEO_PAD, VISION_START, VISION_END, "<|im_start|>", "<|im_end|>"):
        _token_id(tokenizer, token)
    videos = video_inputs(obs)
    return video_prompt_ids(text, videos, spec, tokenizer), videos


def _token_id(tokenizer, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == getattr(tokenizer, "unk_token_id", None) or tokenizer.convert_ids_to_tokens(tid) != token:
        raise ConfigError("model.tokenizer", f"the tokenizer has no {token} token; tool observations need a "
                                             "Qwen2.5-VL style tokenizer")
    return int(tid)
