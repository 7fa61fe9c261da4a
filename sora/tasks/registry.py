"""Which task: by name (or a name other parts of Sora, or people, use), from a model and its batches, or
from prepared data."""

from __future__ import annotations

from torch import Tensor, nn

from sora.data.protocol import TaskData
from sora.errors import SoraError
from sora.tasks.base import Task
from sora.tasks.kinds import CTC, Classification, Features, LanguageModel, Seq2SeqTask, TokenClassification
from sora.tasks.question_answering import SpanTask

TASKS = ("classification", "token_classification", "lm", "seq2seq", "ctc", "features", "span")
ALIASES = {  # names other parts of Sora (or people) may use for the same task
    "text_classification": "classification",
    "image_classification": "classification",
    "audio_classification": "classification",
    "sequence_classification": "classification",
    "language_modelling": "lm",
    "language_modeling": "lm",
    "causal_lm": "lm",
    "translation": "seq2seq",
    "speech_recognition": "ctc",
    "asr": "ctc",
    "tagging": "token_classification",
    "qa": "span",
    "question_answering": "span",
    "extractive_qa": "span",
}


def make_task(
    kind: str,
    *,
    labels: list[str] | None = None,
    tokenizer=None,
    n_classes: int | None = None,
    decode: bool = True,
    max_new_tokens: int = 96,
) -> Task:
    """The task named ``kind`` (one of TASKS), with what its metrics need."""
    if kind == "classification":
        return Classification(labels, n_classes)
    if kind == "token_classification":
        return TokenClassification(labels)
    if kind == "lm":
        return LanguageModel(tokenizer)
    if kind == "seq2seq":
        return Seq2SeqTask(tokenizer, max_new_tokens, decode)
    if kind == "ctc":
        return CTC(labels)
    if kind == "features":
        return Features()
    if kind == "span":
        return SpanTask()
    raise _unknown(kind)


def as_task(task: Task | str) -> Task:
    """``task`` itself, or the task of that name with no labels or tokenizer (losses and 0-1 metrics need none)."""
    return task if isinstance(task, Task) else make_task(task)


def normalise_task(task: str) -> str:
    """The name in TASKS for ``task`` or one of its ALIASES."""
    task = ALIASES.get(task, task)
    if task not in TASKS:
        raise _unknown(task)
    return task


def infer_task(model: nn.Module, batch: dict[str, Tensor] | None = None) -> str:
    """The task a model and its batches imply (token classifiers: CTC if the batch has targets)."""
    arch = model.config.arch
    if arch == "encoder":
        return "features"
    if arch == "encoder_classifier":
        return "classification"
    if arch == "decoder_lm":
        return "lm"
    if arch == "seq2seq":
        return "seq2seq"
    if arch == "span_extractor":
        return "span"
    if batch is not None and "targets" in batch:
        return "ctc"
    return "token_classification" if model.config.input == "text" else "ctc"


def check_batch(batch: dict, task: Task | str, where: str = "batch") -> None:
    """Refuse a batch that is not a dict of tensors or lacks a key ``task`` reads, naming ``where``."""
    as_task(task).check(batch, where)


def task_for(
    data: TaskData, model: nn.Module | None = None, *, decode_examples: int = 200, max_new_tokens: int = 96
) -> Task:
    """The task of prepared data (sora.data), with its labels and tokenizer; ``model`` gives the class count."""
    n_classes = model.config.n_classes if model is not None else None
    return make_task(
        data.task,
        labels=data.labels,
        tokenizer=data.tokenizer,
        n_classes=n_classes,
        decode=decode_examples > 0,
        max_new_tokens=max_new_tokens,
    )


def _unknown(task: str) -> SoraError:
    return SoraError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
