"""From a request's ``inputs`` to what the Predictor reads, and from its per-item errors back to a 422.

Texts go as they are, and a question with its context as ``{"question", "context"}``. Images and WAVs arrive as
base64 and go to the Predictor as the file's bytes, which it reads as it reads a file (format, channels, sample
rate: its rules, not a second copy of them here).
"""

from __future__ import annotations

import base64
import binascii

from fastapi import HTTPException

from sora.deploy.limits import ServeSettings, too_long, too_many_items, unprocessable
from sora.deploy.schemas import AttentionRequest, AudioInput, ImageInput, QuestionInput

QUESTION = '{"question": ..., "context": ...}'


def input_kind(predictor) -> str:
    """What a request's inputs are for this predictor: text, image, audio, or question (question answering)."""
    return "question" if predictor.task == "span" else predictor.input


def predictor_items(inputs: list, kind: str, settings: ServeSettings) -> list:
    """The Predictor's items for ``inputs`` of a model that reads ``kind`` (``input_kind``); a 422 naming
    the item and the limit for an input of the wrong kind or over a limit."""
    if len(inputs) > settings.max_items:
        raise too_many_items(len(inputs), settings.max_items)
    return [_item(item, i, kind, settings) for i, item in enumerate(inputs)]


def _item(item, i: int, kind: str, settings: ServeSettings):
    where = f"inputs[{i}]"
    if kind == "question":
        if not isinstance(item, QuestionInput):
            raise unprocessable(["inputs", i], f"{where}: this model answers questions: send {QUESTION}")
        return checked_question(item.question, item.context, ["inputs", i], where, settings)
    if kind == "text":
        if not isinstance(item, str):
            raise unprocessable(["inputs", i], f"{where}: this model reads text: send a string")
        return checked_text(item, ["inputs", i], where, settings)
    field, wanted = ("image", ImageInput) if kind == "image" else ("audio", AudioInput)
    if not isinstance(item, wanted):
        example = '{"image": BASE64}' if kind == "image" else '{"audio": BASE64 WAV}'
        raise unprocessable(["inputs", i], f"{where}: this model reads {kind}: send {example}")
    return decoded(getattr(item, field), ["inputs", i, field], f"{where}.{field}", settings.max_item_bytes)


def attention_item(request: AttentionRequest, kind: str, settings: ServeSettings):
    """The one input of an attention request: a text, or an image's or WAV's bytes, as the model reads; a text or
    a question with its context for a question-answering model."""
    given = [k for k in ("text", "image", "audio", "question", "context") if getattr(request, k) is not None]
    if kind == "question":
        if given == ["text"]:
            return checked_text(request.text, ["text"], "text", settings)
        if given != ["question", "context"]:
            raise unprocessable(["question"], f'this model answers questions: send {QUESTION} (or {{"text": ...}})')
        return checked_question(request.question, request.context, [], "", settings)
    if given != [kind]:
        raise unprocessable([kind], f'this model reads {kind}: send {{"{kind}": ...}} and nothing else')
    if kind == "text":
        return checked_text(request.text, ["text"], "text", settings)
    return decoded(getattr(request, kind), [kind], kind, settings.max_item_bytes)


def checked_text(text: str, loc: list, where: str, settings: ServeSettings) -> str:
    if len(text) > settings.max_chars:
        raise too_long(loc, where, len(text), settings.max_chars, "characters", "--max-chars")
    return text


def checked_question(question: str, context: str, loc: list, where: str, settings: ServeSettings) -> dict:
    """``{"question", "context"}`` as the Predictor reads it, each field within --max-chars."""
    fields = {"question": question, "context": context}
    for name, text in fields.items():
        checked_text(text, [*loc, name], f"{where}.{name}" if where else name, settings)
    return fields


def decoded(text: str, loc: list, where: str, limit: int) -> bytes:
    """The bytes of a base64 field (a ``data:...;base64,`` URL too), refused before decoding when too large."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    size = len(text.rstrip("=")) * 3 // 4  # the decoded size, known before decoding
    if size > limit:
        raise too_long(loc, where, size, limit, "bytes", "--max-item-bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise unprocessable(loc, f"{where}: not valid base64") from None
    if len(data) > limit:
        raise too_long(loc, where, len(data), limit, "bytes", "--max-item-bytes")
    if not data:
        raise unprocessable(loc, f"{where}: empty")
    return data


def refuse_bad_items(results: list[dict]) -> None:
    """A 422 listing every input the Predictor could not read (``{"error": ...}``), each named by its index."""
    detail = [
        {"loc": ["body", "inputs", i], "msg": f"inputs[{i}]: {r['error']}", "type": "value_error"}
        for i, r in enumerate(results)
        if isinstance(r, dict) and "error" in r
    ]
    if detail:
        raise HTTPException(422, detail=detail)
