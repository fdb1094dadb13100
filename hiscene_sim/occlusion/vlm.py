"""VLM occlusion judge (paper A.3, Fig. 11) over an OpenAI-compatible chat-completions API.

The judge sends one object-centric view (PNG, base64 data URL) together with the Fig. 11
prompt to ``/chat/completions`` and parses the model's JSON answer into an
:class:`~hiscene_sim.occlusion.verdict.OcclusionVerdict`. The ``openai`` package is imported
only when a judge is constructed, so importing this module stays cheap.

Configuration and transport: :mod:`hiscene_sim.vlm_client` (shared with the labeller).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from hiscene_sim.occlusion.verdict import Occlusion, OcclusionVerdict
from hiscene_sim.vlm_client import (  # noqa: F401 (re-exported: the occlusion judge's public names)
    DEFAULT_API_KEY_ENV,
    ENV_BASE_URL,
    ENV_MODEL,
    VlmChat,
    VlmConfig,
    VlmError,
    encode_png_data_url,
)
from hiscene_sim.vlm_client import first_json_object as _first_json_object
from hiscene_sim.vlm_client import snippet as _snippet

logger = logging.getLogger(__name__)

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
        self._chat = VlmChat(self.config, environ, who="VLM occlusion judge")

    def __repr__(self) -> str:
        return f"VlmOcclusionJudge(base_url={self.config.base_url!r}, model={self.config.model!r})"

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._chat.close()

    def judge(
        self, image: np.ndarray, target_label: str, visible_mask: np.ndarray | None = None, occluder_mask: np.ndarray | None = None
    ) -> OcclusionVerdict:
        """Ask the VLM whether ``target_label`` is occluded in ``image`` (masks ignored)."""
        messages = build_messages(image, target_label)
        text, latency = self._chat.complete(messages)
        verdict = parse_vlm_answer(text)
        logger.info(
            "VLM occlusion %s model=%s label=%r latency=%.3fs -> %s (%s)",
            self.config.base_url,
            self.config.model,
            target_label,
            latency,
            verdict.occlusion.name,
            self._chat.redact(_snippet(verdict.reason)),
        )
        if verdict.occlusion is Occlusion.UNDETERMINED:
            logger.debug("VLM raw answer: %s", self._chat.redact(_snippet(text or "")))
        return verdict
