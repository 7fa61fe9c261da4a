"""Raw inputs to model inputs, as training prepared them: texts through the folder's tokenizer, images and
audio through its recorded preprocessing (sora.data.preprocess).

``InputReader.read`` turns one raw item into an ``Item`` or raises a one-line SoraError saying what is wrong
with it (empty text, an unreadable file, a wrong shape): the predictor then reports that item alone.
``InputReader.batch`` pads items of one batch into the tensors the model (and the ONNX graphs) take, under the
graph input names of the export contract: ``input_ids``/``valid`` (and ``segments`` for a model with segment
embeddings), ``pixels``, ``mels``/``valid``.

A question-answering model (task ``span``) reads ``{"question": str, "context": str}``: the paragraph is cut into
the windows training used (``prep``: ``max_len`` and ``stride``, sora.tasks.answering), and a batch holds every
window of its questions, with each window's character offsets and question (``offsets``, ``window_of``) for
decoding the answers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from sora.data import audio as au
from sora.data.preprocess import images_to_inputs, waves_to_inputs
from sora.data.spans import Question, SpanExamples
from sora.errors import SoraError, first_line
from sora.models import ModelConfig
from sora.models.generate import unknown_token
from sora.tasks.answering import read_question


@dataclass
class Item:
    features: Any  # token ids (list[int]), an image (H, W, C) array, a clip's (n_mels, F) log-mels, or a Question
    length: int  # what batches are sorted by: tokens (a question: its longest window's), or frames
    tokens: list[str] | None = None  # text: the tokens as the tokenizer shows them


class InputReader:
    """Reads raw items for one model: its input kind, task, tokenizer and preprocessing."""

    def __init__(self, config: ModelConfig, task: str, tokenizer=None, prep: dict | None = None):
        self.config, self.task, self.tokenizer, self.prep = config, task, tokenizer, prep
        self.unknown = unknown_token(tokenizer) if tokenizer is not None else None
        if tokenizer is not None and task != "lm" and tokenizer.truncation is None:
            tokenizer.enable_truncation(config.max_len)  # what a training-configured tokenizer does already

    def read_all(self, raws: list) -> list[Item | SoraError]:
        """Each raw item read, or the error that refuses it; texts are encoded together (in parallel)."""
        if self.config.input != "text" or self.task == "span":
            return [_attempt(self.read, raw) for raw in raws]
        checked = [_attempt(_text, raw) for raw in raws]
        texts = [t for t in checked if isinstance(t, str)]
        encodings = iter(self.tokenizer.encode_batch(texts, add_special_tokens=self.task != "lm"))
        return [_attempt(self._from_encoding, next(encodings)) if isinstance(t, str) else t for t in checked]

    def read(self, raw: Any) -> Item:
        if self.task == "span":
            question = read_question(raw, self.tokenizer, self.prep["max_len"], self.prep["stride"])
            return Item(question, max(len(w.ids) for w in question.windows))
        if self.config.input == "text":
            return self.read_text(raw)
        if self.config.input == "image":
            return Item(read_image(raw, self.prep), 1)
        wave = read_audio(raw, self.prep)
        self._check_clip(wave)
        mels, _ = waves_to_inputs([wave], self.prep["sample_rate"], self.prep)  # (1, n_mels, F)
        # Featurized alone, cut to whole patches (the model drops a partial one when the clip is alone, but
        # would read it, zero-padded, in a batch): the same clip gives the same answer in any batch.
        frames = mels.shape[-1] // self.config.audio.patch_frames * self.config.audio.patch_frames
        return Item(mels[0, :, :frames], frames)

    def read_text(self, text: Any) -> Item:
        return self._from_encoding(self.tokenizer.encode(_text(text), add_special_tokens=self.task != "lm"))

    def _from_encoding(self, encoding) -> Item:
        words = [t for t, special in zip(encoding.tokens, encoding.special_tokens_mask) if not special]
        if not words or all(t == self.unknown for t in words):
            raise SoraError("the tokenizer can encode none of this text")
        ids = encoding.ids if self.task == "lm" else encoding.ids[: self.config.max_len]
        return Item(ids, len(ids), encoding.tokens[: len(ids)])

    def _check_clip(self, wave: np.ndarray) -> None:
        """A clip must make at least one patch and no more positions than the model has."""
        frames = au.n_frames(len(wave), self.prep["hop_length"])
        patches = frames // self.config.audio.patch_frames
        seconds = len(wave) / self.prep["sample_rate"]
        if patches == 0:
            raise SoraError(f"the clip is too short ({seconds:.3f} s) to make one spectrogram patch")
        has_cls = self.config.arch == "encoder_classifier" and self.config.pooling == "cls"
        if self.config.position in ("learned", "sinusoidal") and patches + has_cls > self.config.max_len:
            longest = (self.config.max_len - has_cls) * self.config.audio.patch_frames * self.prep["hop_length"]
            raise SoraError(
                f"the clip is {seconds:.2f} s; the model reads at most {longest / self.prep['sample_rate']:.2f} s"
            )

    def batch(self, items: list[Item]) -> dict[str, Tensor]:
        """The model inputs of ``items``, padded to the longest."""
        if isinstance(items[0].features, Question):
            return question_feeds([item.features for item in items])
        if self.config.input == "text":
            T = max(len(item.features) for item in items)
            ids = torch.full((len(items), T), self.config.pad_id, dtype=torch.long)  # (B, T)
            for row, item in enumerate(items):
                ids[row, : len(item.features)] = torch.tensor(item.features, dtype=torch.long)
            valid = torch.arange(T)[None, :] < torch.tensor([len(item.features) for item in items])[:, None]
            if self.config.segments:  # one text is a pair's first text: segment 0, as the model takes no segments
                return {"input_ids": ids, "valid": valid, "segments": torch.zeros_like(ids)}
            return {"input_ids": ids, "valid": valid}
        if self.config.input == "image":
            return {"pixels": images_to_inputs(np.stack([item.features for item in items]), self.prep)}  # (B,C,H,W)
        F = max(item.length for item in items)
        mels = torch.zeros(len(items), items[0].features.shape[0], F)  # (B, n_mels, F) zeros past each clip
        for row, item in enumerate(items):
            mels[row, :, : item.length] = item.features
        valid = torch.arange(F)[None, :] < torch.tensor([item.length for item in items])[:, None]  # (B, F)
        return {"mels": mels, "valid": valid}


def question_feeds(questions: list[Question]) -> dict[str, Tensor]:
    """Every window of ``questions``, padded as training pads them (sora.data.spans): ``input_ids``, ``valid``,
    ``segments`` (W, T), and for decoding ``offsets`` (W, T, 2) and ``window_of`` (W,)."""
    batch = SpanExamples(questions).batch(range(len(questions)))
    feeds = {"input_ids": batch["inputs"], "valid": batch["valid"], "segments": batch["segments"]}
    return {**feeds, "offsets": batch["offsets"], "window_of": batch["window_of"]}


def _text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise SoraError(f"expected a text, got {type(raw).__name__}")
    if not raw.strip():
        raise SoraError("empty text")
    return raw


def _attempt(read, raw: Any):
    """``read(raw)``, or the SoraError it raised."""
    try:
        return read(raw)
    except SoraError as e:
        return e


def read_image(raw: Any, prep: dict) -> np.ndarray:
    """An image file (path or bytes) or a pixel array -> (size, size, channels) pixels, as training read them."""
    size, channels = prep["size"], prep["channels"]
    if isinstance(raw, (str, Path, bytes)):
        try:
            with Image.open(io.BytesIO(raw) if isinstance(raw, bytes) else raw) as opened:
                image = opened.convert("L" if channels == 1 else "RGB")
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise SoraError(f"{_name(raw)}: not a readable image ({first_line(e)})") from None
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)  # as training's data.image_size does
        pixels = np.asarray(image, dtype=np.float32)
    else:
        pixels = _array(raw, "image")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.shape != (size, size, channels):
        raise SoraError(f"the image is {_shape(pixels.shape)}; the model takes {size}x{size}x{channels} pixels")
    return pixels


def read_audio(raw: Any, prep: dict) -> np.ndarray:
    """A WAV file (path or bytes) or a ``(waveform, sample_rate)`` pair -> a mono waveform at the model's rate."""
    rate = prep["sample_rate"]
    if isinstance(raw, (str, Path)):
        try:
            data = Path(raw).read_bytes()
        except OSError as e:
            raise SoraError(f"{raw}: cannot read ({e.strerror or first_line(e)})") from None
        wave = au.decode_wav(data, rate, str(raw))
    elif isinstance(raw, bytes):
        wave = au.decode_wav(raw, rate, "the WAV data")
    elif isinstance(raw, (tuple, list)) and len(raw) == 2 and _is_rate(raw[1]):
        samples = _array(raw[0], "waveform")
        if samples.ndim == 2:  # (samples, channels) -> mono, as decode_wav does
            samples = samples.mean(axis=1)
        if samples.ndim != 1:
            raise SoraError(f"the waveform is {_shape(samples.shape)}; expected (samples,) or (samples, channels)")
        wave = au.resample(samples, int(raw[1]), rate)
    else:
        raise SoraError(f"expected a WAV file or a (waveform, sample_rate) pair, got {type(raw).__name__}")
    if len(wave) == 0:
        raise SoraError("the clip is empty")
    return wave


def _array(raw: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise SoraError(f"the {what} is not an array of numbers ({first_line(e)})") from None
    if not np.isfinite(array).all():
        raise SoraError(f"the {what} holds NaN or infinite values")
    return array


def _is_rate(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _name(raw: Any) -> str:
    return "the image data" if isinstance(raw, bytes) else str(raw)


def _shape(shape: tuple) -> str:
    return "x".join(map(str, shape)) if shape else "a single number"
