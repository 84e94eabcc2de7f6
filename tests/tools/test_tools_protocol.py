"""parse_tool_call: accepted forms, one clear ToolCallError per bad form, round trips, and fuzzing
(random, hypothesis, 1 MB adversarial strings): nothing but ToolCall or ToolCallError, in linear time."""
import json
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ToolCallError
from engine.tools import ToolCall, parse_tool_call
from engine.tools.protocol import CLOSE, MAX_JSON_DEPTH, OPEN, format_tool_call

FUZZ = settings(max_examples=2500, deadline=None, database=None, suppress_health_check=list(HealthCheck))


def check_contract(text):
    """What parse_tool_call may do for any input: return a well-formed ToolCall or raise ToolCallError."""
    try:
        call = parse_tool_call(text)
    except ToolCallError as e:
        assert str(e), "a ToolCallError must say what was wrong"
        return None
    assert isinstance(call, ToolCall)
    assert isinstance(call.name, str) and call.name.strip() == call.name and call.name
    assert isinstance(call.arguments, dict)
    return call


# ---------------------------------------------------------------------------------------- accepted forms

def test_call_after_reasoning():
    text = 'I need a closer look at 3-5 s.\n<tool_call>\n{"name": "frame_zoom", "arguments": {"start": 3, "end": "00:05"}}\n</tool_call>'
    assert parse_tool_call(text) == ToolCall("frame_zoom", {"start": 3, "end": "00:05"})


def test_arguments_as_json_encoded_string():
    text = '<tool_call>{"name": "clip_retrieval", "arguments": "{\\"query\\": \\"red circle\\", \\"topk\\": 2}"}</tool_call>'
    assert parse_tool_call(text) == ToolCall("clip_retrieval", {"query": "red circle", "topk": 2})


def test_bare_json_object_without_tags():
    assert parse_tool_call('  {"name": "frame_zoom", "arguments": {"start": 1, "end": 2}}\n') == \
        ToolCall("frame_zoom", {"start": 1, "end": 2})
    # reasoning, then the object on its own line
    assert parse_tool_call('Let me zoom.\n{"name": "frame_zoom", "arguments": {}}') == ToolCall("frame_zoom", {})


def test_markdown_fence_missing_arguments_and_parameters_alias():
    assert parse_tool_call('<tool_call>```json\n{"name": "a", "arguments": {"x": 1}}\n```</tool_call>') == ToolCall("a", {"x": 1})
    assert parse_tool_call('<tool_call>{"name": "a"}</tool_call>') == ToolCall("a", {})
    assert parse_tool_call('<tool_call>{"name": "a", "parameters": {"x": 1}}</tool_call>') == ToolCall("a", {"x": 1})
    assert parse_tool_call('<tool_call>{"name": " a ", "arguments": ""}</tool_call>') == ToolCall("a", {})


def test_last_complete_block_is_used():
    text = (f'{OPEN}{{"name": "first", "arguments": {{}}}}{CLOSE} and then '
            f'{OPEN}{{"name": "second", "arguments": {{"k": 1}}}}{CLOSE} {OPEN}{{"name": "unclosed"')
    assert parse_tool_call(text) == ToolCall("second", {"k": 1})


def test_tag_mentioned_in_reasoning_or_inside_a_string_value():
    mention = f'I will write a {OPEN} block now: {OPEN}{{"name": "a", "arguments": {{}}}}{CLOSE}'
    assert parse_tool_call(mention) == ToolCall("a", {})
    inside = f'{OPEN}{{"name": "a", "arguments": {{"q": "what is {OPEN}?"}}}}{CLOSE}'
    assert parse_tool_call(inside) == ToolCall("a", {"q": f"what is {OPEN}?"})


# --------------------------------------------------------------------------------------------- bad forms

@pytest.mark.parametrize("text, fragment", [
    ("I think the answer is B.", "no <tool_call>"),
    ("", "no <tool_call>"),
    ('<tool_call>{"name": "a", "arguments": {}}', "unclosed <tool_call>"),
    ('{"name": "a"}</tool_call>', "no matching <tool_call>"),
    ("<tool_call>   </tool_call>", "empty <tool_call> block"),
    ('<tool_call>{"name": "a", "arguments": {"x": 1}</tool_call>', "malformed JSON"),
    ("<tool_call>{'name': 'a'}</tool_call>", "malformed JSON"),
    ('<tool_call>[{"name": "a"}]</tool_call>', "must be a JSON object, got a JSON array"),
    ('<tool_call>"frame_zoom"</tool_call>', "got a JSON string"),
    ('<tool_call>{"arguments": {}}</tool_call>', 'no "name"'),
    ('<tool_call>{"name": 3, "arguments": {}}</tool_call>', '"name" must be a non-empty string, got a JSON number'),
    ('<tool_call>{"name": "  ", "arguments": {}}</tool_call>', "got an empty string"),
    ('<tool_call>{"name": null}</tool_call>', "got a JSON null"),
    ('<tool_call>{"name": "a", "arguments": [1, 2]}</tool_call>', '"arguments" of \'a\' must be a JSON object, got a JSON array'),
    ('<tool_call>{"name": "a", "arguments": "[1]"}</tool_call>', "got a JSON array"),
    ('<tool_call>{"name": "a", "arguments": "{oops"}</tool_call>', "malformed JSON in the \"arguments\" string"),
    ('<tool_call>{"name": "a", "arguments": {"t": NaN}}</tool_call>', "NaN is not a JSON value"),
    ('<tool_call>{"name": "a", "arguments": {"t": -Infinity}}</tool_call>', "-Infinity is not a JSON value"),
    ('<tool_call>{"name": "a", "arguments": {"n": ' + "9" * 5000 + "}}</tool_call>", "malformed JSON"),
    ("<tool_call>" + "[" * 5000 + "</tool_call>", "malformed JSON"),
    ('<tool_call>{"name": "a", "arguments": ' + "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + "}</tool_call>",
     "nested more than"),
])
def test_bad_forms_raise_a_clear_tool_call_error(text, fragment):
    with pytest.raises(ToolCallError) as info:
        parse_tool_call(text)
    assert fragment in str(info.value)
    assert len(str(info.value)) < 400  # the message quotes a snippet, never the whole output


def test_non_string_input_is_a_tool_call_error():
    for value in (None, 3, b"<tool_call>{}</tool_call>", ["x"]):
        with pytest.raises(ToolCallError, match="must be a string"):
            parse_tool_call(value)


def test_depth_limit_is_inclusive():
    # levels: the call object, the arguments object, then the lists
    ok = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    assert parse_tool_call(f'{OPEN}{{"name": "a", "arguments": {{"x": {ok}}}}}{CLOSE}').name == "a"
    with pytest.raises(ToolCallError, match="nested more than"):
        parse_tool_call(f'{OPEN}{{"name": "a", "arguments": {{"x": [{ok}]}}}}{CLOSE}')


# ------------------------------------------------------------------------------------------- round trips

_json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)
_no_tags = st.text(max_size=60).filter(lambda s: OPEN not in s and CLOSE not in s)


@settings(max_examples=1500, deadline=None, database=None)
@given(name=st.text(min_size=1, max_size=20).map(str.strip).filter(bool).filter(lambda s: CLOSE not in s),
       arguments=st.dictionaries(st.text(max_size=10), _json, max_size=5), reasoning=_no_tags)
def test_valid_calls_round_trip(name, arguments, reasoning):
    if CLOSE in json.dumps(arguments, ensure_ascii=False):  # the agent loop stops at the first </tool_call>
        return
    call = ToolCall(name, arguments)
    assert parse_tool_call(reasoning + format_tool_call(call)) == call
    # the same call with compact JSON and the arguments double-encoded
    body = json.dumps({"name": name, "arguments": json.dumps(arguments)}, separators=(",", ":"))
    assert parse_tool_call(f"{reasoning}{OPEN}{body}{CLOSE}") == call


# ---------------------------------------------------------------------------------------------- fuzzing

_FRAGMENTS = (OPEN, CLOSE, "<tool_call", "tool_call>", "{", "}", "[", "]", '"', "'", ":", ",", " ", "\n", "\\", "\\u",
              "d800", "\\ud800", "\ud800", "\udfff", "\x00", "name", '"name"', '"arguments"', '"parameters"', "null",
              "true", "1e999", "-0", "NaN", "Infinity", "9" * 50, "```", "json", "é", "😀", '"frame_zoom"', "{}", "[]")


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_arbitrary_unicode(text):
    check_contract(text)


@FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=40).map("".join))
def test_fuzz_tag_and_json_fragments(text):
    check_contract(text)


@FUZZ
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=5), max_size=30).map("".join))
def test_fuzz_fragments_inside_a_block(text):
    check_contract(f'{OPEN}{{"name": "a", "arguments": {text}{CLOSE}')
    check_contract(f"{OPEN}{text}{CLOSE}")


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(3)
        pos = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 1:
            chars.insert(pos, rng.choice(_FRAGMENTS))
        elif chars:
            j = rng.randrange(len(chars))
            chars[min(pos, len(chars) - 1)], chars[j] = chars[j], chars[min(pos, len(chars) - 1)]
    return "".join(chars)


def test_fuzz_mutated_valid_calls():
    """5000 random edits of valid calls: each still parses to a call or raises ToolCallError."""
    rng = random.Random(0)
    seeds = [format_tool_call(ToolCall("frame_zoom", {"start": 1.5, "end": "00:04"})),
             format_tool_call(ToolCall("spatial_zoom", {"time": 2, "bbox": [0.1, 0.2, 0.5, 0.9]})),
             'Hmm. <tool_call>{"name": "clip_retrieval", "arguments": "{\\"query\\": \\"red\\"}"}</tool_call>']
    parsed = 0
    for _ in range(5000):
        parsed += check_contract(_mutate(rng, rng.choice(seeds))) is not None
    assert 0 < parsed < 5000  # both outcomes were exercised


MB = 1 << 20


@pytest.mark.parametrize("name, text", [
    ("opens", OPEN * (MB // len(OPEN))),
    ("closes", CLOSE * (MB // len(CLOSE))),
    ("empty blocks", (OPEN + CLOSE) * (MB // 23)),
    ("open braces", OPEN + "{" * MB + CLOSE),
    ("open brackets", OPEN + '{"name": "a", "arguments": ' + "[" * MB + CLOSE),
    ("bare braces", "{" * MB),
    ("deep valid json", OPEN + '{"name": "a", "arguments": {"x": ' + "[" * 200_000 + "]" * 200_000 + "}}" + CLOSE),
    ("huge number", OPEN + '{"name": "a", "arguments": {"x": ' + "1" * MB + "}}" + CLOSE),
    ("huge exponent", OPEN + '{"name": "a", "arguments": {"x": 1e' + "9" * MB + "}}" + CLOSE),
    ("unterminated string", OPEN + '{"name": "' + "a" * MB + CLOSE),
    ("escapes", OPEN + '{"name": "' + "\\u" * (MB // 2) + CLOSE),
    ("lone surrogates", OPEN + "\ud800" * MB + CLOSE),
    ("nul bytes", "\x00" * MB + OPEN + "\x00" + CLOSE),
    ("whitespace", OPEN + " " * MB + CLOSE),
    ("newline braces", "\n{" * (MB // 2)),
    ("huge valid call", OPEN + json.dumps({"name": "a", "arguments": {"q": "x" * MB}}) + CLOSE),
    ("many keys", OPEN + json.dumps({"name": "a", "arguments": {str(i): i for i in range(60_000)}}) + CLOSE),
    ("tag soup", ("<tool_call" + "<" * 5 + "tool_call>" + "/") * (MB // 20)),
])
def test_one_megabyte_adversarial_inputs(name, text):
    t0 = time.perf_counter()
    call = check_contract(text)
    elapsed = time.perf_counter() - t0
    # Catastrophic backtracking or quadratic scans would take minutes on 1 MB; linear work takes ms.
    assert elapsed < 3.0, f"{name}: {elapsed:.2f}s"
    if name.startswith(("huge valid", "many keys")):
        assert call is not None and call.name == "a"
