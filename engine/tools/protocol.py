"""The tool-call protocol: Hermes/Qwen `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks.

`parse_tool_call` takes one model turn (reasoning may come before the call) and returns the call or
raises ToolCallError saying what was wrong; for any string it does nothing else, in linear time.

Which block is used: the LAST complete `<tool_call>...</tool_call>` block. The agent loop stops
generation at the first `</tool_call>`, so normally there is exactly one block, at the end. Its body
starts at the first `<tool_call>` after the previous `</tool_call>` (so a JSON string value that
mentions "<tool_call>" is fine); if that body is not a JSON object, the body after the nearest
`<tool_call>` is tried (reasoning that mentions the tag before the real call). A text with no tags
at all is accepted when it is (or ends with a line starting) a bare JSON object. An unclosed
`<tool_call>` after the last complete block is ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine.errors import ToolCallError

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_JSON_DEPTH = 64  # real arguments nest 2-3 levels; deeper is junk that would strain recursive code later
_SNIPPET = 80


@dataclass
class ToolCall:
    name: str
    arguments: dict = field(default_factory=dict)


def format_tool_call(call: ToolCall) -> str:
    """The block a model writes for `call` (the layout the chat template's tool prompt shows)."""
    body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"{OPEN}\n{body}\n{CLOSE}"


def parse_tool_call(text: str) -> ToolCall:
    """The tool call in a model turn `text`, or ToolCallError with a message the model can act on."""
    if not isinstance(text, str):
        raise ToolCallError(f"tool call text must be a string, got {type(text).__name__}")
    close = text.rfind(CLOSE)
    if close < 0:
        opened = text.rfind(OPEN)
        if opened >= 0:
            raise ToolCallError(f"unclosed {OPEN} tag at character {opened}: no {CLOSE} follows it "
                                f"(after it: {_snippet(text[opened + len(OPEN):])})")
        return _parse_bare(text)
    prev_close = text.rfind(CLOSE, 0, close)
    region_start = 0 if prev_close < 0 else prev_close + len(CLOSE)
    first_open = text.find(OPEN, region_start, close)
    if first_open < 0:
        raise ToolCallError(f"{CLOSE} at character {close} has no matching {OPEN} before it")
    try:
        return _parse_body(text[first_open + len(OPEN):close])
    except ToolCallError as first_error:
        last_open = text.rfind(OPEN, first_open + len(OPEN), close)
        if last_open < 0:
            raise
        try:
            return _parse_body(text[last_open + len(OPEN):close])
        except ToolCallError:
            raise first_error from None


def _parse_bare(text: str) -> ToolCall:
    body = _strip_fence(text.strip())
    if not body.startswith("{"):
        # Some models write reasoning and then the JSON object on its own line.
        line = body.rfind("\n{")
        if line < 0:
            raise ToolCallError(f"no {OPEN}...{CLOSE} block in the output; write "
                                f'{OPEN}{{"name": <tool>, "arguments": {{...}}}}{CLOSE}')
        body = body[line + 1:]
    return _parse_body(body)


def _strip_fence(body: str) -> str:
    """Drop a ```json ... ``` markdown fence around the JSON, which some models add."""
    if body.startswith("```") and body.endswith("```") and len(body) >= 6:
        body = body[3:-3]
        if body.startswith("json"):
            body = body[4:]
        body = body.strip()
    return body


def _parse_body(body: str) -> ToolCall:
    body = _strip_fence(body.strip())
    if not body:
        raise ToolCallError(f"empty {OPEN} block: expected a JSON object with \"name\" and \"arguments\"")
    obj = _loads(body, "the tool call")
    if not isinstance(obj, dict):
        raise ToolCallError(f"the tool call must be a JSON object, got a JSON {_json_type(obj)}")
    if "name" not in obj:
        raise ToolCallError(f"the tool call object has no \"name\" (keys: {_keys(obj)})")
    name = obj["name"]
    if not isinstance(name, str) or not name.strip():
        what = "an empty string" if isinstance(name, str) else f"a JSON {_json_type(name)}"
        raise ToolCallError(f"the tool call's \"name\" must be a non-empty string, got {what}")
    if "arguments" in obj:
        arguments = obj["arguments"]
    elif "parameters" in obj:  # the Llama-style spelling
        arguments = obj["parameters"]
    else:
        arguments = {}
    if isinstance(arguments, str):  # some models JSON-encode the arguments a second time
        arguments = {} if not arguments.strip() else _loads(arguments, f"the \"arguments\" string of {name.strip()!r}")
    if not isinstance(arguments, dict):
        raise ToolCallError(f"the \"arguments\" of {_snippet(name.strip())} must be a JSON object, "
                            f"got a JSON {_json_type(arguments)}")
    return ToolCall(name.strip(), arguments)


def _reject_constant(token: str):
    raise _Constant(token)


class _Constant(Exception):
    """NaN / Infinity / -Infinity: Python's json accepts them, JSON does not."""


def _loads(body: str, what: str):
    try:
        obj = json.loads(body, parse_constant=_reject_constant)
    except _Constant as e:
        raise ToolCallError(f"malformed JSON in {what}: {e.args[0]} is not a JSON value "
                            "(use a number or a string)") from None
    except json.JSONDecodeError as e:
        raise ToolCallError(f"malformed JSON in {what}: {e.msg} at character {e.pos} "
                            f"(near {_snippet(body[max(0, e.pos - 20):e.pos + 20])})") from None
    except RecursionError:
        raise ToolCallError(f"malformed JSON in {what}: nested too deeply") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise ToolCallError(f"malformed JSON in {what}: {str(e)[:120]}") from None
    if _depth_exceeds(obj, MAX_JSON_DEPTH):
        raise ToolCallError(f"JSON in {what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return obj


def _depth_exceeds(obj, limit: int) -> bool:
    """Iterative (never recursive) depth check of parsed JSON."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _json_type(obj) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    if isinstance(obj, (int, float)):
        return "number"
    if isinstance(obj, str):
        return "string"
    if isinstance(obj, list):
        return "array"
    return "object" if isinstance(obj, dict) else type(obj).__name__


def _keys(obj: dict) -> str:
    keys = [_snippet(k, 30) for k in list(obj)[:8]]
    return ", ".join(keys) + (", ..." if len(obj) > 8 else "") if keys else "none"


def _snippet(text: str, limit: int = _SNIPPET) -> str:
    text = text if isinstance(text, str) else str(text)
    cut = text[:limit]
    return repr(cut) + ("..." if len(text) > limit else "")
