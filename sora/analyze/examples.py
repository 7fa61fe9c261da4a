"""The report's worked examples: a few inputs run through the model with their attention patterns kept.

Each example becomes a record the report draws in the form its input calls for:

- ``text``: attention grids over tokens (every stack and kind of attention);
- ``image``: the image itself, what the CLS token attends to in every head, and attention rollout, as
  heat maps over the pixels (sora.analyze.overlays);
- ``audio``: the log-mel spectrogram, and each head's attention along time below it (overlays);
- ``translation``: the cross-attention alignment of source and target words, for the reference
  target and for the model's own translation (sora.analyze.alignment).

Examples are the texts of ``analyze.examples`` (text models) or else the first ``n_examples`` of the first
analysis batch, chosen with different labels where the batch has them, so a recipe needs none by hand.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from sora.analyze import alignment, overlays
from sora.analyze.naming import group_of, layer_label
from sora.analyze.tracing import run_with_cache, stack_prefix, token_ids
from sora.models.names import attention_modules
from sora.tasks import CTC, greedy_ctc
from sora.tasks.device import to_device

EXAMPLE_TOKENS = 48  # longest example drawn in an attention grid


@torch.no_grad()
def example_patterns(model, data, task, config, tokenizer, labels, stats, preprocessing=None) -> list[dict]:
    """One record per example: its caption, kind, attention grids by group, and what its kind draws."""
    examples = _examples_from_texts(model, task, config.examples, tokenizer) if config.examples else []
    if not examples:
        examples = _examples_from_data(data, task, config.n_examples)
    out = []
    for batch, caption in examples:
        logits, cache = run_with_cache(model, batch, task, "*.hook_pattern")
        record = {"caption": caption, "kind": example_kind(model, task), "truth": None, "prediction": None}
        record["groups"] = _groups(model, batch, task, cache, tokenizer, stats)
        record.update(_outcome(model, batch, logits, task, tokenizer, labels))
        if record["kind"] == "image":
            record.update(_image_part(model, batch, record["groups"]["self-attention"], preprocessing))
        elif record["kind"] == "audio":
            record.update(_audio_part(model, batch, record["groups"]["self-attention"]))
        elif record["kind"] == "translation":
            record.update(_translation_part(model, batch, cache, tokenizer))
        caption_end = f"true: {record['truth']}" if record["truth"] is not None else ""
        if record["prediction"] is not None:
            caption_end += ("; " if caption_end else "") + f"predicted: {record['prediction']}"
        record["caption"] += f" ({caption_end})" if caption_end else ""
        out.append(record)
    return out


def example_kind(model: nn.Module, task: str) -> str:
    if model.config.input in ("image", "audio") and model.embed.patches is not None:
        return model.config.input
    return "translation" if task == "seq2seq" else "text"


def _groups(model, batch, task, cache, tokenizer, stats) -> dict[str, dict]:
    """Attention patterns per group (self, cross ...): per layer (H, T, S), with position labels and types."""
    ids = token_ids(batch, task)
    groups: dict[str, dict] = {}
    for p, attn in attention_modules(model):
        if attn.n_heads == 0:
            continue
        group = groups.setdefault(group_of(p, attn.cross), {"layers": [], "patterns": [], "types": {}})
        i = len(group["layers"])
        group["layers"].append(layer_label(p))
        group["patterns"].append(cache[f"{p}.hook_pattern"][0].float().cpu().numpy())  # (H, T, S)
        for h in range(attn.n_heads):
            kind = stats.get(f"{p}.head.{h}", {}).get("type")
            if kind:
                group["types"][(i, h)] = kind
        prefix = stack_prefix(model, p)
        group["q_labels"] = _position_labels(model, ids.get(prefix), tokenizer, group["patterns"][-1].shape[1])
        key_prefix = "encoder." if attn.cross else prefix
        group["k_labels"] = _position_labels(model, ids.get(key_prefix), tokenizer, group["patterns"][-1].shape[2])
    return groups


def _examples_from_texts(model, task, texts, tokenizer) -> list[tuple[dict, str]]:
    if model.config.input != "text" or tokenizer is None or task in ("ctc",):
        return []
    out = []
    device = next(model.parameters()).device
    for text in texts:
        ids = torch.tensor([tokenizer.encode(text).ids[: model.config.max_len]], device=device)
        if ids.shape[1] == 0:
            continue
        if task == "seq2seq":
            tgt = model.generate(ids, max_new_tokens=min(EXAMPLE_TOKENS, model.config.max_len - 1))[0]
            batch = _pair(ids[0], torch.tensor([model.config.bos_id, *tgt], device=device))
        else:
            batch = {"inputs": ids, "valid": torch.ones_like(ids, dtype=torch.bool)}
        out.append((to_device(batch, device), text))
    return out


def _examples_from_data(data, task, n) -> list[tuple[dict, str]]:
    first = data[0]
    out = []
    for i in _chosen_rows(first, task, n):
        if task == "seq2seq":
            sv = first.get("src_valid", torch.ones_like(first["src"], dtype=torch.bool))[i]
            tv = first.get("tgt_valid", first["tgt_out"] != -100)[i]
            batch = _pair(first["src"][i][sv][:EXAMPLE_TOKENS], first["tgt_in"][i][tv][:EXAMPLE_TOKENS])
            batch["tgt_out"] = first["tgt_out"][i][tv][:EXAMPLE_TOKENS][None]
        else:
            batch = _one_input(first, i)
            if task == "classification":
                batch["labels"] = first["labels"][i : i + 1]
            if task == "ctc":
                batch["targets"] = first["targets"][i : i + 1]
                batch["target_lengths"] = first["target_lengths"][i : i + 1]
        out.append((batch, f"example {i + 1} of the first analysis batch"))
    return out


def _chosen_rows(batch: dict[str, Tensor], task: str, n: int) -> list[int]:
    """The first ``n`` rows, preferring rows whose label is not yet among the chosen (one example per class)."""
    B = next(v for v in batch.values() if isinstance(v, Tensor)).shape[0]
    if task != "classification":
        return list(range(min(n, B)))
    labels = batch["labels"].tolist()
    first_of_label = [i for i in range(B) if labels.index(labels[i]) == i]
    rest = [i for i in range(B) if i not in first_of_label]
    return sorted((first_of_label + rest)[: min(n, B)])


def _one_input(batch: dict[str, Tensor], i: int) -> dict[str, Tensor]:
    """Row ``i``'s input alone, without its padding."""
    x, valid = batch["inputs"][i], batch.get("valid")
    if x.dim() == 1:  # token ids
        if valid is not None:
            x = x[valid[i]]
        x = x[:EXAMPLE_TOKENS]
        return {"inputs": x[None], "valid": torch.ones_like(x[None], dtype=torch.bool)}
    if x.dim() == 2 and valid is not None:  # log-mel (n_mels, F): real frames only
        x = x[:, valid[i]]
        return {"inputs": x[None], "valid": torch.ones(1, x.shape[1], dtype=torch.bool, device=x.device)}
    return {"inputs": x[None]}


def _pair(src: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
    """A one-pair seq2seq batch from 1-D source ids and target ids (starting with bos)."""
    return {
        "src": src[None],
        "src_valid": torch.ones_like(src[None], dtype=torch.bool),
        "tgt_in": tgt_in[None],
        "tgt_valid": torch.ones_like(tgt_in[None], dtype=torch.bool),
    }


# What the model said, against what was true


def _outcome(model, batch, logits: Tensor, task: str, tokenizer, labels) -> dict:
    if task == "classification":
        probs = logits[0].float().softmax(-1)
        k = int(probs.argmax())
        truth = int(batch["labels"][0]) if "labels" in batch else None
        prediction = f"{_label(labels, k)}, p={float(probs[k]):.2f}"
        return {"truth": None if truth is None else _label(labels, truth), "prediction": prediction}
    if task == "ctc":
        ctc = CTC(labels)
        valid = model.output_valid(batch["inputs"], batch.get("valid"))
        lengths = valid.sum(1) if valid is not None else torch.tensor([logits.shape[1]])
        said = ctc.text(greedy_ctc(logits, lengths)[0])
        truth = None
        if "targets" in batch:
            truth = ctc.text(batch["targets"][0, : int(batch["target_lengths"][0])].tolist())
        return {"truth": _quoted(truth), "prediction": _quoted(said)}
    return {}  # seq2seq: the translation part says it


def _label(labels: list[str] | None, k: int) -> str:
    return labels[k] if labels and k < len(labels) else str(k)


def _quoted(text: str | None) -> str | None:
    return None if text is None else f"“{text}”"


def _generated(model, batch) -> list[int]:
    """The greedy translation, at most twice the source's length and a few tokens (an untrained model never stops)."""
    limit = min(EXAMPLE_TOKENS, model.config.max_len - 1, 2 * batch["src"].shape[1] + 4)
    return model.generate(batch["src"], max_new_tokens=limit, src_valid=batch.get("src_valid"))[0]


# Per kind: what its figure draws


def _image_part(model, batch, group, preprocessing) -> dict:
    patches = model.embed.patches
    has_cls = patches.cls is not None
    grid = model.config.image.size // model.config.image.patch
    return {
        "image": overlays.display_image(batch["inputs"][0].float().cpu().numpy(), preprocessing),
        "patch": model.config.image.patch,
        "head_maps": [overlays.head_maps(p, has_cls, grid) for p in group["patterns"]],  # L x (H, g, g)
        "rollout": overlays.attention_rollout(group["patterns"], has_cls, grid),  # L x (g, g)
    }


def _audio_part(model, batch, group) -> dict:
    patches = model.embed.patches
    has_cls = patches.cls is not None
    return {
        "spectrogram": batch["inputs"][0].float().cpu().numpy(),  # (n_mels, F)
        "patch_frames": patches.patch_frames,
        "frame_attention": [overlays.frame_attention(p, has_cls) for p in group["patterns"]],  # L x (H, N)
    }


def _translation_part(model, batch, cache, tokenizer) -> dict:
    """Cross-attention alignments: of the reference target (a held-out pair), then of the model's own translation
    (greedy), each row labelled with the word that position produces."""
    cross = [p for p, a in attention_modules(model) if a.cross and a.n_heads > 0]
    source = alignment.readable_tokens(tokenizer, batch["src"][0].tolist())
    decode = tokenizer.decode if tokenizer is not None else (lambda ids: " ".join(map(str, ids)))
    out: dict = {"alignments": []}
    if "tgt_out" in batch:
        out["truth"] = _quoted(decode(batch["tgt_out"][0].tolist()))
        if cross:
            rows = batch["tgt_out"][0].tolist()
            out["alignments"].append(_alignment(cross, cache, source, rows, tokenizer, "reference translation"))
    if model.config.bos_id is None or model.config.eos_id is None:
        return out
    generated = _generated(model, batch)
    out["prediction"] = _quoted(decode(generated))
    if cross:
        own = _pair(batch["src"][0], torch.tensor([model.config.bos_id, *generated], device=batch["src"].device))
        own_logits, own_cache = run_with_cache(model, own, "seq2seq", [f"{p}.hook_pattern" for p in cross])
        rows = own_logits[0].argmax(-1).tolist()  # what each position produced: the translation, then its end
        out["alignments"].append(_alignment(cross, own_cache, source, rows, tokenizer, "model translation"))
    return out


def _alignment(cross, cache, source, rows, tokenizer, title) -> dict:
    layers = [cache[f"{p}.hook_pattern"][0].float().cpu().numpy() for p in cross]  # L x (H, T, S)
    return {
        "title": title,
        "layers": [layer_label(p) for p in cross],
        "source": source,
        "target": alignment.readable_tokens(tokenizer, rows),
        **alignment.alignment_matrices(layers),
    }


def _position_labels(model, ids: Tensor | None, tokenizer, n: int) -> list[str]:
    if ids is not None and ids.dim() == 2:
        row = ids[0, :n].tolist()
        if tokenizer is not None:
            return [_short(tokenizer.id_to_token(i) or str(i)) for i in row]
        return [str(i) for i in row]
    patches = getattr(getattr(model, "embed", None), "patches", None)
    has_cls = patches is not None and patches.cls is not None
    return [("CLS" if has_cls and j == 0 else f"p{j - has_cls}") for j in range(n)]


def _short(token: str, width: int = 10) -> str:
    token = token.replace("Ġ", "▁").replace("Ċ", "\\n")
    return token if len(token) <= width else token[: width - 1] + "…"


def example_json(record: dict, digits: int = 4) -> dict:
    """What analysis.json keeps of an example: its outcome and the numbers its figure draws (not the raw grids)."""
    out = {k: record[k] for k in ("kind", "caption", "truth", "prediction")}
    if record["kind"] == "image":
        out["cls_attention"] = [_rounded(m, digits) for m in record["head_maps"]]  # L x (H, g, g)
        out["rollout"] = [_rounded(m, digits) for m in record["rollout"]]  # L x (g, g)
    elif record["kind"] == "audio":
        out["patch_frames"] = record["patch_frames"]
        out["frame_attention"] = [_rounded(m, digits) for m in record["frame_attention"]]  # L x (H, N)
    elif record["kind"] == "translation":
        out["alignments"] = [
            {
                "title": a["title"],
                "layers": a["layers"],
                "source": a["source"],
                "target": a["target"],
                "mean": [_rounded(m, digits) for m in a["mean"]],  # L x (T, S): rows sum to 1
            }
            for a in record["alignments"]
        ]
    return out


def _rounded(x, digits: int) -> list:
    return np.round(np.asarray(x, dtype=np.float64), digits).tolist()
