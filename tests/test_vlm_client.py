"""The VLM client's request parameters against a real HTTP server on loopback that behaves like
OpenAI's chat-completions endpoint for reasoning models: ``max_tokens`` and ``temperature`` are
refused with HTTP 400 and OpenAI's error bodies (the bodies below are OpenAI's, as returned for
o1 / o3 / gpt-5 models), and like an older server that does not know ``max_completion_tokens``.
Every test checks the request bodies the server received."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from hiscene_sim.vlm_client import (  # noqa: E402
    VlmChat,
    VlmConfig,
    VlmError,
    is_reasoning_model,
    refused_parameter,
    refused_parameters,
    sampling_parameters,
)

API_KEY = "sk-test-client-7c1e"
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "Name the object in one word."}]}]

# OpenAI's answers to a reasoning model sent max_tokens / temperature=0
MAX_TOKENS_REFUSED = {"error": {
    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}
TEMPERATURE_REFUSED = {"error": {
    "message": "Unsupported value: 'temperature' does not support 0 with this model. Only the default (1) value is supported.",
    "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}}
# an older OpenAI-compatible server (Azure's before API version 2024-09-01-preview) on max_completion_tokens
MAX_COMPLETION_TOKENS_UNKNOWN = {"error": {
    "message": "Unrecognized request argument supplied: max_completion_tokens", "type": "invalid_request_error",
    "param": None, "code": None}}


@dataclass
class Endpoint:
    """The server's state: every request body it received, per model."""

    bodies: dict[str, list[dict]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def of(self, model: str) -> list[dict]:
        with self.lock:
            return list(self.bodies.get(model, []))


def _answer(model: str, content: str, finish: str = "stop") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}}


def _handler(state: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path != "/v1/chat/completions" or self.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self._send(401, {"error": {"message": "Incorrect API key provided"}})
            model = body.get("model", "")
            with state.lock:
                state.bodies.setdefault(model, []).append(body)
            reasoning_like = is_reasoning_model(model) or model == "my-reasoner"  # an alias of one
            if reasoning_like and "max_tokens" in body:
                return self._send(400, MAX_TOKENS_REFUSED)
            if reasoning_like and "temperature" in body and body["temperature"] != 1:
                return self._send(400, TEMPERATURE_REFUSED)
            if model == "legacy-vlm" and "max_completion_tokens" in body:
                return self._send(400, MAX_COMPLETION_TOKENS_UNKNOWN)
            if model == "bad-image":
                return self._send(400, {"error": {"message": "Invalid image: could not decode", "type": "invalid_request_error",
                                                  "param": None, "code": "invalid_image"}})
            if model == "thinks-long":  # spends the whole cap on hidden reasoning
                return self._send(200, _answer(model, "", finish="length"))
            return self._send(200, _answer(model, "mug"))

    return Handler


@pytest.fixture()
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"  # a new port: a new session memory key
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


def _chat(endpoint: Endpoint, model: str, **overrides) -> VlmChat:
    cfg = {"base_url": endpoint.base_url, "model": model, "api_key": API_KEY, "timeout_s": 5.0, "max_retries": 0}
    cfg.update(overrides)
    return VlmChat(VlmConfig(**cfg))


def test_ordinary_model_gets_max_completion_tokens_and_temperature(endpoint):
    chat = _chat(endpoint, "gpt-4o")
    assert chat.complete(MESSAGES)[0] == "mug"
    (body,) = endpoint.of("gpt-4o")
    assert body["max_completion_tokens"] == 300 and body["temperature"] == 0
    assert "max_tokens" not in body
    chat.close()


@pytest.mark.parametrize("model", ["o3-mini", "gpt-5-mini", "openai/o4-mini"])
def test_reasoning_model_is_asked_without_temperature_and_max_tokens(endpoint, model, caplog):
    caplog.set_level(logging.WARNING)
    chat = _chat(endpoint, model)
    assert chat.complete(MESSAGES)[0] == "mug"
    (body,) = endpoint.of(model)  # one request: nothing the server refuses was sent
    assert "temperature" not in body and "max_tokens" not in body
    assert body["max_completion_tokens"] == 300 + VlmConfig().reasoning_tokens  # hidden reasoning counts against it
    assert "refused" not in caplog.text
    chat.close()


def test_alias_of_a_reasoning_model_is_retried_without_temperature_once_per_session(endpoint, caplog):
    caplog.set_level(logging.WARNING)
    chat = _chat(endpoint, "my-reasoner")  # the name does not say it is a reasoning model
    assert chat.complete(MESSAGES)[0] == "mug"
    first, retry = endpoint.of("my-reasoner")
    assert first["temperature"] == 0 and first["max_completion_tokens"] == 300  # refused with HTTP 400 ...
    assert "temperature" not in retry and retry["max_completion_tokens"] == 300  # ... and asked again without it
    assert "max_tokens" not in first and "max_tokens" not in retry
    assert refused_parameters(endpoint.base_url, "my-reasoner") == {"temperature"}
    assert "refused 'temperature'" in caplog.text and API_KEY not in caplog.text
    # remembered for the session: another client (the labeller after the judge) does not send it again
    other = _chat(endpoint, "my-reasoner")
    assert other.complete(MESSAGES)[0] == "mug"
    assert len(endpoint.of("my-reasoner")) == 3 and "temperature" not in endpoint.of("my-reasoner")[2]
    chat.close()
    other.close()


def test_server_without_max_completion_tokens_gets_max_tokens(endpoint):
    chat = _chat(endpoint, "legacy-vlm", max_tokens=50)
    assert chat.complete(MESSAGES)[0] == "mug"
    first, retry = endpoint.of("legacy-vlm")
    assert first["max_completion_tokens"] == 50 and "max_tokens" not in first
    assert retry["max_tokens"] == 50 and "max_completion_tokens" not in retry and retry["temperature"] == 0
    assert chat.complete(MESSAGES)[0] == "mug"
    assert endpoint.of("legacy-vlm")[2]["max_tokens"] == 50  # straight to the old name now
    chat.close()


def test_the_openai_max_tokens_refusal_is_read_from_a_real_response(endpoint):
    """Sent max_tokens anyway (through the openai client itself), the server answers with OpenAI's
    body; the client reads the refused parameter from the resulting BadRequestError."""
    import openai

    client = openai.OpenAI(base_url=endpoint.base_url, api_key=API_KEY, max_retries=0,
                           http_client=openai.DefaultHttpxClient(trust_env=False))
    sent = {"model": "o3", "messages": MESSAGES, "max_tokens": 300, "temperature": 0}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**sent)
    assert refused_parameter(info.value, sent) == "max_tokens"
    assert refused_parameter(info.value, {"temperature": 0}) is None  # only what was sent
    assert sampling_parameters(VlmConfig(model="o3"), frozenset({"max_tokens"})) == {"max_completion_tokens": 300 + 4096}
    client.close()


def test_other_400s_are_not_retried(endpoint):
    chat = _chat(endpoint, "bad-image")
    with pytest.raises(VlmError, match="HTTP 400") as info:
        chat.complete(MESSAGES)
    assert len(endpoint.of("bad-image")) == 1 and "Invalid image" in str(info.value)
    chat.close()


def test_temperature_none_and_cap_none_send_neither(endpoint):
    chat = _chat(endpoint, "gpt-4o", temperature=None, max_tokens=None)
    chat.complete(MESSAGES)
    (body,) = endpoint.of("gpt-4o")
    assert not {"temperature", "max_tokens", "max_completion_tokens"} & set(body)
    chat.close()


def test_an_answer_cut_by_the_cap_is_logged(endpoint, caplog):
    caplog.set_level(logging.WARNING)
    assert _chat(endpoint, "thinks-long").complete(MESSAGES)[0] == ""
    assert "length cap" in caplog.text and "max_completion_tokens" in caplog.text
