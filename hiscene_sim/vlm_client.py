"""An OpenAI-compatible chat-completions client for the stages that ask a VLM (the occlusion
judge of paper A.3, the object labeller): configuration from a dict and / or the environment
(``HISCENE_VLM_BASE_URL``, ``HISCENE_VLM_MODEL``, ``OPENAI_BASE_URL`` as a fallback, and the
API-key variable named by ``api_key_env``, default ``OPENAI_API_KEY``), images as PNG data
URLs, and transport errors as :class:`VlmError` with the key redacted.

The ``openai`` package is imported only when a client is built; the API key never appears in
log records, exception messages or the config's ``repr``.

Request parameters follow the current chat-completions API: the length cap is sent as
``max_completion_tokens`` (``max_tokens`` is deprecated and refused by reasoning models), and
``temperature`` only to models that take it (the o1 / o3 / o4 / gpt-5 reasoning families refuse
any value but their default). A server that still answers HTTP 400 naming one of these parameters
(an alias whose family the name does not show, a server that predates ``max_completion_tokens``)
gets the request once more without it (or with the other length parameter), and the refusal is
remembered for that endpoint and model for the rest of the process.
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
import threading
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
        temperature: sampling temperature (0: deterministic answers); sent only to models that take
            it (not to reasoning models, see :func:`is_reasoning_model`); ``None`` never sends it.
        max_tokens: answer length cap, sent as ``max_completion_tokens``; ``None`` leaves it to the server.
        reasoning_tokens: added to the cap for reasoning models, whose hidden reasoning counts
            against ``max_completion_tokens`` (a cap of 300 alone would often leave no answer).
        require_api_key: when False a keyless local server is accepted (a placeholder key is sent).
    """

    base_url: str | None = None
    model: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_retries: int = 2
    temperature: float | None = 0.0
    max_tokens: int | None = 300
    reasoning_tokens: int = 4096
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
        if (self.max_tokens is not None and self.max_tokens < 1) or self.reasoning_tokens < 0:
            raise BackendError(f"{who}: 'max_tokens' must be >= 1 (or None) and 'reasoning_tokens' >= 0")
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


# OpenAI's reasoning models (o1, o3, o4-mini, gpt-5, gpt-5-mini, gpt-5.1, ...), also behind a
# router's provider prefix ("openai/o3-mini"). They refuse `temperature` (other than their
# default) and `max_tokens`: https://platform.openai.com/docs/guides/reasoning
_REASONING_MODEL = re.compile(r"(o[1-9][0-9]*|gpt-5)([-_.:]|$)")


def is_reasoning_model(model: str) -> bool:
    """True for the o1 / o3 / o4 / gpt-5 families, by name (an alias is caught by the 400 retry)."""
    return bool(_REASONING_MODEL.match(model.rsplit("/", 1)[-1].strip().lower()))


# The parameters a 400 may name that the client knows how to do without (``max_tokens`` and
# ``max_completion_tokens`` replace each other; ``temperature`` is dropped).
ADJUSTABLE_PARAMETERS = ("temperature", "max_completion_tokens", "max_tokens")
_REFUSAL_WORDS = re.compile(r"unsupported|not supported|unrecognized|unknown|unexpected|extra|not permitted", re.IGNORECASE)


def refused_parameter(err: Exception, sent: Mapping[str, Any]) -> str | None:
    """The request parameter an HTTP 400 refused, when it is one of :data:`ADJUSTABLE_PARAMETERS`
    that ``sent`` holds; else None. OpenAI names it in the error's ``param`` (code
    ``unsupported_parameter`` / ``unsupported_value``); other servers only quote it in the message
    ("Unrecognized request argument supplied: max_completion_tokens"), and then the first
    parameter named there that was sent is the one."""
    param = getattr(err, "param", None)
    if param in ADJUSTABLE_PARAMETERS and param in sent:
        return param
    message = str(getattr(err, "message", "") or err)
    if not _REFUSAL_WORDS.search(message):
        return None
    named = [(m.start(), m.group(1)) for m in re.finditer(r"\b(" + "|".join(ADJUSTABLE_PARAMETERS) + r")\b", message)]
    for _, name in sorted(named):
        if name in sent:
            return name
    return None


# (base_url, model) -> the parameters that endpoint refused for that model in this process
_REFUSED: dict[tuple[str, str], set[str]] = {}
_REFUSED_LOCK = threading.Lock()


def refused_parameters(base_url: str, model: str) -> frozenset[str]:
    """What the endpoint refused for ``model`` so far in this process (not sent again)."""
    with _REFUSED_LOCK:
        return frozenset(_REFUSED.get((base_url, model), ()))


def _remember_refusal(base_url: str, model: str, name: str) -> None:
    with _REFUSED_LOCK:
        _REFUSED.setdefault((base_url, model), set()).add(name)


def sampling_parameters(config: VlmConfig, refused: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The length cap and temperature to send for ``config.model``, leaving out what ``refused`` holds."""
    reasoning = is_reasoning_model(config.model or "")
    params: dict[str, Any] = {}
    if config.temperature is not None and not reasoning and "temperature" not in refused:
        params["temperature"] = config.temperature
    if config.max_tokens is not None:
        cap = config.max_tokens + (config.reasoning_tokens if reasoning else 0)
        for name in ("max_completion_tokens", "max_tokens"):  # the current name first; the old one for old servers
            if name not in refused:
                params[name] = cap
                break
    return params


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
        """One chat completion -> (answer text, latency in s); transport errors -> :class:`VlmError`.

        An HTTP 400 that names a parameter of :data:`ADJUSTABLE_PARAMETERS` is answered by sending
        the request again without it (at most once per parameter); the refusal is remembered for
        this endpoint and model (:func:`refused_parameters`)."""
        cfg = self.config
        base_url, model = cfg.base_url or "", cfg.model or ""
        start = time.perf_counter()
        adjusted: set[str] = set()
        while True:
            kwargs: dict[str, Any] = {"model": model, "messages": messages,
                                      **sampling_parameters(cfg, refused_parameters(base_url, model))}
            try:
                response = self._client.chat.completions.create(**kwargs)
                break
            except self._openai.BadRequestError as err:
                name = refused_parameter(err, kwargs)
                if name is None or name in adjusted:
                    raise self._error(err, time.perf_counter() - start) from err
                adjusted.add(name)
                _remember_refusal(base_url, model, name)
                why = snippet(str(getattr(err, "message", "") or err))
                logger.warning("%s", self.redact(f"VLM {base_url} (model {model!r}) refused {name!r} (HTTP 400: {why}); "
                                                 "asking again without it, and not sending it to this model again"))
            except self._openai.APIError as err:
                raise self._error(err, time.perf_counter() - start) from err
        latency = time.perf_counter() - start
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        content = getattr(message, "content", None) or ""
        if not content and choices and getattr(choices[0], "finish_reason", None) == "length":
            logger.warning("VLM %s (model %r) stopped at the length cap before answering (%s); raise max_tokens%s",
                           base_url, model, {k: v for k, v in kwargs.items() if k in ADJUSTABLE_PARAMETERS},
                           " or reasoning_tokens" if is_reasoning_model(model) else "")
        return content, latency

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
