"""Torch against ONNX Runtime on the same inputs: every output of every graph, compared.

``compare`` runs the torch model through its own API (``forward``, ``output_valid``, ``encode``,
and for the decoder steps its own cached generation: a prompt, then ``STEPS`` tokens one at a time,
each the torch model's greedy pick) and the ONNX graphs in ONNX Runtime, each fed its own earlier
outputs (memory, presents), as a runtime would. The result, per graph, is what ``fp32_diffs`` and
``int8_agreement`` reduce to the figures meta.json records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from sora.deploy.graphs import Graph, past_names, present_names
from sora.deploy.samples import STEPS, Samples
from sora.tasks.question_answering import masked_padding


@dataclass
class Pair:
    """One output of one run: what torch gave, what ONNX Runtime gave, and where a prediction is real."""

    output: str
    torch: np.ndarray
    onnx: np.ndarray
    valid: np.ndarray | None = None  # (B,) or (B, T) positions whose argmax is a prediction


class Sessions:
    """One ONNX Runtime session per graph file, fed named tensors."""

    def __init__(self, folder: Path, graphs: list[Graph]):
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings about unused initializers
        self.sessions = {
            g.name: ort.InferenceSession(str(folder / g.file), options, providers=["CPUExecutionProvider"])
            for g in graphs
        }

    def run(self, name: str, feeds: dict[str, Tensor | np.ndarray]) -> dict[str, np.ndarray]:
        session = self.sessions[name]
        wanted = {i.name for i in session.get_inputs()}  # the exporter drops an input the graph does not use
        arrays = {k: v.numpy() if isinstance(v, Tensor) else v for k, v in feeds.items() if k in wanted}
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, arrays)))


@torch.no_grad()
def compare(model: nn.Module, sessions: Sessions, samples: Samples) -> dict[str, list[Pair]]:
    """graph name -> its Pairs over every sample batch."""
    arch = model.config.arch
    pairs: dict[str, list[Pair]] = {name: [] for name in sessions.sessions}
    for batch in samples.batches:
        if arch == "encoder_classifier":
            pairs["model"] += _classifier(model, sessions, batch)
        elif arch == "span_extractor":
            pairs["model"] += _spans(model, sessions, batch)
        elif arch == "token_classifier":
            pairs["model"] += _tagger(model, sessions, batch)
        elif arch == "decoder_lm":
            got = sessions.run("model", {"input_ids": batch["ids"]})["logits"]
            pairs["model"].append(Pair("logits", model(batch["ids"]).numpy(), got, np.ones(got.shape[:2], bool)))
            pairs["decoder_step"] += _steps(model, sessions, batch["ids"], {}, None)
        else:
            pairs.update(_seq2seq(model, sessions, batch, pairs))
    return pairs


def _feeds(config, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    if config.input == "image":
        return {"pixels": batch["inputs"]}
    feeds = {"mels" if config.input == "audio" else "input_ids": batch["inputs"], "valid": batch["valid"]}
    return {**feeds, "segments": batch["segments"]} if "segments" in batch else feeds


def _classifier(model, sessions: Sessions, batch) -> list[Pair]:
    got = sessions.run("model", _feeds(model.config, batch))["logits"]
    want = model(batch["inputs"], batch.get("valid"), batch.get("segments")).numpy()
    return [Pair("logits", want, got, np.ones(got.shape[:1], bool))]


def _spans(model, sessions: Sessions, batch) -> list[Pair]:
    """Start and end logits, padding masked as the span task masks it, compared as (W, 2, T): an int8 graph then
    agrees where it picks the same start token and the same end token as torch."""
    got = torch.from_numpy(sessions.run("model", _feeds(model.config, batch))["logits"])  # (W, T, 2)
    want = model(batch["inputs"], batch["valid"], batch.get("segments"))
    got, want = (masked_padding(x, batch["valid"]).transpose(1, 2).numpy() for x in (got, want))  # (W, 2, T)
    return [Pair("logits", want, got, np.ones(got.shape[:2], bool))]


def _tagger(model, sessions: Sessions, batch) -> list[Pair]:
    got = sessions.run("model", _feeds(model.config, batch))
    logits = model(batch["inputs"], batch.get("valid")).numpy()
    valid = model.output_valid(batch["inputs"], batch.get("valid"))
    valid = np.ones(logits.shape[:2], bool) if valid is None else valid.numpy()
    return [Pair("logits", logits, got["logits"], valid), Pair("output_valid", valid, got["output_valid"])]


def _seq2seq(model, sessions: Sessions, batch, pairs: dict[str, list[Pair]]) -> dict[str, list[Pair]]:
    memory, memory_valid = model.encode(batch["src"], batch["src_valid"])
    got = sessions.run("encoder", {"input_ids": batch["src"], "valid": batch["src_valid"]})["memory"]
    onnx_memory = {"memory": got, "memory_valid": batch["src_valid"]}
    steps = _steps(model, sessions, batch["tgt"], onnx_memory, (memory, memory_valid))
    return {
        "encoder": pairs["encoder"] + [Pair("memory", memory.numpy(), got)],
        "decoder_step": pairs["decoder_step"] + steps,
    }


def _steps(model, sessions: Sessions, prompt: Tensor, onnx_memory: dict, memory: tuple | None) -> list[Pair]:
    """The prompt's step and STEPS one-token steps, torch with its own KV cache, ONNX with its presents."""
    decoder = model.decoder if memory is not None else model
    heads = [b.attn.n_heads for b in decoder.layers]
    B, dh = prompt.shape[0], model.config.head_dim
    past = {name: np.zeros((B, h, 0, dh), np.float32) for name, h in zip(past_names(heads), _twice(heads))}
    cache, tokens, pairs = decoder.new_cache(), prompt, []
    for _ in range(1 + STEPS):
        want = model(tokens, cache=cache) if memory is None else model.decode(tokens, *memory, cache)  # (B, T, V)
        got = sessions.run("decoder_step", {"input_ids": tokens, **onnx_memory, **past})
        pairs.append(Pair("logits", want.numpy(), got["logits"], np.ones(want.shape[:2], bool)))
        presents = [t for c, h in zip(cache, heads) if h for t in (c.self_attn.k, c.self_attn.v)]
        pairs += [Pair(name, t.numpy(), got[name]) for name, t in zip(present_names(heads), presents)]
        past = {p: got[name] for p, name in zip(past_names(heads), present_names(heads))}
        tokens = want[:, -1:].argmax(-1)  # (B, 1) the torch model's greedy pick, fed to both
    return pairs


def _twice(heads: list[int]) -> list[int]:
    return [h for h in heads if h for _ in range(2)]


def fp32_diffs(pairs: dict[str, list[Pair]]) -> dict[str, float]:
    """graph -> max |onnx - torch| over all its outputs (a boolean output counts 1 where it differs)."""
    return {name: max((_max_diff(p) for p in found), default=0.0) for name, found in pairs.items()}


def _max_diff(p: Pair) -> float:
    if p.torch.size == 0:
        return 0.0
    if p.torch.shape != p.onnx.shape:
        return float("inf")
    return float(np.abs(p.onnx.astype(np.float64) - p.torch.astype(np.float64)).max())


def int8_agreement(pairs: dict[str, list[Pair]]) -> dict[str, float]:
    """How often the int8 graphs predict what the fp32 torch model predicts (argmax of the logits at
    each real position: the label, the tag, the next token) and the largest logit difference."""
    agree = total = 0
    worst = 0.0
    for found in pairs.values():
        for p in found:
            if p.output != "logits":
                continue
            same = p.torch.argmax(-1) == p.onnx.argmax(-1)
            agree += int(same[p.valid].sum())
            total += int(p.valid.sum())
            worst = max(worst, _max_diff(p))
    return {"label_agreement": round(agree / max(total, 1), 4), "max_logit_diff": round(worst, 4), "predictions": total}
