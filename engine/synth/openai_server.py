"""A minimal OpenAI-compatible chat server over the project's transformers backend (for tests and local runs).

`serve_chat_model` serves POST /v1/chat/completions and GET /v1/models from a daemon thread, generating
with `engine.rollout.hf_backend.HFBackend`, so `engine.synth.openai_agent.OpenAIChatAgent` can be run
end to end without vLLM. Deliberately small:

* text only: message content must be a string (no content parts, no videos);
* no `tools` / `tool_calls`: tool calls are Hermes text blocks in the reply, and "tool" messages are
  rendered as <tool_response> user turns, as the client sends them (`hermes_messages`);
* the request's `model` is not checked; `seed` defaults to a random one, as in the OpenAI API;
  `temperature` 0 is greedy; no streaming, n = 1, top_p = 1;
* one generation at a time (a lock): HFBackend is not thread-safe, and on a CPU concurrent requests
  would only fight over the same cores.

Bad requests get HTTP 400 with an OpenAI-style body, `{"error": {"message": ...}}`.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jinja2 import TemplateError

from engine.model import load_policy
from engine.rollout.backend import Request, SamplingParams, check_params
from engine.rollout.hf_backend import HFBackend
from engine.synth.openai_agent import hermes_messages

DEFAULT_MAX_TOKENS = 256


class BadRequest(ValueError):
    """A request this server answers with HTTP 400."""


class ChatModel:
    """Chat completions from one model: OpenAI request body in, OpenAI response body out."""

    def __init__(self, model, tokenizer, name: str):
        self.tokenizer, self.name = tokenizer, name
        self.backend = HFBackend(model.eval(), tokenizer)
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")  # ends an assistant turn
        self.lock = threading.Lock()
        self.created = int(time.time())

    def models(self) -> dict:
        return {"object": "list",
                "data": [{"id": self.name, "object": "model", "created": self.created, "owned_by": "vthink"}]}

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """Token ids of the chat prompt for `messages`, ending with the assistant generation header."""
        try:
            text = self.tokenizer.apply_chat_template(hermes_messages(messages), add_generation_prompt=True,
                                                      tokenize=False)
        except TemplateError as e:  # the template refuses unknown roles and content types
            raise BadRequest(f"messages cannot be rendered: {e}") from e
        # The template already wrote every control token; nothing may be added around it.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def complete(self, body: dict) -> dict:
        messages, params = _parse(body, self.end_id)
        ids = self.prompt_ids(messages)
        request = Request(ids, [], params)
        with self.lock:
            try:
                self.backend.check(request)
            except ValueError as e:  # e.g. vision placeholders typed into a text message
                raise BadRequest(str(e)) from e
            gen = self.backend.generate([request])[0]
        text = self.tokenizer.decode(gen.token_ids, skip_special_tokens=True)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": gen.finish_reason}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": len(gen.token_ids),
                          "total_tokens": len(ids) + len(gen.token_ids)}}


def _parse(body: dict, end_id: int) -> tuple[list[dict], SamplingParams]:
    """(messages, sampling params stopping at end_id) of a chat completion request; BadRequest says what is wrong."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise BadRequest(f"messages[{i}] must be an object with a string 'role' and a string 'content'")
    max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS)
    temperature = body.get("temperature", 1.0)
    seed = body.get("seed")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise BadRequest(f"'max_tokens' must be an integer, got {max_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise BadRequest(f"'temperature' must be a number, got {temperature!r}")
    if seed is None:
        seed = secrets.randbits(63)
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise BadRequest(f"'seed' must be an integer, got {seed!r}")
    params = SamplingParams(max_new_tokens=max_tokens, temperature=float(temperature), seed=seed,
                            stop_token_ids=(end_id,))
    try:
        check_params(params)
    except ValueError as e:
        raise BadRequest(str(e)) from e
    return messages, params


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _handler(chat: ChatModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, chat.models())
            else:
                self._send(404, _error(f"no route GET {self.path}", "not_found_error"))

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, _error(f"no route POST {self.path}", "not_found_error"))
                return
            try:
                self._send(200, chat.complete(self._json_body()))
            except BadRequest as e:
                self._send(400, _error(str(e), "invalid_request_error"))
            except Exception as e:  # a server must answer, not drop the connection
                self._send(500, _error(f"{type(e).__name__}: {e}", "internal_error"))

        def _json_body(self) -> dict:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise BadRequest("bad Content-Length header") from None
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError as e:
                raise BadRequest(f"the body is not valid JSON: {e}") from e
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            return body

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass  # no line on stderr per request

    return Handler


def serve_chat_model(model_dir: str | None, host: str = "127.0.0.1", port: int = 0
                     ) -> tuple[ThreadingHTTPServer, threading.Thread, str]:
    """Serve `model_dir` (None: the embedded tiny model) on host:port (0: a free port) from a daemon thread.

    Returns (server, thread, base_url), base_url like http://127.0.0.1:PORT/v1. Stop it with
    `server.shutdown(); server.server_close()`.
    """
    model, tokenizer = load_policy(model_dir)
    chat = ChatModel(model, tokenizer, name="tiny" if model_dir is None else str(model_dir))
    server = ThreadingHTTPServer((host, port), _handler(chat))
    thread = threading.Thread(target=server.serve_forever, name="openai-chat-server", daemon=True)
    thread.start()
    return server, thread, f"http://{host}:{server.server_address[1]}/v1"
