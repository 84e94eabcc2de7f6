"""OpenAIChatAgent over real HTTP on 127.0.0.1: against the tiny model behind engine.synth.openai_server, and
against scripted stub servers for the failure paths (bad status, malformed body, timeout, closed port)."""
import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.data.dataset import load_rows, load_videos
from engine.data.flash import fine_captions
from engine.data.synthetic import make_dataset
from engine.errors import SynthError
from engine.model import load_policy
from engine.rollout.backend import Request, SamplingParams
from engine.rollout.hf_backend import HFBackend
from engine.synth.caption_space import CaptionSpace, Trajectory
from engine.synth.openai_agent import OpenAIChatAgent, hermes_messages
from engine.synth.openai_server import serve_chat_model

HOST = "127.0.0.1"  # every server here listens on loopback only
MAX_TOKENS = 24
MESSAGES = [{"role": "system", "content": "You answer questions about a video."},
            {"role": "user", "content": "What colour is the brief flash?"}]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def served():
    server, thread, base_url = serve_chat_model(None, host=HOST, port=0)
    yield base_url
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def tiny():
    return load_policy(None)


def agent(base_url: str, **kw) -> OpenAIChatAgent:
    kw = {"temperature": 0.0, "max_tokens": MAX_TOKENS, "timeout_s": 30.0, "retries": 0} | kw
    return OpenAIChatAgent(base_url, "tiny", **kw)


def direct_greedy(model, tokenizer, messages: list[dict]) -> str:
    """What the server should answer at temperature 0, computed without HTTP."""
    text = tokenizer.apply_chat_template(hermes_messages(messages), add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_new_tokens=MAX_TOKENS, temperature=0.0, seed=0,
                            stop_token_ids=(tokenizer.convert_tokens_to_ids("<|im_end|>"),))
    gen = HFBackend(model.eval(), tokenizer).generate([Request(ids, [], params)])[0]
    return tokenizer.decode(gen.token_ids, skip_special_tokens=True)


def post(url: str, data: bytes) -> tuple[int, dict]:
    """(status, JSON body) of a raw POST, without the agent."""
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with NO_PROXY.open(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextlib.contextmanager
def stub_server(replies: list[tuple[int, bytes]], delay_s: float = 0.0):
    """A server answering POSTs with `replies` in order (the last one repeats); yields (base_url, seen requests)."""
    seen: list[dict] = []

    class Stub(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
            time.sleep(delay_s)
            status, data = replies[min(len(seen), len(replies)) - 1]
            with contextlib.suppress(ConnectionError):  # a client that timed out has hung up
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((HOST, 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def completion(content) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop"}]}).encode()


# ---------------------------------------------------------------------------------------- the tiny model


def test_act_returns_the_models_text_and_is_seeded(served, tiny):
    # Greedy: exactly what HFBackend makes of the same prompt ids.
    greedy = agent(served).act(MESSAGES, seed=1)
    assert greedy and greedy == direct_greedy(*tiny, MESSAGES)
    # Sampled: the seed fixes the text, and a different seed gives a different one.
    sampled = agent(served, temperature=1.0)
    first = sampled.act(MESSAGES, seed=7)
    assert sampled.act(MESSAGES, seed=7) == first
    assert sampled.act(MESSAGES, seed=8) != first


def test_tool_messages_are_sent_as_tool_responses(served, tiny):
    messages = MESSAGES + [{"role": "assistant", "content": '<tool_call>\n{"name": "caption_zoom", '
                                                            '"arguments": {"start": 0, "end": 2}}\n</tool_call>'},
                           {"role": "tool", "content": "caption_zoom 00:00-00:02:\n00:00 the screen is grey"}]
    assert hermes_messages(messages)[-1] == {
        "role": "user", "content": "<tool_response>\ncaption_zoom 00:00-00:02:\n00:00 the screen is grey\n</tool_response>"}
    assert hermes_messages(messages)[:-1] == messages[:-1]
    assert agent(served).act(messages, seed=0) == direct_greedy(*tiny, messages)
    # The server takes a bare "tool" message too (no tool_call_id), as the client's conversion does.
    status, body = post(f"{served}/chat/completions",
                        json.dumps({"model": "tiny", "messages": messages, "max_tokens": 4, "seed": 0}).encode())
    assert status == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] <= 4


def test_server_answers_bad_requests_with_400(served):
    status, body = post(f"{served}/chat/completions", b"{not json")
    assert status == 400 and "JSON" in body["error"]["message"]
    status, body = post(f"{served}/chat/completions", json.dumps({"model": "tiny"}).encode())
    assert status == 400 and "messages" in body["error"]["message"]
    with NO_PROXY.open(f"{served}/models", timeout=30) as r:
        assert json.loads(r.read())["data"][0]["id"] == "tiny"


def test_a_400_raises_synth_error_naming_the_status(served):
    with pytest.raises(SynthError, match=r"HTTP 400.*messages") as e:
        agent(served).act([], seed=0)
    assert f"{served}/chat/completions" in str(e.value)


def test_the_agent_drives_a_caption_space_episode(served, tmp_path):
    paths = make_dataset(tmp_path, num_videos=4, seed=0, width=128, height=96, fps=2, duration_s=16,
                         eval_fraction=0.25, task="flash")
    records, rows = load_videos(paths.dir), load_rows(paths.train_jsonl)
    row = rows[0]
    system = ("You answer questions about a video from its captions. Call a tool with "
              '<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>; tools: clip_retrieval(query, topk), '
              "caption_zoom(start, end). Finish with <answer>LETTER</answer>.")
    user = row.question + "\n" + "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(row.options))
    traj = CaptionSpace(records, fine_captions).run(agent(served, temperature=1.0), row, system, user, seed=0)
    assert isinstance(traj, Trajectory) and traj.row_id == row.id
    assert sum(t.role == "assistant" for t in traj.turns) >= 1
    assert isinstance(traj.correct, bool)


# ---------------------------------------------------------------------------------------- stub servers


def test_request_body_and_headers():
    with stub_server([(200, completion("<answer>A</answer>"))]) as (url, seen):
        a = OpenAIChatAgent(url + "/", "m", temperature=0.5, max_tokens=9, api_key="k3y", retries=0)
        assert a.act(MESSAGES + [{"role": "tool", "content": "obs"}], seed=42) == "<answer>A</answer>"
    (req,) = seen
    assert req["path"] == "/v1/chat/completions"  # the trailing slash of base_url is dropped
    assert req["headers"]["Authorization"] == "Bearer k3y"
    assert json.loads(req["body"]) == {"model": "m", "temperature": 0.5, "max_tokens": 9, "seed": 42,
                                       "messages": MESSAGES + [{"role": "user",
                                                                "content": "<tool_response>\nobs\n</tool_response>"}]}
    with stub_server([(200, completion("x"))]) as (url, seen):
        OpenAIChatAgent(url, "m", retries=0).act(MESSAGES, seed=0)
    assert "Authorization" not in seen[0]["headers"]


def test_5xx_is_retried_and_4xx_is_not():
    with stub_server([(503, b'{"error": "busy"}'), (200, completion("ok"))]) as (url, seen):
        assert agent(url, retries=1).act(MESSAGES, seed=0) == "ok"
    assert len(seen) == 2
    with stub_server([(500, b"boom")]) as (url, seen):
        with pytest.raises(SynthError, match=r"HTTP 500.*boom.*2 attempts"):
            agent(url, retries=1).act(MESSAGES, seed=0)
    assert len(seen) == 2
    with stub_server([(404, b"no such model " + b"x" * 500)]) as (url, seen):
        with pytest.raises(SynthError, match="HTTP 404") as e:
            agent(url, retries=2).act(MESSAGES, seed=0)
    assert len(seen) == 1
    assert "x" * 200 not in str(e.value)  # only the body's first 200 characters are quoted


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'{"choices": []}', b'{"error": {"message": "no"}}',
                                  completion(None), b"\xff\xfe"])
def test_malformed_answers_raise_synth_error(body):
    with stub_server([(200, body)]) as (url, _):
        with pytest.raises(SynthError, match=f"POST {url}/chat/completions"):
            agent(url).act(MESSAGES, seed=0)


def test_a_slow_server_times_out():
    with stub_server([(200, completion("late"))], delay_s=1.5) as (url, seen):
        t0 = time.monotonic()
        with pytest.raises(SynthError, match="timed out"):
            agent(url, timeout_s=0.3, retries=2).act(MESSAGES, seed=0)
        assert time.monotonic() - t0 < 1.2
    assert len(seen) == 1  # a timeout is not retried


def test_a_closed_port_raises_quickly():
    with socket.socket() as s:  # a port that was free a moment ago, now closed
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(SynthError, match=rf"{port}/v1/chat/completions: connection refused \(2 attempts\)"):
        agent(f"http://{HOST}:{port}/v1", timeout_s=2.0, retries=1).act(MESSAGES, seed=0)
    assert time.monotonic() - t0 < 3.0
