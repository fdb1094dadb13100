"""VLM occlusion judge (paper A.3, Fig. 11) against a real OpenAI-compatible HTTP server on loopback.

The server decodes the PNG it is sent and answers from its content: the view is "occluded" (1)
when it holds red pixels (the test's occluder colour), else 0. It checks the model name, the
Bearer key, the Fig. 11 prompt and the target label; the model name picks its answer format.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from hiscene_sim.backends import BackendError
from hiscene_sim.occlusion.verdict import Occlusion, OcclusionVerdict
from hiscene_sim.occlusion.vlm import (
    ENV_BASE_URL,
    ENV_MODEL,
    VlmConfig,
    VlmError,
    VlmOcclusionJudge,
    build_prompt,
    parse_vlm_answer,
)

API_KEY = "sk-test-SECRET-4f9a1c77e2"
MODES = ("fig11", "prose", "garbage", "missing2", "slow", "flaky500")
FIG11_FIXED_TEXT = "Please answer 0 for no occlusion, 1 for occlusion, or 2 for unable to determine."


# --------------------------------------------------------------------------------------------
# the loopback server


@dataclass
class SeenRequest:
    """What the server saw in one POST."""

    model: str
    label: str
    has_red: bool
    temperature: float | None


@dataclass
class FakeVlm:
    """State shared with the handler threads."""

    api_key: str = API_KEY
    attempts: dict[str, int] = field(default_factory=dict)
    seen: list[SeenRequest] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""


def _decode_data_url_png(url: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    if not url.startswith(prefix):
        raise ValueError("image_url is not a base64 PNG data URL")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :]))).convert("RGB"))


def _has_red(img: np.ndarray) -> bool:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return bool(np.any((r > 200) & (g < 60) & (b < 60)))


def _answer_text(mode: str, label: str, occluded: bool) -> str:
    """The model's reply in the format ``mode`` asks for, computed from the image content."""
    value = "1" if occluded else "0"
    desc = f"A {label} with a red box in front" if occluded else f"A {label} alone on a grey floor"
    why = f"The red box partially covers the {label}" if occluded else f"Nothing covers the {label}"
    if mode in ("fig11", "flaky500", "slow"):  # fenced, trailing comma, "2" as a string: exactly the figure's format
        return f'```json\n{{\n  "1": "{desc}",\n  "2": "{value}",\n  "2_description": "{why}",\n}}\n```'
    if mode == "prose":  # stray prose around bare JSON, "2" as a number
        return f'Sure! Here is my analysis:\n{{"1": "{desc}", "2": {value}, "2_description": "{why}"}}\nHope this helps.'
    if mode == "missing2":
        return f'```json\n{{"1": "{desc}", "2_description": "{why}"}}\n```'
    return f"I think the {label} is probably fine, hard to say really."  # garbage: no JSON at all


def _make_handler(state: FakeVlm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def _reject(self, status: int, why: str) -> None:
            with state.lock:
                state.rejected.append(why)
            self._send(status, {"error": {"message": why, "type": "invalid_request_error"}})

        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path != "/v1/chat/completions":
                return self._reject(404, f"no route {self.path}")
            if self.headers.get("Authorization") != f"Bearer {state.api_key}":
                return self._reject(401, "Incorrect API key provided")
            model = body.get("model", "")
            if model not in MODES:
                return self._reject(404, f"model {model!r} does not exist")
            with state.lock:
                state.attempts[model] = state.attempts.get(model, 0) + 1
                attempt = state.attempts[model]
            try:
                parts = body["messages"][0]["content"]
                prompt = next(p["text"] for p in parts if p["type"] == "text")
                image = _decode_data_url_png(next(p["image_url"]["url"] for p in parts if p["type"] == "image_url"))
            except (KeyError, IndexError, StopIteration, ValueError, OSError) as err:
                return self._reject(400, f"bad request body: {err}")
            label_match = re.search(r"The target object is \*\*(.+?)\*\*\.", prompt)
            if FIG11_FIXED_TEXT not in prompt or label_match is None:
                return self._reject(400, "not the Fig. 11 prompt")
            label, red = label_match.group(1), _has_red(image)
            with state.lock:
                state.seen.append(SeenRequest(model, label, red, body.get("temperature")))
            if model == "slow":
                state.release.wait(timeout=5.0)  # far past the client's timeout
            if model == "flaky500" and attempt == 1:
                return self._send(500, {"error": {"message": "transient failure"}}, {"retry-after-ms": "20"})
            content = _answer_text(model, label, red)
            self._send(
                200,
                {
                    "id": f"chatcmpl-{attempt}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 600, "completion_tokens": 40, "total_tokens": 640},
                },
            )

    return Handler


@pytest.fixture()
def server(monkeypatch) -> Iterator[FakeVlm]:
    """A fresh loopback server per test; a bogus proxy in the environment must be ignored."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # discard port: a proxied request would fail
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    state = FakeVlm()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


def _judge(server: FakeVlm, model: str, **overrides) -> VlmOcclusionJudge:
    cfg = {"base_url": server.base_url, "model": model, "api_key": API_KEY, "timeout_s": 5.0, "max_retries": 0}
    cfg.update(overrides)
    return VlmOcclusionJudge(VlmConfig(**cfg))


def _view(occluded: bool) -> np.ndarray:
    """A 64x64 view: a brown table, and a red occluder box in front of it when ``occluded``."""
    img = np.full((64, 64, 3), 128, np.uint8)
    img[20:50, 8:56] = (120, 80, 40)
    if occluded:
        img[30:60, 20:36] = (230, 20, 20)
    return img


_MASK = np.zeros((64, 64), bool)


# --------------------------------------------------------------------------------------------
# judge against the server


@pytest.mark.parametrize("mode", ["fig11", "prose"])
@pytest.mark.parametrize("occluded", [True, False])
def test_answer_follows_image_content(server, mode, occluded):
    judge = _judge(server, mode)
    verdict = judge.judge(_view(occluded), "table", _MASK, _MASK)
    assert verdict.occlusion is (Occlusion.OCCLUDED if occluded else Occlusion.NOT_OCCLUDED)
    assert verdict.backend == "vlm" == judge.name
    assert "table" in verdict.description and "table" in verdict.reason
    assert server.rejected == []
    (seen,) = server.seen
    assert (seen.model, seen.label, seen.has_red, seen.temperature) == (mode, "table", occluded, 0)


def test_malformed_answer_is_undetermined(server):
    verdict = _judge(server, "garbage").judge(_view(True), "office chair", _MASK, _MASK)
    assert verdict.occlusion is Occlusion.UNDETERMINED
    assert "not JSON" in verdict.reason
    assert server.seen[0].label == "office chair"


def test_missing_key_2_is_undetermined(server):
    verdict = _judge(server, "missing2").judge(_view(True), "table", _MASK, _MASK)
    assert verdict.occlusion is Occlusion.UNDETERMINED
    assert "lacked key '2'" in verdict.reason
    assert "red box" in verdict.description  # question 1 still kept


def test_slow_server_times_out_with_vlm_error(server):
    judge = _judge(server, "slow", timeout_s=0.5, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(VlmError) as info:
        judge.judge(_view(True), "table", _MASK, _MASK)
    elapsed = time.perf_counter() - t0
    assert elapsed < 3.0  # 2 x 0.5 s + one backoff (<= 0.5 s), far below the server's 5 s
    assert server.attempts["slow"] == 2  # first try + one retry
    msg = str(info.value)
    assert server.base_url in msg and "'slow'" in msg and "timed out" in msg
    assert API_KEY not in msg
    assert isinstance(info.value, RuntimeError)


def test_first_attempt_500_is_retried(server):
    verdict = _judge(server, "flaky500", max_retries=1).judge(_view(False), "table", _MASK, _MASK)
    assert verdict.occlusion is Occlusion.NOT_OCCLUDED
    assert server.attempts["flaky500"] == 2


def test_500_without_retries_raises(server):
    with pytest.raises(VlmError, match="HTTP 500"):
        _judge(server, "flaky500", max_retries=0).judge(_view(False), "table", _MASK, _MASK)
    assert server.attempts["flaky500"] == 1


def test_wrong_key_is_rejected_and_never_leaked(server, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-KEY-0000"
    with pytest.raises(VlmError, match="HTTP 401") as info:
        _judge(server, "fig11", api_key=wrong).judge(_view(True), "table", _MASK, _MASK)
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert server.rejected == ["Incorrect API key provided"]


def test_api_key_never_in_logs(server, caplog, monkeypatch):
    monkeypatch.setenv("MY_VLM_KEY", API_KEY)
    caplog.set_level(logging.DEBUG)  # every logger, openai's and httpx's included
    judge = VlmOcclusionJudge(VlmConfig(base_url=server.base_url, model="fig11", api_key_env="MY_VLM_KEY", max_retries=0))
    assert judge.judge(_view(True), "table", _MASK, _MASK).occlusion is Occlusion.OCCLUDED
    with pytest.raises(VlmError):
        _judge(server, "slow", timeout_s=0.3).judge(_view(True), "table", _MASK, _MASK)
    assert API_KEY not in caplog.text
    assert all(API_KEY not in r.getMessage() and API_KEY not in str(r.args) for r in caplog.records)
    assert API_KEY not in repr(judge) and API_KEY not in repr(judge.config)
    ours = [r.getMessage() for r in caplog.records if r.name == "hiscene_sim.occlusion.vlm"]
    assert any(server.base_url in m and "fig11" in m and "latency=" in m and "OCCLUDED" in m for m in ours)


# --------------------------------------------------------------------------------------------
# configuration


def test_missing_config_raises_backend_error_before_any_request(server, monkeypatch):
    for var in (ENV_BASE_URL, ENV_MODEL, "OPENAI_API_KEY", "MY_VLM_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(BackendError, match=ENV_BASE_URL):
        VlmOcclusionJudge()
    with pytest.raises(BackendError, match=ENV_MODEL):
        VlmOcclusionJudge(VlmConfig(base_url=server.base_url))
    with pytest.raises(BackendError, match="MY_VLM_KEY"):
        VlmOcclusionJudge(VlmConfig(base_url=server.base_url, model="fig11", api_key_env="MY_VLM_KEY"))
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        VlmOcclusionJudge(VlmConfig.from_dict({"base_url": server.base_url, "model": "fig11"}))
    assert server.attempts == {} and server.seen == []
    # a keyless local server is allowed when asked for
    VlmOcclusionJudge(VlmConfig(base_url=server.base_url, model="fig11", require_api_key=False)).close()


def test_config_from_dict_and_env():
    env = {ENV_BASE_URL: "http://10.0.0.5:8000/v1", ENV_MODEL: "qwen2.5-vl", "OPENAI_API_KEY": API_KEY}
    cfg = VlmConfig.from_dict({}, env)
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.temperature) == ("http://10.0.0.5:8000/v1", "qwen2.5-vl", None, 0.0)
    assert cfg.resolve_api_key(env) == API_KEY
    cfg = VlmConfig.from_dict({"model": "gpt-4o", "timeout_s": 3, "api_key": "direct"}, env)
    assert (cfg.base_url, cfg.model, cfg.timeout_s, cfg.resolve_api_key(env)) == ("http://10.0.0.5:8000/v1", "gpt-4o", 3, "direct")
    assert "direct" not in repr(cfg)
    assert VlmConfig.from_env({}).base_url is None
    with pytest.raises(BackendError, match="bogus"):
        VlmConfig.from_dict({"bogus": 1}, env)


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, hiscene_sim.occlusion.vlm; assert 'openai' not in sys.modules, 'openai imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_prompt_is_fig11():
    prompt = build_prompt("  side   table ")
    assert "The target object is **side table**." in prompt
    assert prompt.startswith("You are an image annotation expert.")
    assert FIG11_FIXED_TEXT in prompt
    assert '"2_description": "The lamp partially cover the nightstand",\n}' in prompt  # the figure's example, as is
    with pytest.raises(ValueError):
        build_prompt("  ")


# --------------------------------------------------------------------------------------------
# parse_vlm_answer


O, N, U = Occlusion.OCCLUDED, Occlusion.NOT_OCCLUDED, Occlusion.UNDETERMINED
FIG11_EXAMPLE = '```\n{\n  "1": "A wooden nightstand with a lamp",\n  "2": "1",\n  "2_description": "The lamp partially cover the nightstand",\n}\n```'


@pytest.mark.parametrize(
    ("text", "occlusion", "reason_part"),
    [
        (FIG11_EXAMPLE, O, "lamp partially"),
        ('```json\n{"1": "a table", "2": "0", "2_description": "nothing in front"}\n```', N, "nothing in front"),
        ('{"1": "a table", "2": 2, "2_description": "too dark"}', U, "too dark"),
        ('Answer: {"1": "x", "2": 1, "2_description": "chair covers it"} -- done', O, "chair covers it"),
        ("{'1': 'a table', '2': '1', '2_description': \"the lamp's shade covers it\",}", O, "lamp's shade"),
        ('{"1": "a", "2": " 0 ", "2_description": "clear view"}', N, "clear view"),
        ('{"1": "a", "2": 1.0, "2_description": "r"}', O, "r"),
        ('{"1": "a", "2": "1 (occluded)", "2_description": "r"}', O, "r"),
        ("{\u201c1\u201d: \u201ca\u201d, \u201c2\u201d: \u201c0\u201d, \u201c2_description\u201d: \u201cok\u201d}", N, "ok"),
        ('```\n{"1": "a", "2": "1", "2_description": "brace } inside a string"}\n```', O, "brace } inside"),
        ('pre {"note": "not the answer"} ```json\n{"1": "a", "2": "0"}\n```', N, ""),
        ('{"1": "a", "2": "1", "2_description": "cut off mid', O, ""),  # truncated: salvaged by pattern
        ('{"1": "a table", "2_description": "why"}', U, "lacked key '2'"),
        ('{"1": "a", "2": "3"}', U, "invalid '2'"),
        ('{"1": "a", "2": "yes"}', U, "invalid '2'"),
        ('{"1": "a", "2": true}', U, "invalid '2'"),
        ('{"1": "a", "2": null}', U, "invalid '2'"),
        ("[1, 2, 3]", U, "not JSON"),
        ("The table is occluded by a chair.", U, "not JSON"),
        ("", U, "empty"),
        ("   \n ", U, "empty"),
        ("{{{{", U, "not JSON"),
    ],
)
def test_parse_vlm_answer(text, occlusion, reason_part):
    verdict = parse_vlm_answer(text)
    assert isinstance(verdict, OcclusionVerdict)
    assert verdict.occlusion is occlusion
    assert reason_part in verdict.reason
    assert verdict.backend == "vlm"


def test_parse_keeps_description():
    verdict = parse_vlm_answer(FIG11_EXAMPLE)
    assert verdict.description == "A wooden nightstand with a lamp"
    assert parse_vlm_answer(None).occlusion is U
