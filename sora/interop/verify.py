"""Parity with transformers: the only part of sora.interop that imports it, and only when asked.

A Sora model and the Hugging Face folder it came from (import) or went to (export) are run on
the same inputs: real sentences with padding when there is a tokenizer (random tokens otherwise),
random images for ViT. Compared: the last hidden states at real positions, the task head's
outputs, and for GPT-2 the tokens of greedy generation.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from sora.errors import SoraError, first_line
from sora.interop.checkpoint import read_config

TOLERANCE = 1e-4
SENTENCES = [
    "A gripping, beautifully shot film that never loses its nerve.",
    "Dull.",
    "The plot meanders, but the performances are strong enough to carry it through the slow middle hour.",
    "An utterly forgettable sequel.",
]


def transformers_available() -> bool:
    return importlib.util.find_spec("transformers") is not None


@contextlib.contextmanager
def _quiet_transformers():
    """Offline, and without transformers' load reports and progress bars (restored afterwards)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield transformers
    finally:
        logging.set_verbosity(level)
        logging.enable_progress_bar()


def probe_inputs(model: nn.Module, tokenizer=None, *, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """Inputs for a parity check: (ids (B, T), valid (B, T)) for text, (images, None) for ViT."""
    config = model.config
    g = torch.Generator().manual_seed(seed)
    if config.input == "image":
        im = config.image
        return torch.randn(2, im.channels, im.size, im.size, generator=g), None
    max_len = min(config.max_len, 32)
    if tokenizer is not None:
        rows = [enc.ids[:max_len] for enc in tokenizer.encode_batch(SENTENCES)]
    else:  # random tokens (never the pad id), rows of different lengths
        lengths = [max_len, max_len // 2, 3, max_len - 5]
        rows = []
        for n in lengths:
            ids = torch.randint(0, config.vocab_size - 1, (max(n, 1),), generator=g)
            rows.append((ids + (ids >= config.pad_id).long()).tolist())  # skip pad_id
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), config.pad_id, dtype=torch.long)
    valid = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        valid[i, : len(row)] = True
    return ids, valid


def compare_with_transformers(
    model: nn.Module, folder: str | Path, tokenizer=None, *, generate_tokens: int = 8, segments: bool = False
) -> dict:
    """Run ``model`` and the transformers model in ``folder`` on the same inputs; return the max differences.

    ``segments``: where the transformers model has token types, also read the second half of every row as
    token type 1 (a sentence pair), so an export that loses what a second segment adds cannot pass.
    """
    if not transformers_available():
        raise SoraError("comparing with transformers needs it installed: pip install -c constraints.txt transformers")
    model = model.eval()
    inputs, valid = probe_inputs(model, tokenizer)
    report: dict = {"inputs": _describe(inputs, valid, tokenizer)}
    try:
        with _quiet_transformers() as transformers, torch.no_grad():
            _compare(
                model, folder, transformers, inputs, valid, report, generate_tokens=generate_tokens, segments=segments
            )
    except SoraError:
        raise
    except Exception as e:  # noqa: BLE001  whatever transformers raises on a folder it cannot load or run
        raise SoraError(
            f"{folder}: transformers could not load or run it to check parity ({type(e).__name__}: "
            f"{first_line(e)}); nothing written (--no-verify writes it without this check)"
        ) from None
    report["tolerance"] = TOLERANCE
    report["ok"] = all(report[k] <= TOLERANCE for k in FIGURES if k in report) and report.get(
        "greedy_tokens_equal", True
    )
    return report


# The max |difference| figures a report holds (the second-segment ones only where token types exist).
FIGURES = ("last_hidden_state", "logits", "second_segment_hidden_state", "second_segment_logits")


def _compare(
    model: nn.Module,
    folder: str | Path,
    transformers,
    inputs: Tensor,
    valid: Tensor | None,
    report: dict,
    *,
    generate_tokens: int,
    segments: bool,
) -> None:
    config = model.config
    kwargs = (
        {"pixel_values": inputs} if config.input == "image" else {"input_ids": inputs, "attention_mask": valid.long()}
    )
    base = transformers.AutoModel.from_pretrained(str(folder)).eval()
    types = None
    if segments and config.input == "text" and getattr(base.config, "type_vocab_size", 0) > 1:
        types = _second_segment(valid)
        report["inputs"] += "; each row's second half also as token type 1"
    hidden, _ = model.run_stack(inputs, valid)
    report["last_hidden_state"] = _max_diff(hidden, base(**kwargs).last_hidden_state, valid)
    if types is not None:
        pairs = base(**kwargs, token_type_ids=types).last_hidden_state
        ours_pairs = model.run_stack(inputs, valid, segments=types)[0] if config.segments else hidden
        report["second_segment_hidden_state"] = _max_diff(ours_pairs, pairs, valid)
    del base
    if config.arch == "encoder":
        return
    task = _task_class(transformers, folder).from_pretrained(str(folder)).eval()
    ours = model(inputs, valid) if config.arch != "decoder_lm" else model(inputs)
    mask = valid if config.arch in ("token_classifier", "decoder_lm", "span_extractor") else None
    report["logits"] = _max_diff(ours, _logits(task(**kwargs)), mask)
    if types is not None:
        ours_pairs = model(inputs, valid, types) if config.segments else ours
        report["second_segment_logits"] = _max_diff(ours_pairs, _logits(task(**kwargs, token_type_ids=types)), mask)
    if config.arch == "decoder_lm" and generate_tokens:
        report["greedy_tokens_equal"] = _same_greedy_tokens(model, task, inputs, valid, generate_tokens)


def _logits(output) -> Tensor:
    """A task model's logits; question answering's start and end logits as Sora's span head gives them (B, T, 2)."""
    if getattr(output, "start_logits", None) is not None:
        return torch.stack([output.start_logits, output.end_logits], dim=-1)
    return output.logits


def _second_segment(valid: Tensor) -> Tensor:
    """Token types of sentence pairs: 1 on the second half of every row's real tokens, 0 elsewhere."""
    lengths = valid.sum(1, keepdim=True)
    positions = torch.arange(valid.shape[1]).unsqueeze(0)
    return ((positions >= lengths // 2) & valid).long()


def _task_class(transformers, folder: str | Path):
    name = (read_config(Path(folder)).get("architectures") or [""])[0]
    cls = getattr(transformers, name, None)
    if cls is None:
        raise SoraError(f"{folder}: transformers has no class {name!r}")
    return cls


def _max_diff(ours: Tensor, theirs: Tensor, valid: Tensor | None) -> float:
    if ours.shape != theirs.shape:
        raise SoraError(f"output shapes differ: Sora {tuple(ours.shape)}, transformers {tuple(theirs.shape)}")
    diff = (ours.float() - theirs.float()).abs()
    if valid is not None:
        diff = diff[valid]  # padding positions carry no meaning in either model
    return float(diff.max()) if diff.numel() else 0.0


def _same_greedy_tokens(model: nn.Module, hf_model, inputs: Tensor, valid: Tensor, n: int) -> bool:
    """Greedy continuations of equal-length prompts, compared up to and including the first EOS."""
    length = int(valid.sum(1).min())
    prompts = inputs[:, : max(length, 1)]
    eos = model.config.eos_id
    ours = model.generate(prompts, n)[:, prompts.shape[1] :]
    theirs = hf_model.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=n,
        do_sample=False,
        pad_token_id=eos if eos is not None else 0,
    )[:, prompts.shape[1] :]
    return all(_until_eos(a.tolist(), eos) == _until_eos(b.tolist(), eos) for a, b in zip(ours, theirs))


def _until_eos(ids: list[int], eos: int | None) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos is not None and eos in ids else ids


def _describe(inputs: Tensor, valid: Tensor | None, tokenizer) -> str:
    if valid is None:
        return f"{inputs.shape[0]} random images {tuple(inputs.shape[1:])}"
    kind = "sentences" if tokenizer is not None else "random token rows"
    return f"{inputs.shape[0]} {kind}, {int(valid.sum())} real tokens, {int((~valid).sum())} padding"
