"""Typed configs for compression: what to prune, how to quantize, LoRA, and the whole stage.

A recipe's ``compress:`` section is a ``CompressConfig``; ``sora prune --plan plan.yaml`` reads a
``PruneConfig``. Budgets are fractions of what exists (0.5 = remove half the heads), so a plan
means the same thing on any model size; a budget over 100% is an error, not a clamp.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sora.configio import Seed, StrictModel

Scope = Literal["global", "per_layer"]


def _fraction(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if value > 1:
        raise ValueError(f"budget {value:.0%} is over 100% of the {what}")
    if value < 0:
        raise ValueError(f"budget {value} is negative; give a fraction of the {what} between 0 and 1")
    return value


class PruneConfig(StrictModel):
    """Structural pruning: explicit particle names, and/or budgets filled by importance scores."""

    remove: list[str] = Field(
        default_factory=list,
        description="particle names to remove: "
        "layers.1.attn.head.3, layers.0.ffn.neuron.7, layers.2 (a block), layers.1.attn (all heads)",
    )
    heads: float | None = Field(None, description="fraction of attention heads to remove, lowest importance first")
    neurons: float | None = Field(None, description="fraction of feed-forward neurons to remove")
    layers: int | None = Field(
        None,
        ge=0,
        description="whole blocks to drop, those whose removal costs the least "
        "loss (measured by skipping each block on validation data, or the analysis' layers)",
    )
    scope: Scope = Field("global", description="rank across all layers (global) or within each layer (per_layer)")
    normalize: bool = Field(
        True,
        description="divide each layer's scores by their L2 norm before a global "
        "ranking (Michel et al. 2019), so layers with large scores do not keep everything",
    )
    scores: str | None = Field(None, description="analysis.json with importance scores; default: computed")
    reconstruct: bool = Field(
        False,
        description="after each prune step, tune the kept heads' gates so that every attention layer that lost "
        "heads reconstructs its unpruned output (least squares on validation batches, Kwon et al. 2022)",
    )
    vocabulary: bool = Field(
        False,
        description="keep only the tokens the training texts use (and single characters): "
        "a smaller embedding for pretrained WordPiece models; see sora.compress.vocabulary",
    )
    sparsity: float | None = Field(
        None, description="unstructured: zero this fraction of the block weights by magnitude"
    )
    sparsity_scope: Scope = Field("global", description="one magnitude threshold for all weights, or one per matrix")

    @field_validator("heads")
    @classmethod
    def _heads(cls, v):
        return _fraction(v, "heads")

    @field_validator("neurons")
    @classmethod
    def _neurons(cls, v):
        return _fraction(v, "neurons")

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, v):
        return _fraction(v, "weights")

    @property
    def structural(self) -> bool:
        return bool(self.remove) or bool(self.heads) or bool(self.neurons) or bool(self.layers)


class QuantizeConfig(StrictModel):
    """int8 dynamic quantization: int8 weights (per output channel), activations quantized on the fly."""

    embeddings: bool = Field(True, description="store token embeddings as int8 rows with a scale each")
    min_weights: int = Field(
        100_000,
        ge=0,
        description="run a Linear in int8 only if it has at least this many "
        "weights: below it int8 is slower than fp32 on this CPU (see docs/compression.md)",
    )
    min_side: int = Field(
        256,
        ge=0,
        description="and only if its narrower side (inputs or outputs; Q, K, V "
        "stacked) is at least this: int8 GEMMs on 128-wide matrices lose at one sentence",
    )
    activations: Literal["tensor", "row"] = Field(
        "tensor",
        description="activation scales of every int8 Linear: one per call (fastest), or one per row "
        "(token: an outlier token no longer coarsens the rest; 1.6-1.9x the per-call GEMM's time)",
    )
    sensitive: int = Field(
        4,
        ge=0,
        description="with data (sora compress, sora quantize --data): this many Linears "
        "whose per-call int8 moves the outputs most get `sensitive_as`; their weights stay int8",
    )
    sensitive_as: Literal["row", "fp32"] = Field(
        "row", description="what the sensitive Linears get: per-row activation scales, or fp32 maths"
    )
    calibration_batches: int = Field(4, gt=0, description="validation batches of 32 that measure the sensitivity")
    small_linears: Literal["int8_storage", "fp32"] = Field(
        "int8_storage",
        description="Linears under min_weights: int8 on disk and fp32 maths on dequantized weights "
        "(smaller, as fast as fp32), or left fp32 entirely",
    )


class LoRAConfig(StrictModel):
    """Low-rank adapters (Hu et al. 2021): W x + (alpha / r) B A x, with only A and B trained."""

    rank: int = Field(8, gt=0)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(
        default_factory=lambda: ["q", "v"],
        description="projections: q, k, v, out, "
        "attn (all four), ffn (fc_in, fc_gate, fc_out), or module paths such as layers.1.attn",
    )


class FinetuneConfig(StrictModel):
    """Recovery fine-tuning after pruning (through sora.train)."""

    epochs: float = Field(1.0, gt=0, description="passes over the training split (fractions allowed)")
    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(32, gt=0)
    lora: LoRAConfig | None = Field(None, description="fine-tune adapters only, then merge them in")
    distill: float = Field(
        0.0,
        ge=0,
        le=1,
        description="weight of matching the unpruned model's outputs "
        "(knowledge distillation) against the labels' loss; 0 = labels only",
    )
    temperature: float = Field(2.0, gt=0, description="softens both models' outputs for distillation")
    hidden: float = Field(
        0.0,
        ge=0,
        description="weight of layer distillation: each kept block's output "
        "matches the unpruned model's (relative squared error), added to the loss",
    )
    seed: Seed = Field(0, description="shuffling and dropout: another seed is another sample of the same recipe")


class CompressConfig(StrictModel):
    """The compress stage: importance -> prune -> (fine-tune) -> quantize -> evaluate every variant."""

    prune: PruneConfig = Field(default_factory=lambda: PruneConfig(heads=0.5))
    steps: int = Field(1, ge=1, description="iterative pruning: reach the budget in this many prune+fine-tune rounds")
    finetune: FinetuneConfig | None = None
    quantize: QuantizeConfig | None = Field(default_factory=QuantizeConfig)
    pruned_quantize: QuantizeConfig | None = Field(
        None,
        description="int8 settings of the pruned model (default: quantize's; set with quantize: null, only "
        "the pruned model is quantized). Its matrices are smaller, so per-row scales cost more of what int8 saves: "
        "at one sentence they cancel its gain (docs/compression.md)",
    )
    importance_batches: int = Field(16, gt=0, description="batches used to compute importance when no scores file")
    check_examples: int = Field(
        2048,
        gt=0,
        description="validation examples on which each ranking is checked against random order when no scores "
        "file gives the analysis' choice (the whole split when it has fewer)",
    )
    eval_batch_size: int = Field(64, gt=0)
    latency_repeats: int = Field(10, gt=0, description="best-of-N timing repeats per batch size")
    latency_batches: list[int] = Field(default_factory=lambda: [1, 32])

    @field_validator("latency_batches")
    @classmethod
    def _positive(cls, v):
        if not v or any(b <= 0 for b in v):
            raise ValueError("latency_batches must be positive batch sizes")
        return v
