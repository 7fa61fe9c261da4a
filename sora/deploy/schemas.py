"""The server's requests and answers as pydantic models: FastAPI validates requests with them (422 with its
``detail`` list when a field is wrong) and documents every field on the OpenAPI page (``/docs``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(..., description="an image file (PNG, JPEG, ...) encoded in base64")


class AudioInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audio: str = Field(..., description="a WAV file encoded in base64")


class QuestionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., description="the question to answer")
    context: str = Field(..., description="the paragraph that holds the answer")


Input = str | ImageInput | AudioInput | QuestionInput


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"inputs": ["a fine, moving film", "dull and far too long"]}]},
    )
    inputs: list[Input] = Field(
        ...,
        min_length=1,
        description="texts for a text model; {'image': BASE64} for an image model; {'audio': BASE64 WAV} for an "
        "audio model; {'question': TEXT, 'context': TEXT} for a question-answering model. At most --max-items per "
        "request.",
    )


class PredictResponse(BaseModel):
    predictions: list[dict[str, Any]] = Field(
        ...,
        description="one per input, in input order. classification: {label, score, scores}; token classification: "
        "{tokens, labels}; ctc: {transcript}; lm: {text}; seq2seq: {translation}; span: {answer, start, end, "
        "score} (the answer's characters context[start:end], its start + end logit)",
        examples=[[{"label": "fresh", "score": 0.93, "scores": {"fresh": 0.93, "rotten": 0.07}}]],
    )


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"prompt": "It is a truth", "max_new_tokens": 40, "temperature": 0.8}]},
    )
    prompt: str = Field(..., description="the text to continue (an LM) or translate (seq2seq)")
    max_new_tokens: int = Field(50, ge=1, description="tokens to generate, at most the server's --max-new-tokens")
    temperature: float = Field(0.8, ge=0, description="0: greedy (the same text every time); higher: more varied")
    top_k: int | None = Field(None, ge=1, description="sample only among the k likeliest tokens")
    top_p: float | None = Field(None, gt=0, le=1, description="sample only among the likeliest tokens of this mass")
    seed: int | None = Field(None, description="a seed for sampling, for a repeatable answer")
    stream: bool = Field(
        False,
        description="true: server-sent events, 'data: {\"text\": PIECE}' per piece as it is made, then "
        "'data: [DONE]'; false: one JSON answer",
    )


class GenerateResponse(BaseModel):
    text: str = Field(..., description="the generated continuation (or translation), without the prompt")


class AttentionRequest(BaseModel):
    """One input, as /v1/predict takes it: a text, or {"image": BASE64} / {"audio": BASE64 WAV}; a question-answering
    model takes a text or a question with its context (its first window)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "a fine, moving film"}]})
    text: str | None = Field(None, description="the text whose attention to show (a text model)")
    image: str | None = Field(None, description="an image file in base64 (an image model)")
    audio: str | None = Field(None, description="a WAV file in base64 (an audio model)")
    question: str | None = Field(None, description="a question (a question-answering model, with context)")
    context: str | None = Field(None, description="the question's paragraph (a question-answering model)")


class HeadAttention(BaseModel):
    name: str = Field(..., description="the head's particle name, e.g. layers.1.attn.head.3")
    pattern: list[list[float]] = Field(..., description="(T, S) weights: row i is what token i attends to")
    importance: float | None = Field(None, description="the head's importance in the model's analysis, if any")
    rank: int | None = Field(None, description="its rank by importance (1: most important), if known")
    type: str | None = Field(None, description="the analysis' head type (previous-token, broad...), if known")


class LayerAttention(BaseModel):
    layer: int | str
    heads: list[HeadAttention]


class AttentionResponse(BaseModel):
    tokens: list[str] = Field(..., description="the tokens as the tokenizer shows them")
    layers: list[LayerAttention]
    importance: dict[str, Any] | None = Field(
        None, description="where the head importance came from: {source, method}; null without an analysis"
    )


class Health(BaseModel):
    status: str = "ok"
    model: str = Field(..., description="the model served (its folder)")
    task: str = Field(..., description="classification, token_classification, ctc, lm, seq2seq or span")
    input: str = Field(..., description="text, image or audio")
    backend: str = Field(..., description="torch or onnxruntime")
    labels: list[str] | None = None
    generate: bool = Field(..., description="whether /v1/generate serves this model")
    api_key_required: bool = Field(..., description="whether /v1/* needs an API key")
    analysis: bool = Field(..., description="whether head importance from the model's analysis is known")
    limits: dict[str, int] = Field(..., description="max_items, max_chars, max_item_bytes, max_new_tokens, ...")
