"""The VLM labeller: one object's object-centric views, sent together to an OpenAI-compatible
chat-completions endpoint (:mod:`hiscene_sim.vlm_client`), asked for the object's category.

The answer may be JSON ``{"label": "..."}`` (in a fenced block or bare, with prose around it)
or a bare phrase. It is accepted only when it reads as a label: letters, digits, spaces,
hyphens and apostrophes, at most a few words; anything else (markup, quotes, path pieces,
several lines, a sentence) is refused with :class:`LabelError` rather than cleaned up, since
an endpoint that answers that way is not answering the question. With a vocabulary the
answer must name one of its entries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hiscene_sim.label.base import (
    LABELLERS,
    MAX_LABEL_CHARS,
    LabelAnswer,
    LabelError,
    LabelItem,
    match_vocabulary,
    normalise_label,
)
from hiscene_sim.vlm_client import VlmChat, VlmConfig, VlmError, encode_png_data_url, first_json_object, snippet

log = logging.getLogger(__name__)

PROMPT = (
    "The {n} image(s) show one object from a 3D scene, seen from different directions, with everything "
    "else removed. What is this object? Answer with its category as a short noun phrase of one to three "
    "words (for example \"chair\", \"coffee mug\", \"potted plant\"), as JSON: {{\"label\": \"...\"}}"
)
PROMPT_VOCABULARY = " Choose exactly one of these categories: {vocabulary}."
MAX_RAW = 300
_LABEL_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9 '\-]*")


def build_label_messages(images, vocabulary: Sequence[str] | None) -> list[dict[str, Any]]:
    text = PROMPT.format(n=len(images))
    if vocabulary:
        text += PROMPT_VOCABULARY.format(vocabulary=", ".join(vocabulary))
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    content += [{"type": "image_url", "image_url": {"url": encode_png_data_url(image)}} for image in images]
    return [{"role": "user", "content": content}]


def label_from_answer(text: str | None, vocabulary: Sequence[str] | None = None) -> str:
    """The normalised label in a VLM answer; :class:`LabelError` saying why there is none."""
    if text is None or not text.strip():
        raise LabelError("the VLM answered nothing")
    obj = first_json_object(text)
    if obj is not None:
        if "label" not in obj:
            raise LabelError(f"the VLM's JSON has no 'label': {snippet(text)!r}")
        value = obj["label"]
        if not isinstance(value, str):
            raise LabelError(f"the VLM's 'label' is not text: {value!r}"[:200])
    else:
        value = text
    value = value.strip()
    value = value[:-1] if value.endswith(".") else value
    if len(value) > MAX_LABEL_CHARS:
        raise LabelError(f"the VLM answered {len(value)} characters, not a label: {snippet(value)!r}")
    if not _LABEL_TEXT.fullmatch(value):
        bad = sorted({c for c in value if not (c.isalnum() or c in " '-")})
        raise LabelError(f"the VLM's answer holds characters a label cannot have ({''.join(bad)!r}): {snippet(value)!r}")
    label = normalise_label(value.replace("'", ""))
    if label is None:
        raise LabelError(f"the VLM's answer is not a short noun phrase: {snippet(value)!r}")
    if vocabulary:
        entry = match_vocabulary(label, vocabulary)
        if entry is None:
            raise LabelError(f"the VLM answered {label!r}, which is not in the vocabulary ({', '.join(vocabulary)})")
        label = entry
    return label


@LABELLERS.register("vlm")
class VlmLabeller:
    name = "vlm"
    needs_views = True

    def __init__(self, config: VlmConfig | Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> None:
        """Raises :class:`~hiscene_sim.backends.BackendError` before any request when misconfigured."""
        if not isinstance(config, VlmConfig):
            config = VlmConfig.from_dict(config, environ)
        self.config = config
        self._chat = VlmChat(config, environ, who="VLM labeller")

    def close(self) -> None:
        self._chat.close()

    def label(self, item: LabelItem, vocabulary: Sequence[str] | None = None) -> LabelAnswer:
        if not item.images:
            raise LabelError(f"{item.object_id}: no views to show the VLM")
        try:
            text, latency = self._chat.complete(build_label_messages(item.images, vocabulary))
        except VlmError as err:
            raise LabelError(str(err)) from err
        raw = self._chat.redact(text or "")[:MAX_RAW]
        try:
            label = label_from_answer(text, vocabulary)
        except LabelError as err:
            raise LabelError(self._chat.redact(str(err))) from None
        log.info("VLM label %s: %r (%.2fs, %d views)", item.object_id, label, latency, len(item.images))
        return LabelAnswer(label, self.name, self.config.model, item.view_names, raw)
