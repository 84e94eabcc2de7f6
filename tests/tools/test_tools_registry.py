"""ToolRegistry: schemas in the chat template's <tools> block, and every bad model output turns into an error
Observation (never an exception) whose text says what was wrong."""
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError, ToolCallError
from engine.tools import Observation, Tool, ToolCall, ToolRegistry, default_registry, format_time, parse_time


def test_parse_time_forms():
    assert parse_time(3, "t") == 3.0 and parse_time(2.5, "t") == 2.5 and parse_time(-1, "t") == -1.0
    assert parse_time("00:05", "t") == 5.0
    assert parse_time(" 01:02.5 ", "t") == 62.5
    assert parse_time("1:02:03", "t") == 3723.0
    assert parse_time("12.5s", "t") == 12.5 and parse_time("7", "t") == 7.0 and parse_time(".5", "t") == 0.5
    for bad in ("00:75", "1:75:00", "soon", "", "-3", "1e3", "00:05:", True, None, [1], {"s": 1}, float("nan"),
                float("inf"), 10**400, "9" * 40):
        with pytest.raises(ToolCallError, match="start"):
            parse_time(bad, "start")


def test_format_time_rounds_once():
    assert format_time(3.0) == "00:03.0"
    assert format_time(59.96) == "01:00.0"
    assert format_time(3725.25, 2) == "62:05.25"
    assert format_time(-2) == "00:00.0"
    assert format_time(4.0, 0) == "00:04"


def test_schemas_render_in_the_chat_template_tools_block(tiny_tokenizer):
    registry = default_registry()
    assert registry.names() == ["frame_zoom", "spatial_zoom", "clip_retrieval"]
    schemas = registry.schemas()
    for schema, name in zip(schemas, registry.names()):
        assert schema["type"] == "function" and schema["function"]["name"] == name
        params = schema["function"]["parameters"]
        assert params["type"] == "object" and set(params["required"]) <= set(params["properties"])
        assert schema["function"]["description"]
    text = tiny_tokenizer.apply_chat_template([{"role": "user", "content": "Q"}], tools=schemas, tokenize=False)
    listed = text.split("<tools>\n")[1].split("\n</tools>")[0].split("\n")
    assert [json.loads(line) for line in listed] == schemas


def test_register_rejects_duplicates_and_non_tools():
    registry = default_registry()
    with pytest.raises(ConfigError, match="registered twice"):
        registry.register(registry.get("frame_zoom"))
    with pytest.raises(ConfigError, match="non-empty name"):
        registry.register(object())
    with pytest.raises(ToolCallError, match="unknown tool"):
        registry.get("nope")
    assert "frame_zoom" in registry and len(registry) == 3


FZ = '<tool_call>{{"name": "frame_zoom", "arguments": {}}}</tool_call>'
SZ = '<tool_call>{{"name": "spatial_zoom", "arguments": {}}}</tool_call>'
CR = '<tool_call>{{"name": "clip_retrieval", "arguments": {}}}</tool_call>'


@pytest.mark.parametrize("output, fragments", [
    ("The answer is B.", ["no <tool_call>", "Available tools: frame_zoom"]),
    ('<tool_call>{"name": "frame_zoom", "arguments": {"start": 1, "end": 3}', ["unclosed <tool_call>"]),
    ('<tool_call>{"name": "frame_zoom", "arguments": {"start": 1, "end": 3}</tool_call>', ["malformed JSON"]),
    ('<tool_call>{"name": "zoom_in", "arguments": {}}</tool_call>', ["unknown tool 'zoom_in'", "frame_zoom"]),
    (FZ.format('{"start": "abc", "end": 3}'), ["argument 'start'", "'MM:SS'", "'abc'"]),
    (FZ.format('{"start": true, "end": 3}'), ["argument 'start'", "boolean"]),
    (FZ.format('{"start": [1], "end": 3}'), ["argument 'start'", "array"]),
    (FZ.format('{"start": 1}'), ["missing required argument(s) end"]),
    (FZ.format('{"start": 1, "end": 3, "fps": 4}'), ["unknown argument(s) 'fps'", "start, end, num_frames"]),
    (FZ.format('{"start": 1, "end": 3, "num_frames": 2.5}'), ["argument 'num_frames'", "integer"]),
    (FZ.format('{"start": 1, "end": 3, "num_frames": "4"}'), ["argument 'num_frames'", "integer"]),
    (FZ.format('{"start": 1, "end": 3, "num_frames": 0}'), ["'num_frames' must be >= 1"]),
    (FZ.format('{"start": 5, "end": 3}'), ["empty or inverted", "00:03.0", "00:05.0"]),
    (FZ.format('{"start": 4, "end": 4}'), ["empty or inverted"]),
    (FZ.format('{"start": "00:09", "end": "00:12"}'), ["past the end of the video", "00:08.0"]),
    (FZ.format('{"start": -5, "end": -1}'), ["before the video starts"]),
    (FZ.format('{"start": "00:75", "end": 3}'), ["seconds must be < 60"]),
    (FZ.format('"{\\"start\\": 1}"'), ["missing required argument(s) end"]),
    (SZ.format('{"time": 2, "bbox": [0.5, 0.5, 0.5, 0.9]}'), ["empty or inverted", "x0 < x1"]),
    (SZ.format('{"time": 2, "bbox": [0.6, 0.1, 0.2, 0.9]}'), ["empty or inverted"]),
    (SZ.format('{"time": 2, "bbox": [10, 10, 80, 60]}'), ["outside the frame", "fractions 0..1"]),
    (SZ.format('{"time": 2, "bbox": [0.1, 0.2, 0.3]}'), ["argument 'bbox' must have exactly 4 items, got 3"]),
    (SZ.format('{"time": 2, "bbox": "0.1 0.2 0.3 0.4"}'), ["argument 'bbox' must be array"]),
    (SZ.format('{"time": 2, "bbox": [0.1, "a", 0.3, 0.4]}'), ["argument 'bbox[1]' must be number"]),
    (SZ.format('{"time": 100, "bbox": [0.1, 0.1, 0.5, 0.5]}'), ["time 01:40.0 is outside the video"]),
    (SZ.format('{"time": -1, "bbox": [0.1, 0.1, 0.5, 0.5]}'), ["outside the video"]),
    (CR.format('{"query": ""}'), ["non-empty"]),
    (CR.format('{"query": 42}'), ["argument 'query' must be string"]),
    (CR.format('{"query": "red", "topk": 0}'), ["'topk' must be >= 1"]),
    (CR.format('{"query": "red", "topk": "3"}'), ["argument 'topk' must be integer"]),
    (CR.format('{"query": "' + "x" * 2000 + '"}'), ["the limit is 1000"]),
])
def test_bad_model_output_becomes_an_error_observation(make_ctx, output, fragments):
    obs = default_registry().execute(output, make_ctx())
    assert isinstance(obs, Observation)
    assert obs.error is not None and obs.clips == []
    assert obs.text.startswith("Error: ") and obs.error in obs.text
    for fragment in fragments:
        assert fragment in obs.text, obs.text
    assert len(obs.text) < 900
    assert obs.duration_s > 0


def test_service_and_decode_errors_become_observations(make_ctx, tmp_path):
    ctx = make_ctx()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    ctx.video_path = str(bad)
    obs = default_registry().execute(ToolCall("frame_zoom", {"start": 0, "end": 1}), ctx)
    assert obs.error and "could not be decoded" in obs.text and "not a readable video" in obs.text
    assert str(tmp_path) not in obs.text  # our file paths are no business of the model's
    ctx.video_path = str(tmp_path / "missing.mp4")
    obs = default_registry().execute(ToolCall("spatial_zoom", {"time": 0, "bbox": [0, 0, 1, 1]}), ctx)
    assert obs.error and "file not found" in obs.text


def test_non_finite_and_odd_programmatic_arguments(make_ctx):
    registry = default_registry()
    for args in ({"start": math.nan, "end": 2}, {"start": 0, "end": math.inf}):
        obs = registry.execute(ToolCall("frame_zoom", args), make_ctx())
        assert obs.error and "finite" in obs.text
    obs = registry.execute(ToolCall("spatial_zoom", {"time": 1, "bbox": [0, 0, math.inf, 1]}), make_ctx())
    assert obs.error and "finite" in obs.text
    obs = registry.execute(ToolCall("frame_zoom", ["not", "a", "dict"]), make_ctx())
    assert obs.error and "must be a JSON object" in obs.text
    obs = registry.execute(42, make_ctx())
    assert obs.error and "expected a ToolCall" in obs.text


def test_clip_retrieval_without_an_index(make_ctx):
    obs = default_registry().execute(ToolCall("clip_retrieval", {"query": "red circle"}), make_ctx(with_index=False))
    assert obs.error and "no clip index" in obs.text


class _Broken(Tool):
    name = "broken"
    description = "always fails"
    parameters = {"type": "object", "properties": {"mode": {"type": "string"}}, "required": []}

    def run(self, args, ctx):
        if args.get("mode") == "wrong type":
            return "not an observation"
        raise RuntimeError("boom")


def test_tool_bugs_become_observations(make_ctx):
    registry = ToolRegistry([_Broken()])
    obs = registry.execute(ToolCall("broken", {}), make_ctx())
    assert obs.error and "internal tool error" in obs.text and "RuntimeError: boom" in obs.text
    obs = registry.execute(ToolCall("broken", {"mode": "wrong type"}), make_ctx())
    assert obs.error and "not an Observation" in obs.text


_values = st.none() | st.booleans() | st.integers(-100, 100) | st.floats(-20, 20) | st.text(max_size=8) | \
    st.lists(st.floats(-0.5, 1.5), max_size=5) | st.sampled_from(["00:02", "00:03.5", "1:00", "00:00"])


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(["frame_zoom", "spatial_zoom", "clip_retrieval", "other"]),
       arguments=st.dictionaries(st.sampled_from(["start", "end", "num_frames", "time", "bbox", "query", "topk", "x"]),
                                 _values, max_size=4))
def test_execute_never_raises_on_random_arguments(make_ctx, name, arguments):
    obs = default_registry().execute(ToolCall(name, arguments), make_ctx())
    assert isinstance(obs, Observation) and isinstance(obs.text, str) and obs.text
    assert (obs.error is None) == (not obs.text.startswith("Error: "))
    if obs.error is not None:
        assert obs.clips == []
