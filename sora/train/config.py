"""The training config: the ``train:`` section of a recipe, typed and strict.

Every key has a default a small CPU run can use; at least one of ``epochs``, ``max_steps`` or
``max_minutes`` says when to stop. ``batch_size`` is the *global* batch of one micro-step: under
torchrun each of N processes takes ``batch_size / N`` examples, so a recipe trains the same model
on one process or many.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sora.configio import Seed, StrictModel
from sora.models.config import AdapterConfig

#: metrics where smaller is better; every other metric is maximised
MINIMISED = ("loss", "perplexity", "bits_per_char", "bits_per_token", "cer", "wer")


def metric_mode(metric: str) -> str:
    return "min" if metric in MINIMISED else "max"


class EarlyStopping(StrictModel):
    """Stop when ``metric`` has not improved for ``patience`` validations."""

    metric: str = Field("loss", description="a validation metric: loss, accuracy, macro_f1, bleu, cer, ...")
    mode: Literal["min", "max"] | None = Field(None, description="default: min for losses and error rates, else max")
    patience: int = Field(3, ge=1, description="validations without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as an improvement")

    def resolved_mode(self) -> str:
        return self.mode or metric_mode(self.metric)


class PretrainConfig(StrictModel):
    """Pretraining of a text encoder on the training split's own texts, before the task: no other data.

    A small encoder trained from scratch on ten thousand labelled sentences learns its words and the task at
    once. ``ppmi``: start the token embedding from word vectors of the training texts (seconds;
    sora.train.word_vectors). ``mlm``: train the body to fill in masked tokens first (BERT's objective;
    sora.train.pretrain), which needs many thousand steps before it beats guessing common words."""

    objective: Literal["ppmi", "mlm"] = "mlm"
    epochs: float | None = Field(None, gt=0, description="mlm: passes over the training texts")
    lr: float = Field(1e-3, gt=0, description="mlm: peak learning rate (AdamW, linear warm-up, cosine decay)")
    warmup_steps: int = Field(100, ge=0, description="mlm")
    mask: float = Field(0.15, gt=0, lt=1, description="mlm: share of real tokens chosen for prediction")
    batch_size: int | None = Field(None, gt=0, description="mlm: default the training batch size")
    weight_decay: float = Field(0.01, ge=0, description="mlm")
    window: int = Field(4, gt=0, description="ppmi: tokens either side that count as context")

    @model_validator(mode="after")
    def _mlm_has_epochs(self) -> PretrainConfig:
        if self.objective == "mlm" and self.epochs is None:
            raise ValueError("objective mlm needs epochs")
        return self


class TrainConfig(StrictModel):
    # optimizer
    optimizer: Literal["adamw", "sgd"] = "adamw"
    pretrain: PretrainConfig | None = Field(None, description="masked-LM pretraining on the training texts first")
    adapters: AdapterConfig | None = Field(
        None, description="train only adapters (lora or bottleneck) and the head on a pretrained init"
    )
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0, description="not applied to norms, biases and embeddings")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW")
    eps: float = Field(1e-8, gt=0, description="AdamW")
    momentum: float = Field(0.9, ge=0, description="SGD")
    nesterov: bool = Field(False, description="SGD")
    # schedule
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 to lr")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="linear/cosine decay ends at lr * this")
    # length of the run
    epochs: float | None = Field(None, gt=0, description="passes over the training split (fractions allowed)")
    max_steps: int | None = Field(None, gt=0, description="optimizer steps")
    max_minutes: float | None = Field(None, gt=0, description="time budget for the training loop")
    # batches
    batch_size: int = Field(32, gt=0, description="global examples per micro-step (all processes together)")
    eval_batch_size: int | None = Field(None, gt=0, description="default: 2 x batch_size")
    grad_accum: int = Field(1, ge=1, description="micro-steps per optimizer step")
    clip_grad_norm: float | None = Field(1.0, gt=0, description="max global gradient norm; null = no clipping")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    ema_decay: float | None = Field(
        None, gt=0, lt=1, description="validate and keep a moving average of the weights (e.g. 0.995); null: off"
    )
    # numerics and speed
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="fp16 needs CUDA (gradient scaler)")
    compile: bool = Field(False, description="torch.compile the model for training")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, gt=0, description="torch CPU threads (default: torch's choice)")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="under torchrun: DistributedDataParallel or FSDP2")
    # validation, selection, checkpoints
    validate_every_steps: int | None = Field(None, gt=0, description="validate every N steps besides every epoch")
    eval_max_batches: int | None = Field(None, gt=0, description="cap validation batches (fast feedback)")
    decode_examples: int = Field(200, ge=0, description="seq2seq/ctc: validation examples decoded for BLEU/CER")
    decode_max_tokens: int = Field(96, gt=0, description="seq2seq: longest greedy decode in validation")
    test_by: str | None = Field(
        None, description="a data column (e.g. snr, accent): test metrics for each of its values, besides overall"
    )
    test_beam: int = Field(1, ge=1, description="seq2seq: beam width of the test split's decodes (1: greedy)")
    test_decode_examples: int | None = Field(
        None, ge=0, description="seq2seq/ctc: test examples decoded for BLEU/CER; null: every one"
    )
    early_stopping: EarlyStopping | None = None
    best_metric: str | None = Field(
        None, description="metric that picks the best model (default: early_stopping's, else per task)"
    )
    keep_last: int = Field(2, ge=1, description="checkpoints kept in OUT/checkpoints")
    checkpoint_every_steps: int | None = Field(None, gt=0, description="checkpoint besides every validation")
    # reproducibility and logging
    seed: Seed = 0
    log_every: int = Field(20, gt=0, description="steps between log lines (JSONL, TensorBoard)")
    quiet: bool = Field(False, description="no progress bar or console lines")
    num_workers: int = Field(0, ge=0, description="data loader worker processes")

    @model_validator(mode="after")
    def _has_an_end(self) -> TrainConfig:
        if self.epochs is None and self.max_steps is None and self.max_minutes is None:
            raise ValueError("set at least one of epochs, max_steps or max_minutes")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must each be in [0, 1), got {list(self.betas)}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if self.early_stopping and self.best_metric and self.best_metric != self.early_stopping.metric:
            raise ValueError(
                f"best_metric '{self.best_metric}' differs from early_stopping.metric "
                f"'{self.early_stopping.metric}': one metric both picks the best model and stops the run"
            )
        return self

    def selection(self, task_default: str) -> tuple[str, str]:
        """(metric, mode) that picks the best model."""
        if self.best_metric:
            return self.best_metric, metric_mode(self.best_metric)
        if self.early_stopping is not None:
            return self.early_stopping.metric, self.early_stopping.resolved_mode()
        return task_default, metric_mode(task_default)
