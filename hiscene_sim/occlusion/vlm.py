"""VLM occlusion judge (paper A.3, Fig. 11) over an OpenAI-compatible chat-completions API.

The judge sends one object-centric view (PNG, base64 data URL) together with the Fig. 11
prompt to ``/chat/completions`` and parses the model's JSON answer into an
:class:`~hiscene_sim.occlusion.verdict.OcclusionVerdict`. The ``openai`` package is imported
only when a judge is constructed, so importing this module stays cheap.

Configuration comes from a dict and / or the environment (:meth:`VlmConfig.from_dict`):
``HISCENE_VLM_BASE_URL``, ``HISCENE_VLM_MODEL`` and the API-key variable named by
``api_key_env`` (default ``OPENAI_API_KEY``). The API key never appears in log records,
exception messages or the config's ``repr``.
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
from hiscene_sim.occlusion.verdict import Occlusion, OcclusionVerdict

logger = logging.getLogger(__name__)

ENV_BASE_URL = "HISCENE_VLM_BASE_URL"
ENV_MODEL = "HISCENE_VLM_MODEL"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
BACKEND_NAME = "vlm"

# Fig. 11 of the paper, verbatim; ``{label}`` is the target object's label. The example output
# keeps the figure's trailing comma.
PROMPT_TEMPLATE = (
    "You are an image annotation expert. You will see an image. Please examine the image carefully "
    "and answer the following questions:\n"
    "\n"
    "1. Describe what you see in the image in no more than 20 words.\n"
    "2. The target object is **{label}**. Do you think the target object is occluded by other objects "
    "in this image? Consider all objects outside the target object. Please answer 0 for no occlusion, "
    "1 for occlusion, or 2 for unable to determine. Provide a brief reason for your answer. Your answer "
    "and analysis should be very concise and accurate.\n"
    "\n"
    "Example Output:\n"
    "\n"
    "```\n"
    "{{\n"
    '  "1": "A wooden nightstand with a lamp",\n'
    '  "2": "1",\n'
    '  "2_description": "The lamp partially cover the nightstand",\n'
    "}}\n"
    "```"
)

_REASON_KEYS = ("2_description", "2_reason", "reason", "description_2")
_MAX_SNIPPET = 120
_CURLY_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


class VlmError(RuntimeError):
    """The VLM endpoint could not be reached or refused the request (after the client's retries)."""


# --------------------------------------------------------------------------------------------
# configuration


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
        data.setdefault("base_url", env.get(ENV_BASE_URL) or None)
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

    def validate(self, environ: Mapping[str, str] | None = None) -> str:
        """Check the config is usable and return the API key to send.

        Raises:
            BackendError: no base URL, no model, or no key while ``require_api_key``.
        """
        if not self.base_url:
            raise BackendError(f"VLM occlusion judge: no base URL (config key 'base_url' or env var {ENV_BASE_URL})")
        if not self.model:
            raise BackendError(f"VLM occlusion judge: no model (config key 'model' or env var {ENV_MODEL})")
        if self.timeout_s <= 0 or self.max_retries < 0:
            raise BackendError("VLM occlusion judge: 'timeout_s' must be > 0 and 'max_retries' >= 0")
        key = self.resolve_api_key(environ)
        if key is None:
            if self.require_api_key:
                raise BackendError(
                    f"VLM occlusion judge: no API key (config key 'api_key' or env var {self.api_key_env}); "
                    "set require_api_key=False for a keyless local server"
                )
            key = "no-key"
        return key


# --------------------------------------------------------------------------------------------
# answer parsing (pure)


def parse_vlm_answer(text: str | None) -> OcclusionVerdict:
    """Parse a Fig. 11 answer into a verdict; never raises on a malformed answer.

    Accepts JSON inside ```` ```json ```` fences or bare, prose around it, trailing commas,
    single quotes, and ``"2"`` given as ``"1"`` or ``1``. An answer without a usable ``"2"``
    (missing, out of range, or no JSON at all) gives :attr:`Occlusion.UNDETERMINED` with a reason
    saying why.
    """
    if not text or not text.strip():
        return _undetermined("VLM answer was empty")
    obj = _first_json_object(text)
    if obj is None:
        return _salvage(text)
    return _verdict_from_mapping(obj)


def _undetermined(reason: str, description: str = "") -> OcclusionVerdict:
    return OcclusionVerdict(Occlusion.UNDETERMINED, description=description, reason=reason, backend=BACKEND_NAME)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_SNIPPET else flat[: _MAX_SNIPPET - 3] + "..."


def _first_json_object(text: str) -> dict[str, Any] | None:
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


def _occlusion_value(value: Any) -> Occlusion | None:
    """0 / 1 / 2 from ``1``, ``"1"``, ``" 1 "``, ``1.0`` or ``"1 (occluded)"``; ``None`` otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Occlusion(int(value)) if float(value) in (0.0, 1.0, 2.0) else None
    if isinstance(value, str):
        match = re.match(r"\s*([012])(?![\d.])", value)
        return Occlusion(int(match.group(1))) if match else None
    return None


def _verdict_from_mapping(obj: Mapping[str, Any]) -> OcclusionVerdict:
    description = str(obj.get("1", "") or "").strip()
    reason = next((str(obj[k]).strip() for k in _REASON_KEYS if obj.get(k)), "")
    if "2" not in obj:
        return _undetermined(f"VLM answer lacked key '2' (occlusion); {reason}".rstrip("; "), description)
    occlusion = _occlusion_value(obj["2"])
    if occlusion is None:
        return _undetermined(f"VLM answer had an invalid '2' value {obj['2']!r}", description)
    return OcclusionVerdict(occlusion, description=description, reason=reason, backend=BACKEND_NAME)


def _salvage(text: str) -> OcclusionVerdict:
    """Last resort for broken JSON (e.g. truncated): a ``"2": <0|1|2>`` pair found by pattern."""
    match = re.search(r"[\"']2[\"']\s*:\s*[\"']?\s*([012])(?![\d.])", text)
    if match is None:
        return _undetermined(f"VLM answer is not JSON: {_snippet(text)!r}")
    desc = re.search(r"[\"']1[\"']\s*:\s*[\"']([^\"']*)", text)
    why = re.search(r"[\"']2_description[\"']\s*:\s*[\"']([^\"']*)", text)
    return OcclusionVerdict(
        Occlusion(int(match.group(1))),
        description=desc.group(1).strip() if desc else "",
        reason=why.group(1).strip() if why else "",
        backend=BACKEND_NAME,
    )


# --------------------------------------------------------------------------------------------
# request building


def build_prompt(target_label: str) -> str:
    """The Fig. 11 prompt for ``target_label`` (whitespace collapsed; must be non-empty)."""
    label = " ".join(str(target_label).replace("*", " ").split())
    if not label:
        raise ValueError("target_label must be a non-empty string")
    return PROMPT_TEMPLATE.format(label=label)


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


def build_messages(image: np.ndarray, target_label: str) -> list[dict[str, Any]]:
    """One user message: the Fig. 11 prompt text and the image as an ``image_url`` part."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": build_prompt(target_label)},
                {"type": "image_url", "image_url": {"url": encode_png_data_url(image)}},
            ],
        }
    ]


def _is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


# --------------------------------------------------------------------------------------------
# the judge


class VlmOcclusionJudge:
    """:class:`~hiscene_sim.occlusion.verdict.OcclusionJudge` that asks a VLM (paper A.3, Fig. 11).

    The masks are ignored: the VLM looks at the image only. Malformed answers give
    ``UNDETERMINED``; transport failures (after the client's retries) raise :class:`VlmError`.
    """

    name = BACKEND_NAME

    def __init__(self, config: VlmConfig | None = None, environ: Mapping[str, str] | None = None) -> None:
        """Validate ``config`` (default: from the environment) and build the ``openai`` client.

        Raises:
            BackendError: incomplete configuration or ``openai`` not installed (before any request).
        """
        self.config = config if config is not None else VlmConfig.from_env(environ)
        key = self.config.validate(environ)
        self._secret = key
        try:
            import openai
        except ImportError as err:
            raise BackendError("VLM occlusion judge needs the 'openai' package (pip install 'openai>=1.30')") from err
        self._openai = openai
        http_client = None
        if _is_loopback(self.config.base_url or ""):
            # A local server: never route through HTTP(S)_PROXY from the environment.
            http_client = openai.DefaultHttpxClient(trust_env=False)
        self._client = openai.OpenAI(
            base_url=self.config.base_url,
            api_key=key,
            timeout=self.config.timeout_s,
            max_retries=self.config.max_retries,
            http_client=http_client,
        )

    def __repr__(self) -> str:
        return f"VlmOcclusionJudge(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._client.close()

    def judge(
        self, image: np.ndarray, target_label: str, visible_mask: np.ndarray | None = None, occluder_mask: np.ndarray | None = None
    ) -> OcclusionVerdict:
        """Ask the VLM whether ``target_label`` is occluded in ``image`` (masks ignored)."""
        messages = build_messages(image, target_label)
        text, latency = self._complete(messages)
        verdict = parse_vlm_answer(text)
        logger.info(
            "VLM occlusion %s model=%s label=%r latency=%.3fs -> %s (%s)",
            self.config.base_url,
            self.config.model,
            target_label,
            latency,
            verdict.occlusion.name,
            _redact(_snippet(verdict.reason), self._secret),
        )
        if verdict.occlusion is Occlusion.UNDETERMINED:
            logger.debug("VLM raw answer: %s", _redact(_snippet(text or ""), self._secret))
        return verdict

    def _complete(self, messages: list[dict[str, Any]]) -> tuple[str, float]:
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
            what = f"HTTP {err.status_code}: {_snippet(str(getattr(err, 'message', '') or err))}"
        elif isinstance(err, openai.APIConnectionError):
            what = f"connection failed ({type(err.__cause__).__name__ if err.__cause__ else 'unknown cause'})"
        else:
            what = f"{type(err).__name__}: {_snippet(str(err))}"
        msg = (
            f"VLM request to {self.config.base_url} (model {self.config.model!r}) failed after "
            f"{self.config.max_retries} retr{'y' if self.config.max_retries == 1 else 'ies'} and {elapsed:.2f}s: {what}"
        )
        msg = _redact(msg, self._secret)
        logger.warning("%s", msg)
        return VlmError(msg)

