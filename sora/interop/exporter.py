"""A Sora model folder -> a Hugging Face folder that ``transformers.AutoModel.from_pretrained`` loads.

The family is the one the model was imported from (``meta.json``), or else the one whose
structure it has: a post-norm text encoder with an embedding norm is BERT, a pre-norm decoder
LM is GPT-2, a pre-norm image encoder with a CLS token is ViT. Whatever transformers cannot
represent (heads pruned unevenly, a layer with no heads, adaptive span, rotary positions,
RMSNorm, SwiGLU, mean pooling in a BERT classifier, an imported BERT whose dropped second token
type mattered...) stops the export with every reason, instead of writing a folder that loads
with different outputs. Head gates and neuron masks are folded into the weights, which is exact.
The folder is written beside its destination, checked against transformers when it is installed
(on single-segment inputs and, where there are token types, on sentence pairs), and only then
renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from sora.atomic import staged_dir
from sora.errors import SoraError
from sora.interop.checkpoint import read_json
from sora.interop.family import Family, check_consumed, fold_gates
from sora.interop.importer import FAMILIES
from sora.interop.pretrained import body_as_encoder
from sora.interop.verify import TOLERANCE, compare_with_transformers, transformers_available
from sora.models import load_config, load_meta, load_model, load_tokenizer
from sora.models.adapters import merge_lora
from sora.models.folder import TOKENIZER

# Keys of an imported model's original config.json that describe the old folder, not the new one.
STALE = (
    "architectures",
    "id2label",
    "label2id",
    "num_labels",
    "_name_or_path",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "_attn_implementation_autoset",
)
SEGMENTED = ("bert", "roberta")  # families with token-type embeddings, which Sora folds into the positions
# The weights' header says who wrote them: how `sora hf export` tells an earlier export of its own, which it
# may replace, from a Hugging Face folder downloaded or written by someone else, which it must not.
WRITTEN_BY = {"written_by": "sora hf export"}
HF_WEIGHTS = "model.safetensors"
# Every name an export may hold (the tokenizer's settings files are those sora.interop.tokenizer keeps).
EXPORT_FILES = frozenset(
    {
        "config.json",
        HF_WEIGHTS,
        TOKENIZER,
        "tokenizer_config.json",
        "special_tokens_map.json",
        "preprocessor_config.json",
        "modules.json",
        "sentence_bert_config.json",
    }
)
POOLING_DIR = "1_Pooling"


def is_sora_export(folder: Path) -> bool:
    """Whether ``folder/model.safetensors`` was written by ``sora hf export``."""
    try:
        with safe_open(str(Path(folder) / HF_WEIGHTS), "pt") as f:
            metadata = f.metadata() or {}
    except (OSError, SafetensorError):  # missing, a folder, garbage: not an export of ours
        return False
    return all(metadata.get(k) == v for k, v in WRITTEN_BY.items())


class _Tracked(dict):
    """A state dict that remembers which entries were read, so nothing is silently left behind."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def pick_family(config, meta: dict) -> tuple[Family, list[str]]:
    """The family to write, and why it cannot represent the model (empty when it can)."""
    imported_as = (meta.get("source") or {}).get("model_type")
    if imported_as in FAMILIES:
        family = FAMILIES[imported_as]
        return family, family.export_problems(config)
    if config.arch == "seq2seq" or config.input == "audio":
        what = "encoder-decoder" if config.arch == "seq2seq" else "audio"
        return FAMILIES["bert"], [
            f"no supported transformers family (BERT, RoBERTa, DistilBERT, GPT-2, ViT) is an {what} model"
        ]
    candidates = ["gpt2"] if config.arch == "decoder_lm" else ["vit"] if config.input == "image" else ["bert"]
    family = FAMILIES[candidates[0]]
    return family, family.export_problems(config)


def segment_problems(meta: dict, segments: int = 0) -> list[str]:
    """Why a model imported from BERT with a second token type cannot be exported faithfully (empty: it can).
    A model with segment embeddings (``segments``) carries every token type; older imports dropped row 1."""
    record, source = meta.get("token_types"), meta.get("source") or {}
    if segments:
        return []
    if record is None:  # imported before meta.json recorded it
        rows = (source.get("config") or {}).get("type_vocab_size", 1) if source.get("model_type") in SEGMENTED else 1
        if isinstance(rows, int) and rows > 1:
            return [
                "it was imported before Sora recorded whether the token types it drops mattered; re-import it "
                "to check, or pass --one-segment"
            ]
        return []
    diff = record.get("dropped_max_diff", 0)
    if isinstance(diff, (int, float)) and diff > TOLERANCE:
        return [
            f"the imported model's token type 1 (a sentence pair's second segment) differs from type 0 by up to "
            f"{diff:.3g} and was not carried over (it was imported before Sora kept segment embeddings), so "
            "transformers would give second-segment inputs other outputs than the original; --one-segment "
            "exports it anyway, reading every segment as the first"
        ]
    return []


def export_hf(
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    body_only: bool = False,
    verify: bool | None = None,
    one_segment: bool = False,
) -> dict:
    """Write ``out_dir``; return a report (class written, notes, parity figures when verified).

    ``one_segment``: export a BERT imported with a second token type that mattered anyway; every segment
    then reads as the first (models imported before Sora kept segment embeddings).
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.resolve() == model_dir.resolve():
        raise SoraError(f"--out {out_dir} is the model folder being exported; choose another folder")
    raw = read_json(model_dir / "config.json") or {}
    if "model_type" in raw and "arch" not in raw:
        raise SoraError(f"{model_dir}: this is a Hugging Face folder already; `sora hf import` reads it")
    config, meta = load_config(model_dir), load_meta(model_dir)
    notes: list[str] = []
    if body_only:
        if config.arch not in ("encoder_classifier", "token_classifier", "encoder"):
            raise SoraError(f"--body-only exports an encoder's body; {model_dir} is a {config.arch}")
        if config.arch != "encoder":
            notes.append(f"body only: the {config.arch} head (head.*) is not exported")
        config = config.model_copy(update={"arch": "encoder", "n_classes": None, "pooler": False})
    family, problems = pick_family(config, meta)
    if not one_segment:
        problems += segment_problems(meta, config.segments)
    if config.arch in ("encoder_classifier", "token_classifier") and config.pooling == "mean" and not body_only:
        problems.append(
            "add --body-only to export the encoder alone (AutoModel loads it; pool its hidden states "
            "by mean, as sentence-transformers does)"
        )
    if config.adapter is not None and config.adapter.kind == "bottleneck":
        problems.append("bottleneck adapters are not linear and have no transformers counterpart (LoRA merges)")
    if problems:
        raise SoraError(f"cannot export {model_dir} as transformers {family.name}: " + "; ".join(problems))

    model, tokenizer = merge_lora(load_model(model_dir)), load_tokenizer(model_dir)  # an adapter folder: merged
    state = {k: v for k, v in fold_gates(model.state_dict()).items() if not (body_only and k.startswith("head."))}
    if config.arch == "decoder_lm" and config.tie_embeddings:
        state.pop("head.proj.weight")  # the token embedding itself
    base = {}
    if (meta.get("source") or {}).get("model_type") == family.model_type:
        base = {k: v for k, v in meta["source"].get("config", {}).items() if k not in STALE}
    tracked = _Tracked(state)
    hf_config, hf_state = family.export_checkpoint(config, tracked, meta.get("labels"), base)
    check_consumed(state, tracked.read, str(model_dir))

    with staged_dir(out_dir) as tmp:
        _write(tmp, hf_config, hf_state, tokenizer, config, meta)
        report = {"architecture": hf_config["architectures"][0], "model_type": family.model_type, "notes": notes}
        if config.arch == "encoder":
            report["notes"].append("pooler_output is not part of a Sora encoder: use last_hidden_state")
        if verify or verify is None:
            if verify or transformers_available():
                check_model = model
                if body_only and model.config.arch != "encoder":
                    check_model = body_as_encoder(model)
                parity = compare_with_transformers(check_model, tmp, tokenizer, segments=True)
                report["parity"] = parity
                if not parity["ok"]:
                    raise SoraError(
                        f"exported {family.name} does not reproduce {model_dir} (differences {parity}); nothing written"
                    )
    return report


def _write(folder: Path, hf_config: dict, hf_state: dict[str, Tensor], tokenizer, config, meta: dict) -> None:
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    save_file(
        {k: v.detach().contiguous().clone() for k, v in hf_state.items()},
        str(folder / HF_WEIGHTS),
        metadata={"format": "pt", **WRITTEN_BY},
    )
    if tokenizer is not None:
        tokenizer.save(str(folder / TOKENIZER))
        files = dict((meta.get("tokenizer") or {}).get("hf_files") or {})
        settings = dict(files.get("tokenizer_config.json") or {"tokenizer_class": "PreTrainedTokenizerFast"})
        settings["model_max_length"] = config.max_len
        files["tokenizer_config.json"] = settings
        for name, data in files.items():
            (folder / name).write_text(json.dumps(data, indent=2) + "\n")
    if "image_preprocessing" in meta:
        (folder / "preprocessor_config.json").write_text(json.dumps(meta["image_preprocessing"], indent=2) + "\n")
    sentence = meta.get("sentence_embedding")
    if sentence and config.arch == "encoder":
        _write_sentence_transformers(folder, config, sentence)


def _write_sentence_transformers(folder: Path, config, sentence: dict) -> None:
    """The files sentence-transformers reads, so it pools the exported encoder the same way."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if sentence.get("normalize"):
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (folder / POOLING_DIR).mkdir()
    pooling = {
        "word_embedding_dimension": config.d_model,
        "pooling_mode_cls_token": sentence["pooling"] == "cls",
        "pooling_mode_mean_tokens": sentence["pooling"] == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (folder / POOLING_DIR / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": min(config.max_len, 256), "do_lower_case": False}, indent=2) + "\n"
    )
