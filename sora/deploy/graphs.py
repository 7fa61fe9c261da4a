"""The exported graphs: small modules that give a model's assemblies a plain tensor signature.

ONNX graphs take and return tensors, not caches or optional arguments, so each graph here wraps the
model's own particles (``run_stack``, ``encode``/``decode``, the ``KVCache``) in a ``forward`` of
named tensors, the signature in docs/deploy.md. ``graphs_for`` lists a model's graphs: ``model`` for
every assembly (with a ``segments`` input when the model has segment embeddings: text pairs), plus
``decoder_step`` for a decoder LM (with its KV cache as inputs and outputs), or ``encoder`` and
``decoder_step`` for seq2seq. A layer pruned to zero heads has no cache tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.export import Dim

from sora.deploy.samples import pair_segments
from sora.errors import SoraError
from sora.models import DecoderLM, Seq2Seq
from sora.particles import KVCache, LayerCache
from sora.particles.linear import GateCheck


@dataclass
class Graph:
    """One graph to export: the module, its input and output names, and its dynamic axes."""

    name: str  # "model" | "encoder" | "decoder_step"
    module: nn.Module
    inputs: list[str]
    outputs: list[str]
    example: tuple  # inputs to trace with (batch 2, lengths >= 2: torch.export specialises sizes 0 and 1)
    dynamic_shapes: tuple = field(default_factory=tuple)

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def past_names(heads: list[int]) -> list[str]:
    """``past_key_{i}``, ``past_value_{i}`` for each layer i with heads (the present_ names follow the same order)."""
    return [f"past_{kind}_{i}" for i, h in enumerate(heads) if h for kind in ("key", "value")]


def present_names(heads: list[int]) -> list[str]:
    return [name.replace("past_", "present_") for name in past_names(heads)]


def caches_from(past: tuple[Tensor, ...], heads: list[int]) -> list[LayerCache]:
    """One LayerCache per layer from the flat past tensors (B, H_i, S, dh). A layer without heads gets an
    empty-headed (B, 0, S, dh) view, so every layer's cache reports the length S (the position offset)."""
    tensors = iter(past)
    empty = past[0][:, :0]  # (B, 0, S, dh)
    caches = []
    for h in heads:
        k, v = (next(tensors), next(tensors)) if h else (empty, empty)
        caches.append(LayerCache(KVCache(k, v)))
    return caches


def presents_of(caches: list[LayerCache], heads: list[int]) -> list[Tensor]:
    return [t for c, h in zip(caches, heads) if h for t in (c.self_attn.k, c.self_attn.v)]


class ClassifierGraph(nn.Module):
    """encoder_classifier: ``input_ids``/``mels`` and ``valid`` (or ``pixels``), and a text pair's ``segments``,
    -> ``logits`` (B, C); span_extractor: -> start and end ``logits`` (B, T, 2)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, valid: Tensor | None = None, segments: Tensor | None = None) -> Tensor:
        return self.model(inputs, valid, segments)


class TokenGraph(nn.Module):
    """token_classifier: -> ``logits`` (B, T', C) and ``output_valid`` (B, T'): which outputs are real."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self, inputs: Tensor, valid: Tensor | None = None, segments: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        logits = self.model(inputs, valid, segments)  # (B, T', C)
        out_valid = self.model.output_valid(inputs, valid)
        if out_valid is None:  # images: every patch is real
            out_valid = torch.ones(logits.shape[:2], dtype=torch.bool)
        return logits, out_valid


class LMGraph(nn.Module):
    """decoder_lm without a cache: ``input_ids`` (B, T) -> ``logits`` (B, T, V)."""

    def __init__(self, model: DecoderLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.model(input_ids)


class LMStepGraph(nn.Module):
    """decoder_lm, one step with its KV cache: ``input_ids`` (B, T) and the past (B, H_i, S, dh) ->
    ``logits`` (B, T, V) and the presents (B, H_i, S+T, dh). S may be 0 (the prompt's step)."""

    def __init__(self, model: DecoderLM):
        super().__init__()
        self.model, self.heads = model, [b.attn.n_heads for b in model.layers]

    def forward(self, input_ids: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        caches = caches_from(past, self.heads)
        logits = self.model(input_ids, cache=caches)
        return (logits, *presents_of(caches, self.heads))


class EncoderGraph(nn.Module):
    """seq2seq's encoder: ``input_ids`` (B, S) and ``valid`` (B, S) -> ``memory`` (B, S, d)."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, valid: Tensor) -> Tensor:
        return self.model.encode(input_ids, valid)[0]


class Seq2SeqStepGraph(nn.Module):
    """seq2seq's decoder, one step: ``input_ids`` (B, T), ``memory`` (B, S, d), ``memory_valid`` (B, S) and
    the past -> ``logits`` (B, T, V) and the presents. Cross-attention keys are recomputed from memory."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model, self.heads = model, [b.attn.n_heads for b in model.decoder.layers]

    def forward(self, input_ids: Tensor, memory: Tensor, memory_valid: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        caches = caches_from(past, self.heads)
        logits = self.model.decode(input_ids, memory, memory_valid, caches)
        return (logits, *presents_of(caches, self.heads))


class _Fixed:
    """A GateCheck's answer, fixed: export traces with fake tensors, whose values a check cannot read."""

    def __init__(self, needed: bool):
        self.needed = needed

    def __call__(self, gate: Tensor) -> bool:
        return self.needed


def freeze_gate_checks(model: nn.Module) -> None:
    """Fix every particle's gate check to its answer on the real gates (a switched-off head or neuron
    stays off in the graph); call after one eager forward pass, which computes the answers."""
    for module in model.modules():
        for key, value in list(vars(module).items()):
            if isinstance(value, GateCheck):
                setattr(module, key, _Fixed(value.needed))


def graphs_for(model: nn.Module) -> list[Graph]:
    """The graphs of ``model``'s assembly, in export order."""
    config = model.config
    if config.input != "image" and config.max_len < PAST + LENGTH:
        raise SoraError(
            f"max_len {config.max_len}: too short to export (the graphs are traced on {PAST + LENGTH} positions)"
        )
    if config.arch in ("encoder_classifier", "span_extractor"):
        return [_encoder_graph(ClassifierGraph(model), config, ["logits"])]
    if config.arch == "token_classifier":
        return [_encoder_graph(TokenGraph(model), config, ["logits", "output_valid"])]
    if config.arch == "decoder_lm":
        return [_lm_graph(model), _step_graph(LMStepGraph(model), config)]
    if config.arch == "seq2seq":
        return [_seq2seq_encoder_graph(model), _step_graph(Seq2SeqStepGraph(model), config)]
    raise SoraError(
        f"arch '{config.arch}' has no ONNX export (export a classifier, tagger, span_extractor, decoder_lm or seq2seq)"
    )


BATCH, LENGTH, PAST, SOURCE = 2, 3, 5, 7  # trace sizes: distinct, so no two axes are taken for one


def _batch() -> Dim:
    return Dim("batch", min=1)


def _encoder_graph(module: nn.Module, config, outputs: list[str]) -> Graph:
    B = _batch()
    if config.input == "image":
        im = config.image
        example = (torch.randn(BATCH, im.channels, im.size, im.size),)
        return Graph("model", module, ["pixels"], outputs, example, ({0: B},))
    if config.input == "audio":
        p = config.audio.patch_frames
        cls = config.pooling == "cls" and config.arch == "encoder_classifier"
        frames = Dim("frames", min=p, max=(config.max_len - cls) * p)
        F = p * LENGTH + 1
        example = (torch.randn(BATCH, config.audio.n_mels, F), torch.ones(BATCH, F, dtype=torch.bool))
        return Graph("model", module, ["mels", "valid"], outputs, example, ({0: B, 2: frames}, {0: B, 1: frames}))
    T = Dim("seq", min=1, max=config.max_len)
    names, example = ["input_ids", "valid"], [_ids(config, BATCH, LENGTH), torch.ones(BATCH, LENGTH, dtype=torch.bool)]
    if config.segments:  # a text pair: traced with both segments present
        names.append("segments")
        example.append(pair_segments(example[1]))  # (B, T): the first half one text, the rest the other
    return Graph("model", module, names, outputs, tuple(example), tuple({0: B, 1: T} for _ in names))


def _lm_graph(model: DecoderLM) -> Graph:
    config = model.config
    T = Dim("seq", min=1, max=config.max_len)
    return Graph(
        "model", LMGraph(model), ["input_ids"], ["logits"], (_ids(config, BATCH, LENGTH),), ({0: _batch(), 1: T},)
    )


def _seq2seq_encoder_graph(model: Seq2Seq) -> Graph:
    config = model.config
    B, S = _batch(), Dim("source", min=1, max=config.max_len)
    example = (_ids(config, BATCH, SOURCE), torch.ones(BATCH, SOURCE, dtype=torch.bool))
    return Graph(
        "encoder", EncoderGraph(model), ["input_ids", "valid"], ["memory"], example, ({0: B, 1: S}, {0: B, 1: S})
    )


def _step_graph(module: LMStepGraph | Seq2SeqStepGraph, config) -> Graph:
    heads = module.heads
    if not any(heads):
        raise SoraError("the decoder has no attention heads left: it has no KV cache to export a decoder_step for")
    B = _batch()
    T, S = Dim("seq", min=1, max=config.max_len), Dim("past", min=0, max=config.max_len)
    past = tuple(torch.zeros(BATCH, h, PAST, config.head_dim) for h in heads if h for _ in range(2))
    past_axes = tuple({0: B, 2: S} for _ in past)
    inputs, example, axes = ["input_ids"], [_ids(config, BATCH, LENGTH)], [{0: B, 1: T}]
    if isinstance(module, Seq2SeqStepGraph):
        M = Dim("source", min=1, max=config.max_len)
        inputs += ["memory", "memory_valid"]
        example += [torch.randn(BATCH, SOURCE, config.d_model), torch.ones(BATCH, SOURCE, dtype=torch.bool)]
        axes += [{0: B, 1: M}, {0: B, 1: M}]
    return Graph(
        "decoder_step",
        module,
        inputs + past_names(heads),
        ["logits", *present_names(heads)],
        (*example, *past),
        (*axes, past_axes),
    )


def _ids(config, batch: int, length: int) -> Tensor:
    return torch.randint(0, config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(0))
