"""A caption-space agent backed by any chat model behind an OpenAI-compatible endpoint (e.g. `vllm serve`).

`OpenAIChatAgent.act` POSTs the conversation to `{base_url}/chat/completions` and returns the reply's
text, which `engine.synth.caption_space.CaptionSpace` then parses for a Hermes tool call or an answer.
Only the standard library is used (urllib), so synthesis needs no client package.

Tool results: the caption space calls tools through Hermes text blocks (`<tool_call>...</tool_call>`),
not structured `tool_calls`, so its "tool" messages carry no `tool_call_id`, and many servers (vLLM
among them) reject such messages. Before sending, every "tool" message becomes the user turn Qwen-style
chat templates render a tool result as: `<tool_response>\\n{content}\\n</tool_response>`
(`hermes_messages`). The model therefore reads the same prompt either way.

Failures raise `engine.errors.SynthError` naming the URL and what went wrong. Connection errors and
5xx answers are retried (`retries` times, short exponential backoff); 4xx answers are not (the same
request would fail again), nor are timeouts (a server too slow for `timeout_s` would only be loaded
further while the caller waits `retries` times as long).
"""
from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request

from engine.errors import SynthError

BACKOFF_S = 0.5  # wait before the first retry; doubles with each further retry
SNIPPET_CHARS = 200  # how much of a bad answer's body an error message quotes


def hermes_messages(messages: list[dict]) -> list[dict]:
    """`messages` with each "tool" message replaced by a user turn wrapping its content in <tool_response>."""
    return [{"role": "user", "content": f"<tool_response>\n{m['content']}\n</tool_response>"}
            if m.get("role") == "tool" else m for m in messages]


class OpenAIChatAgent:
    """Any chat model behind an OpenAI-compatible endpoint, as a caption-space agent (CaptionAgent)."""

    def __init__(self, base_url: str, model: str, temperature: float = 0.7, max_tokens: int = 256,
                 api_key: str | None = None, timeout_s: float = 60.0, retries: int = 2):
        if not base_url:
            raise ValueError("base_url must be given, e.g. http://127.0.0.1:8000/v1")
        if not temperature >= 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.temperature, self.max_tokens = model, temperature, max_tokens
        self.api_key, self.timeout_s, self.retries = api_key, timeout_s, retries
        # Connect directly: a proxy from the environment would carry a local server's traffic elsewhere.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def act(self, messages: list[dict], seed: int) -> str:
        """The model's next assistant turn for `messages`, sampled with `seed`."""
        body = {"model": self.model, "messages": hermes_messages(messages), "temperature": self.temperature,
                "max_tokens": self.max_tokens, "seed": seed}
        return self._content(self._post(json.dumps(body).encode()))

    def _post(self, data: bytes) -> bytes:
        """The body of a 2xx answer to POST `data`, retrying connection errors and 5xx answers."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        where = f"POST {self.url}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    return response.read()
            except urllib.error.HTTPError as e:  # before URLError: it is one
                error = SynthError(f"{where}: HTTP {e.code} {e.reason}: {_snippet(_read_error_body(e))}")
                if e.code < 500:
                    raise error from e
                last = e
            except TimeoutError as e:  # no answer in time (read): not retried, see the module docstring
                raise SynthError(f"{where}: timed out after {self.timeout_s:g} s") from e
            except urllib.error.URLError as e:  # could not connect
                if isinstance(e.reason, TimeoutError):
                    raise SynthError(f"{where}: timed out connecting after {self.timeout_s:g} s") from e
                what = "connection refused" if isinstance(e.reason, ConnectionRefusedError) else f"cannot connect ({e.reason})"
                error, last = SynthError(f"{where}: {what}"), e
            except (ConnectionError, http.client.HTTPException) as e:  # dropped mid-answer
                error, last = SynthError(f"{where}: connection lost ({type(e).__name__}: {e})"), e
        tries = "1 attempt" if self.retries == 0 else f"{self.retries + 1} attempts"
        raise SynthError(f"{error} ({tries})") from last

    def _content(self, raw: bytes) -> str:
        """choices[0].message.content of a chat completion body."""
        where = f"POST {self.url}"
        try:
            payload = json.loads(raw)
        except ValueError as e:  # also bad UTF-8
            raise SynthError(f"{where}: the answer is not JSON ({e}): {_snippet(raw)}") from e
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise SynthError(f"{where}: the answer has no choices[0].message.content: {_snippet(raw)}") from e
        if not isinstance(content, str):
            raise SynthError(f"{where}: choices[0].message.content is {type(content).__name__}, not text: {_snippet(raw)}")
        return content


def _read_error_body(e: urllib.error.HTTPError) -> bytes:
    try:
        return e.read()
    except OSError:  # the body is only for the message; a broken one must not hide the status
        return b""


def _snippet(raw: bytes) -> str:
    return repr(raw.decode("utf-8", errors="replace")[:SNIPPET_CHARS])
