"""An OpenAI-compatible chat-completions client for the stages that ask a VLM (the occlusion
judge of paper A.3, the object labeller): configuration from a dict and / or the environment
(``HISCENE_VLM_BASE_URL``, ``HISCENE_VLM_MODEL``, ``OPENAI_BASE_URL`` as a fallback, and the
API-key variable named by ``api_key_env``, default ``OPENAI_API_KEY``), images as PNG data
URLs, and transport errors as :class:`VlmError` with the key redacted.

The ``openai`` package is imported only when a client is built; the API key never appears in
log records, exception messages or the config's ``repr``.
"""

from __future__ import annotations

import ast
import base64
import io
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from hiscene_sim.backends import BackendError

logger = logging.getLogger(__name__)

ENV_BASE_URL = "HISCENE_VLM_BASE_URL"
ENV_MODEL = "HISCENE_VLM_MODEL"
ENV_OPENAI_BASE_URL = "OPENAI_BASE_URL"  # the openai client's own variable
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
MAX_SNIPPET = 120


def snippet(text: str) -> str:
    """``text`` on one line, cut to ``MAX_SNIPPET`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_SNIPPET else flat[: MAX_SNIPPET - 3] + "..."


_CURLY_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first candidate (fenced blocks first, then brace-balanced spans) that loads as a dict."""
    for candidate in _candidates(text):
        obj = _loads_lenient(candidate)
        if isinstance(obj, dict):
            return {str(k).strip().lower(): v for k, v in obj.items()}
    return None


def _candidates(text: str) -> Iterator[str]:
    for match in re.finditer(r"```[ \t]*[A-Za-z]*[ \t]*\n?(.*?)```", text, flags=re.DOTALL):
        yield match.group(1)
        yield from _brace_spans(match.group(1))
    yield from _brace_spans(text)


def _brace_spans(text: str) -> Iterator[str]:
    """Top-level ``{...}`` spans, skipping braces inside single- or double-quoted strings."""
    depth, start, quote, escaped = 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'" and depth > 0:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                yield text[start : i + 1]
    if depth > 0 and start >= 0:  # unbalanced (e.g. a truncated answer): try the first '{' to the last '}'
        end = text.rfind("}")
        if end > start:
            yield text[start : end + 1]


def _loads_lenient(candidate: str) -> Any:
    """``json.loads``, then without trailing commas / curly quotes, then as a Python literal (single quotes)."""
    candidate = candidate.strip()
    no_trailing = re.sub(r",\s*([}\]])", r"\1", candidate)
    straight = no_trailing.translate(_CURLY_QUOTES)
    for attempt in (candidate, no_trailing, straight):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    try:
        return ast.literal_eval(no_trailing)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


class VlmError(RuntimeError):
    """The VLM endpoint could not be reached or refused the request (after the client's retries)."""


@dataclass(frozen=True)
class VlmConfig:
    """Where and how to ask the VLM.

    Attributes:
        base_url: the OpenAI-compatible API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name sent in the request.
        api_key_env: name of the environment variable that holds the API key.
        api_key: the key itself; takes precedence over ``api_key_env``. Hidden from ``repr``.
        timeout_s: per-request timeout, seconds.
        max_retries: retries done by the ``openai`` client (timeouts, connection errors, 408/409/429/5xx).
        temperature: sampling temperature (0: deterministic answers).
        max_tokens: answer length cap; ``None`` leaves it to the server.
        require_api_key: when False a keyless local server is accepted (a placeholder key is sent).
    """

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 2
    temperature: float = 0.0
    max_tokens: int | None = 300
    require_api_key: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> VlmConfig:
        """Build a config from ``data`` (wins) and the environment (``HISCENE_VLM_BASE_URL``, ``HISCENE_VLM_MODEL``).

        The API key is not copied out of the environment here; :meth:`resolve_api_key` reads it
        when the judge is built. Unknown keys in ``data`` raise :class:`BackendError`.
        """
        data = dict(data or {})
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BackendError(f"unknown VLM config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        data.setdefault("base_url", env.get(ENV_BASE_URL) or env.get(ENV_OPENAI_BASE_URL) or None)
        data.setdefault("model", env.get(ENV_MODEL) or None)
        return cls(**data)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VlmConfig:
        """Shorthand for ``from_dict({}, environ)``."""
        return cls.from_dict({}, environ)

    def resolve_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The direct ``api_key`` if set, else the value of ``$api_key_env``, else ``None``."""
        if self.api_key:
            return self.api_key
        env = os.environ if environ is None else environ
        return env.get(self.api_key_env) or None

    def validate(self, environ: Mapping[str, str] | None = None, who: str = "VLM") -> str:
        """Check the config is usable and return the API key to send.

        Raises:
            BackendError: no base URL, no model, or no key while ``require_api_key``.
        """
        if not self.base_url:
            raise BackendError(f"{who}: no base URL (config key 'base_url', env var {ENV_BASE_URL} or {ENV_OPENAI_BASE_URL})")
        if not self.model:
            raise BackendError(f"{who}: no model (config key 'model' or env var {ENV_MODEL})")
        if self.timeout_s <= 0 or self.max_retries < 0:
            raise BackendError(f"{who}: 'timeout_s' must be > 0 and 'max_retries' >= 0")
        key = self.resolve_api_key(environ)
        if key is None:
            if self.require_api_key:
                raise BackendError(
                    f"{who}: no API key (config key 'api_key' or env var {self.api_key_env}); "
                    "set require_api_key=False for a keyless local server"
                )
            key = "no-key"
        return key


def encode_png_data_url(image: np.ndarray) -> str:
    """(H, W), (H, W, 3) or (H, W, 4) image -> ``data:image/png;base64,...``.

    uint8 is sent as is; float images are taken as [0, 1] and scaled.
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4); got shape {arr.shape}")
    if arr.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(arr.dtype, np.floating) else 1.0
        arr = np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class VlmChat:
    """One ``openai`` client for one configured endpoint: :meth:`complete` sends messages and
    returns the answer text.

    Raises (constructor):
        BackendError: incomplete configuration or ``openai`` not installed (before any request).
    """

    def __init__(self, config: VlmConfig, environ: Mapping[str, str] | None = None, who: str = "VLM") -> None:
        self.config = config
        key = config.validate(environ, who)
        self._secret = key
        try:
            import openai
        except ImportError as err:
            raise BackendError(f"{who} needs the 'openai' package (pip install 'openai>=1.30')") from err
        self._openai = openai
        http_client = None
        if is_loopback(config.base_url or ""):
            # A local server: never route through HTTP(S)_PROXY from the environment.
            http_client = openai.DefaultHttpxClient(trust_env=False)
        self._client = openai.OpenAI(
            base_url=config.base_url, api_key=key, timeout=config.timeout_s, max_retries=config.max_retries,
            http_client=http_client,
        )

    def redact(self, text: str) -> str:
        return _redact(text, self._secret)

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._client.close()

    def complete(self, messages: list[dict[str, Any]]) -> tuple[str, float]:
        """One chat completion -> (answer text, latency in s); transport errors -> :class:`VlmError`."""
        cfg = self.config
        kwargs: dict[str, Any] = {"model": cfg.model, "messages": messages, "temperature": cfg.temperature}
        if cfg.max_tokens is not None:
            kwargs["max_tokens"] = cfg.max_tokens
        start = time.perf_counter()
        try:
            response = self._client.chat.completions.create(**kwargs)
        except self._openai.APIError as err:
            raise self._error(err, time.perf_counter() - start) from err
        latency = time.perf_counter() - start
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        return (getattr(message, "content", None) or ""), latency

    def _error(self, err: Exception, elapsed: float) -> VlmError:
        openai = self._openai
        if isinstance(err, openai.APITimeoutError):
            what = f"timed out ({self.config.timeout_s:g}s per attempt)"
        elif isinstance(err, openai.APIStatusError):
            what = f"HTTP {err.status_code}: {snippet(str(getattr(err, 'message', '') or err))}"
        elif isinstance(err, openai.APIConnectionError):
            what = f"connection failed ({type(err.__cause__).__name__ if err.__cause__ else 'unknown cause'})"
        else:
            what = f"{type(err).__name__}: {snippet(str(err))}"
        msg = (
            f"VLM request to {self.config.base_url} (model {self.config.model!r}) failed after "
            f"{self.config.max_retries} retr{'y' if self.config.max_retries == 1 else 'ies'} and {elapsed:.2f}s: {what}"
        )
        msg = _redact(msg, self._secret)
        logger.warning("%s", msg)
        return VlmError(msg)
