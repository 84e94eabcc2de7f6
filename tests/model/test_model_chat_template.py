"""Chat template: Qwen2.5-VL turn layout, video parts, tool turns, loud failures."""
import json

import pytest
from jinja2.exceptions import TemplateError

from engine.model.tokenizer import build_tokenizer

SYS = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def render(tok, messages, **kw) -> str:
    return tok.apply_chat_template(messages, tokenize=False, **kw)


def test_plain_text_turns_with_default_system(tok):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert render(tok, msgs) == (
        SYS + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n")


def test_explicit_system_and_generation_prompt(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}]
    assert render(tok, msgs, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert not render(tok, msgs).endswith("<|im_start|>assistant\n")


def test_video_and_image_parts(tok):
    msgs = [{"role": "user", "content": [
        {"type": "video"}, {"type": "text", "text": "What moves? "}, {"type": "image"},
        {"type": "text", "text": "A or B?"}]}]
    assert render(tok, msgs) == (
        SYS + "<|im_start|>user\n" + VIDEO + "What moves? "
        "<|vision_start|><|image_pad|><|vision_end|>A or B?<|im_end|>\n")


def test_tool_turns_grouped_into_one_user_turn(tok):
    call = '<tool_call>\n{"name": "frame_zoom", "arguments": {"start": 3.5, "end": 7.0}}\n</tool_call>'
    msgs = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]},
        {"role": "assistant", "content": call},
        {"role": "tool", "content": [{"type": "text", "text": "00:03-00:07"}, {"type": "video"}]},
        {"role": "tool", "content": "no subtitles"},
        {"role": "assistant", "content": "<answer>B</answer>"},
        {"role": "tool", "content": "late"},
    ]
    expected = (
        SYS + "<|im_start|>user\n" + VIDEO + "Q?<|im_end|>\n"
        "<|im_start|>assistant\n" + call + "<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n00:03-00:07" + VIDEO + "\n</tool_response>\n"
        "<tool_response>\nno subtitles\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<answer>B</answer><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nlate\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n")
    assert render(tok, msgs, add_generation_prompt=True) == expected


def test_tools_listed_in_system_prompt(tok):
    tools = [{"type": "function", "function": {"name": "frame_zoom", "parameters": {
        "type": "object", "properties": {"start": {"type": "number"}, "end": {"type": "number"}}}}}]
    text = render(tok, [{"role": "user", "content": "Q"}], tools=tools)
    system = text.split("<|im_end|>")[0]
    listed = system.split("<tools>\n")[1].split("\n</tools>")[0]
    assert json.loads(listed) == tools[0]
    assert system.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools")


def test_rendered_prompt_tokenizes_to_single_control_tokens(tok):
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Q?"}]}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"]  # transformers 5 returns a BatchEncoding
    video_pad = tok.convert_tokens_to_ids("<|video_pad|>")
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(video_pad) == 1
    assert ids.count(im_start) == 3  # system, user, generation prompt
    assert tok.decode(ids) == render(tok, msgs, add_generation_prompt=True)


@pytest.mark.parametrize("msgs, what", [
    ([{"role": "narrator", "content": "x"}], "unknown message role: narrator"),
    ([{"role": "user", "content": [{"type": "audio"}]}], "unknown content part type: audio"),
])
def test_unknown_role_or_part_fails_loudly(tok, msgs, what):
    with pytest.raises(TemplateError, match=what):
        render(tok, msgs)
