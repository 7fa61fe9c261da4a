"""The ``analyze:`` section of a recipe: which measurements to take, on how much data."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sora.configio import Seed, StrictModel

HeadRanking = Literal["gradient", "gradient_raw", "fisher", "iterative", "ablation"]
NeuronRanking = Literal["taylor", "taylor_layer", "fisher", "activation", "ablation"]
Method = Literal["gradient", "ablation", "attention", "neurons", "position", "pruning"]
METHODS: tuple[str, ...] = ("gradient", "ablation", "attention", "neurons", "position", "pruning")


class AnalyzeConfig(StrictModel):
    methods: list[Method] = Field(
        list(METHODS),
        description="gradient: head importance (Michel et al.); "
        "ablation: measured loss/metric change per head and layer; attention: "
        "per-head statistics and types; neurons: Taylor scores and histograms; "
        "position: position-vector similarity; pruning: the pruning curve",
    )
    split: str = Field("validation", description="which data split the measurements use")
    batch_size: int = Field(32, gt=0)
    max_batches: int = Field(16, gt=0, description="batches of the split used (the same ones for every method)")
    ablation: Literal["zero", "mean", "resample"] = Field(
        "zero",
        description="how an ablated particle is "
        "removed: zeros (= gate 0), its dataset mean, or "
        "another example's activation",
    )
    examples: list[str] = Field(
        default_factory=list,
        description="texts whose attention patterns the report "
        "draws (text models; tokenized with the model's tokenizer)",
    )
    n_examples: int = Field(
        2,
        ge=0,
        description="examples taken from the analysis data for the attention figures when 'examples' gives none "
        "(always for images and audio; one per class where the batch has several)",
    )
    pruning_order: Literal["best", "gradient", "gradient_raw", "fisher", "iterative", "ablation"] = Field(
        "best",
        description="which ranking the pruning curve shows: best = the one the ranking check chooses "
        "(largest area under the curve among rankings not worse than random order)",
    )
    rankings: list[HeadRanking] | None = Field(
        None,
        description="head rankings the check compares with random order; default: gradient, gradient_raw, fisher, "
        "iterative, and ablation when the methods include it (sora.analyze.rankings)",
    )
    neuron_rankings: list[NeuronRanking] | None = Field(
        None,
        description="neuron rankings checked the same way; default: taylor, taylor_layer, fisher, activation, "
        "and ablation (of neuron groups) when the methods include it; [] skips the neuron check",
    )
    check_examples: int = Field(
        2048,
        gt=0,
        description="examples of the split the ranking check measures its curves on (the whole split when it "
        "has fewer); the rankings themselves are estimated on the max_batches batches",
    )
    neuron_steps: int = Field(10, gt=0, description="points on the neuron pruning curves (even fractions)")
    reconstruct: bool = Field(
        False,
        description="also measure the chosen head order with the kept heads' gates tuned by per-layer output "
        "reconstruction (Kwon et al. 2022): one pass over the analysis batches per layer and point",
    )
    pruning_steps: int | None = Field(
        None,
        gt=0,
        description="points on the pruning curve; default: every head count up to 48 heads, else 24 even steps",
    )
    pruning_seeds: int = Field(5, gt=0, description="random orders averaged for the random curves")
    special_tokens: list[str] = Field(
        default_factory=list,
        description="extra special tokens for the attention statistics ([CLS], [SEP], <s>, BOS/EOS ... are known)",
    )
    max_positions: int = Field(128, gt=1, description="positions shown in the position similarity matrix")
    seed: Seed = 0
