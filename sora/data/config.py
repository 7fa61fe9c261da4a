"""The ``data:`` section of a recipe: where examples come from and how they become batches.

Every field is typed and strict, so a misspelt key is an error that names it. A dataset is either a
built-in ``dataset`` (``sora data list``) or a ``source`` (an fsspec URL or glob, or a mapping of
split name to URL when the source comes already split) read in a ``format``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sora.configio import Seed, StrictModel, read_section

Task = Literal["classification", "lm", "seq2seq", "ctc", "span"]
Format = Literal["text", "csv", "tsv", "jsonl", "parquet", "idx", "npz", "image_folder", "wav_folder"]
ROLES = (
    "text",
    "text_pair",
    "label",
    "source",
    "target",
    "group",
    "image",
    "audio",
    "file",
    "split",
    "answer",
    "answer_start",
)


class TokenizerConfig(StrictModel):
    """How text becomes ids: a tokenizer trained on the training split, or a pretrained one."""

    kind: Literal["bpe", "wordpiece", "char", "pretrained"] = Field(
        "bpe", description="byte-level BPE, WordPiece, characters, or a tokenizer.json (path)"
    )
    vocab_size: int = Field(8000, gt=8, description="upper bound on the vocabulary, special tokens included")
    min_frequency: int = Field(2, ge=1, description="fewest occurrences for a merge / word piece / character")
    lowercase: bool = Field(False, description="lower-case inside the tokenizer")
    path: str | None = Field(None, description="pretrained tokenizer.json (kind: pretrained)")

    @model_validator(mode="after")
    def _path_for_pretrained(self) -> TokenizerConfig:
        if self.kind == "pretrained" and not self.path:
            raise ValueError("kind 'pretrained' needs 'path' (a tokenizer.json)")
        if self.kind != "pretrained" and self.path:
            raise ValueError(f"'path' is only for kind 'pretrained' (kind is '{self.kind}')")
        return self


class NormalizeConfig(StrictModel):
    """Text normalisation; it is built into the tokenizer so that inference normalises the same way."""

    nfkc: bool = Field(True, description="Unicode NFKC (full-width forms, ligatures, ...)")
    lowercase: bool = False
    strip: bool = Field(True, description="strip leading and trailing white space")
    stopwords: bool | list[str] = Field(False, description="drop English stop words (true) or these words")


class SplitConfig(StrictModel):
    """Train/validation/test from one seed; stratified by label, grouped by a column, or as given."""

    validation: float = Field(0.1, ge=0, lt=1, description="fraction held out for validation")
    test: float = Field(0.1, ge=0, lt=1, description="fraction held out for test")
    seed: Seed = 0
    stratify: bool = Field(True, description="keep label proportions in every split (classification)")
    group: str | None = Field(None, description="column whose values never straddle two splits")
    given: bool = Field(
        False,
        description="use the splits the source comes with; missing ones are carved from train with the fractions above",
    )

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.validation + self.test >= 1:
            raise ValueError(f"validation + test = {self.validation + self.test:g} leaves nothing to train on")
        return self


class AugmentConfig(StrictModel):
    """Light augmentation, applied to the training split only."""

    flip: bool = Field(False, description="images: random horizontal flips")
    shift: int = Field(0, ge=0, description="images: random translation, in pixels")
    noise_snr: tuple[float, float] | None = Field(
        None, description="audio: add white noise at an SNR (dB) drawn from [low, high]"
    )
    time_shift: float = Field(0.0, ge=0, description="audio: random shift, up to this many seconds either way")
    speed: tuple[float, float] | None = Field(
        None, description="audio: play at a speed drawn from [low, high] (tempo and pitch), e.g. [0.9, 1.1]"
    )
    spec_mask: tuple[int, int] | None = Field(
        None, description="audio: SpecAugment, two masks of up to [mel bands, frames] each (e.g. [8, 10])"
    )

    @model_validator(mode="after")
    def _snr_range(self) -> AugmentConfig:
        if self.noise_snr is not None and self.noise_snr[0] > self.noise_snr[1]:
            raise ValueError(f"noise_snr: low {self.noise_snr[0]} is above high {self.noise_snr[1]}")
        if self.speed is not None and not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed: expected 0 < low <= high, got {list(self.speed)}")
        if self.spec_mask is not None and min(self.spec_mask) < 0:
            raise ValueError(f"spec_mask: widths must be >= 0, got {list(self.spec_mask)}")
        return self


class DataConfig(StrictModel):
    """Where examples come from and how they become batches.

    ``duplicates`` defaults to ``group`` because a user who holds out a test split expects its examples to be
    unseen: identical inputs (exact texts, or images and audio with the same bytes) then always land in the
    same split, and every row is still used, so a dataset without repeats splits exactly as before.
    ``drop`` keeps the first of each input (and reports inputs given different labels); ``keep`` splits as
    if every row were distinct. Splits a source comes with cannot be regrouped: their overlap is reported.
    """

    dataset: str | None = Field(None, description="a built-in dataset (sora data list)")
    source: str | dict[str, str] | None = Field(None, description="fsspec URL or glob, or {split: URL}")
    format: Format | None = Field(None, description="inferred from the file extension when omitted")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options, e.g. endpoint_url, key, secret for s3://"
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="role -> column: text, text_pair (a pair's second text), label, source, target, group, image, "
        "audio, file, split, answer, answer_start (span: the question is text, the paragraph text_pair)",
    )
    label_names: list[str] | None = Field(None, min_length=1, description="the labels, in class-id order")
    task: Task | None = Field(None, description="default: the built-in dataset's task, else classification")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    max_len: int = Field(
        128, gt=1, description="longest sequence in tokens (classification: truncated; span: the window length)"
    )
    stride: int = Field(
        64, ge=0, description="span: context tokens that consecutive windows over a long paragraph share"
    )
    shift_limit: int | None = Field(
        None, gt=0, description="span: at most this many questions of each extra test split (SQuADShifts)"
    )
    normalize: NormalizeConfig = Field(default_factory=NormalizeConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    limit: int | None = Field(
        None,
        gt=0,
        description="at most this many examples per split (deterministic); null (the default) for all, never 0",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail", description="a malformed row fails, or is skipped and counted in a warning"
    )
    duplicates: Literal["group", "keep", "drop"] = Field(
        "group",
        description="identical inputs: group (all kept, always in one split), drop (keep the first), keep",
    )
    block_size: int = Field(128, gt=0, description="lm: context length of each training block")
    max_source_len: int = Field(128, gt=1, description="seq2seq: longest source, in tokens")
    max_target_len: int = Field(128, gt=1, description="seq2seq: longest target, in tokens")
    image_size: int | None = Field(None, gt=0, description="images: resize to size x size (default: as stored)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    sample_rate: int = Field(16000, gt=0, description="audio: resample to this rate (Hz)")
    n_mels: int = Field(40, gt=0, description="audio: mel bands")
    n_fft: int = Field(400, gt=0, description="audio: STFT window, in samples")
    hop_length: int = Field(160, gt=0, description="audio: STFT hop, in samples")
    max_seconds: float = Field(4.0, gt=0, description="audio: clips are cut to this length")

    @field_validator("label_names")
    @classmethod
    def _distinct(cls, names: list[str] | None) -> list[str] | None:
        twice = sorted({n for n in names or [] if names.count(n) > 1})
        if twice:
            raise ValueError(f"names {', '.join(map(repr, twice))} twice; every class needs its own name")
        return names

    @model_validator(mode="after")
    def _one_origin(self) -> DataConfig:
        if (self.dataset is None) == (self.source is None):
            raise ValueError("give exactly one of 'dataset' (a built-in name) or 'source' (a URL or glob)")
        unknown = sorted(set(self.columns) - set(ROLES))
        if unknown:
            raise ValueError(f"columns: unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
        if isinstance(self.source, dict):
            bad = sorted(set(self.source) - {"train", "validation", "test"})
            if bad or "train" not in self.source:
                raise ValueError(
                    f"source as a mapping needs 'train' and may have 'validation', 'test' (got {sorted(self.source)})"
                )
        return self

    def column(self, role: str, default: str | None = None) -> str | None:
        """The column that plays ``role``; ``split.group`` doubles as the group role."""
        if role == "group" and self.split.group:
            return self.split.group
        return self.columns.get(role, default)


def read_data_config(path: str | Path, overrides: Sequence[str] = ()) -> DataConfig:
    """The ``data:`` section of a recipe, or a whole data-config file, validated; errors name file and line.

    One reader for every command that takes a data file (``sora.configio.read_section``), so they all
    accept the same two shapes and refuse a recipe without a ``data:`` section instead of reading its
    model keys as data keys. ``overrides`` are ``key=value`` strings inside the section (``limit=500``).
    """
    return read_section(path, "data", required=True).validate(DataConfig, list(overrides))
