"""A local Hugging Face model folder -> the same network built from Sora particles.

Only ``config.json``, the weights and the tokenizer files are read; transformers is not needed.
Which Sora assembly a checkpoint becomes depends on its class (``architectures[0]``):

| Hugging Face | Sora |
|---|---|
| ``BertModel``, ``RobertaModel``, ``DistilBertModel``, ``ViTModel`` | ``encoder`` (a feature extractor) |
| ``...ForMaskedLM`` / ``ForPreTraining`` | ``encoder`` (the pretraining head is reported, not carried) |
| ``...ForSequenceClassification``, ``ViTForImageClassification`` | ``encoder_classifier`` |
| ``...ForTokenClassification`` | ``token_classifier`` |
| ``GPT2Model``, ``GPT2LMHeadModel`` | ``decoder_lm`` (tied LM head) |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from sora.configio import format_errors, read_json_file
from sora.errors import SoraError
from sora.interop.bert import BertFamily, RobertaFamily
from sora.interop.checkpoint import Checkpoint, read_config, read_side_json, read_weights
from sora.interop.distilbert import DistilBertFamily
from sora.interop.family import Family
from sora.interop.gpt2 import Gpt2Family
from sora.interop.sources import resolve_source
from sora.interop.tokenizer import carry_tokenizer, tokenizer_settings
from sora.interop.verify import compare_with_transformers, transformers_available
from sora.interop.vit import VitFamily
from sora.models import save_model
from sora.models.build import build_within_memory
from sora.models.folder import load_weights
from sora.paths import existing_file

FAMILIES: dict[str, Family] = {
    f.model_type: f for f in (BertFamily(), RobertaFamily(), DistilBertFamily(), Gpt2Family(), VitFamily())
}
# Buffers that some transformers versions save; they carry no learned values.
BUFFERS = (".position_ids", ".token_type_ids", ".attn.bias", ".attn.masked_bias")


def supported() -> str:
    """Every supported model_type with its classes, for error messages and ``sora hf import --help``."""
    return "; ".join(f"{t} ({', '.join(f.architectures)})" for t, f in FAMILIES.items())


@dataclass
class ImportResult:
    model: nn.Module
    tokenizer: Any  # tokenizers.Tokenizer or None
    meta: dict
    folder: Path  # the Hugging Face folder it came from
    notes: list[str] = field(default_factory=list)


def import_hf(source: str | Path, *, pooling: str | None = None) -> ImportResult:
    """Build the Sora model of a Hugging Face folder (or ``hf:NAME``), in eval mode.

    ``pooling`` (mean or cls) is what a feature extractor's ``pooled`` and a later classifier use;
    by default a sentence-transformers folder's own pooling, else cls.
    """
    folder = resolve_source(source)
    hf = read_config(folder)
    family, cls = _family(hf, folder)
    arch = family.architectures[cls]
    state, weights_file = read_weights(folder)
    ck = Checkpoint(state, family.prefix, source=str(folder / weights_file), config_source=str(folder / "config.json"))
    if pooling not in (None, "mean", "cls"):
        raise SoraError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
    if pooling is not None and (arch != "encoder" or family.model_type == "vit"):  # it would be ignored, or wrong
        raise SoraError(
            f"--pooling {pooling}: a {cls} reads the sequence as it was trained to; --pooling chooses "
            "how a text feature extractor (BertModel, RobertaModel, DistilBertModel) pools"
        )
    sentence, found = _sentence_transformers(folder)
    pooling, pooling_why = _choose_pooling(pooling, sentence, found, family)
    try:
        imported = family.import_checkpoint(hf, ck, arch, pooling)
    except ValidationError as e:  # a config.json value of the wrong type or range, by the key Sora reads it as
        raise SoraError(
            format_errors(e, source=f"{ck.config_source} (as Sora's model config)", prefix=(), lines={})
        ) from None

    notes = list(imported.notes)
    if arch == "encoder" and family.model_type != "gpt2":  # a feature extractor: how it pools is a choice
        notes.append(f"pooling: {pooling} ({pooling_why})")
    left = [k for k in ck.left() if not k.endswith(BUFFERS)]
    if left:
        why = family.dropped_heads.get(cls, "weights with no place in the Sora model")
        notes.append(
            f"{why}: not carried over ({len(left)} tensors: {', '.join(left[:4])}{' ...' if len(left) > 4 else ''})"
        )
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in imported.state.values()} - {"float32"})
    if dtypes:
        notes.append(f"weights stored as {', '.join(dtypes)} were converted to float32")

    model = build_within_memory(imported.config, ck.config_source)
    load_weights(
        model,
        imported.state,
        ck.source,
        optional=("head_gate", "neuron_mask"),  # buffers: all ones
        file_names=ck.file_names(imported.state),
    )
    tokenizer, tokenizer_from = carry_tokenizer(folder, family.model_type)
    meta: dict[str, Any] = {
        "source": {
            "format": "huggingface",
            "spec": str(source),
            "path": str(folder),
            "model_type": family.model_type,
            "architecture": cls,
            "weights": weights_file,
            "config": hf,
        },
        "tokenizer": {"from": tokenizer_from or None, "hf_files": tokenizer_settings(folder)},
        "notes": notes,
    }
    meta.update(imported.meta)
    if imported.labels:
        meta["labels"] = imported.labels
    if sentence:
        meta["sentence_embedding"] = sentence
    preprocessor = read_side_json(folder, "preprocessor_config.json")
    if preprocessor is not None:
        meta["image_preprocessing"] = preprocessor  # mean/std/size a ViT expects its pixels normalised with
    return ImportResult(model.eval(), tokenizer, meta, folder, notes)


def import_to_folder(
    source: str | Path, out_dir: str | Path, *, pooling: str | None = None, verify: bool | None = None
) -> tuple[ImportResult, Path]:
    """Import and write a Sora model folder.

    ``verify``: compare with transformers first (None: when it is installed); nothing is written if
    the outputs differ by more than 1e-4.
    """
    result = import_hf(source, pooling=pooling)
    if Path(out_dir).resolve() == result.folder.resolve():
        raise SoraError(f"--out {out_dir} is the Hugging Face folder being imported; choose another folder")
    if verify or verify is None:
        if verify or transformers_available():
            parity = result.meta["parity"] = compare_with_transformers(result.model, result.folder, result.tokenizer)
            if not parity["ok"]:
                raise SoraError(
                    f"{result.folder}: the imported model does not reproduce transformers' outputs "
                    f"({parity}); nothing written"
                )
    path = save_model(result.model, out_dir, tokenizer=result.tokenizer, meta=result.meta)
    return result, path


def _family(hf: dict, folder: Path) -> tuple[Family, str]:
    model_type = hf.get("model_type")
    if model_type is None and "arch" in hf:
        raise SoraError(
            f"{folder}: this is a Sora model folder already (its config.json has 'arch'); "
            "`sora hf export` turns it into a Hugging Face one"
        )
    classes = hf.get("architectures") or []
    if (
        not isinstance(model_type, (str, type(None)))
        or not isinstance(classes, list)
        or not all(isinstance(c, str) for c in classes)
    ):
        raise SoraError(f"{folder / 'config.json'}: model_type must be a name and architectures a list of class names")
    named = f"model_type {model_type!r}" + (f" ({classes[0]})" if classes else "")
    if model_type not in FAMILIES:
        raise SoraError(f"{folder / 'config.json'}: {named} is not supported; supported: {supported()}")
    family = FAMILIES[model_type]
    cls = classes[0] if classes else next(iter(family.architectures))  # no class named: the base model
    if cls not in family.architectures:
        raise SoraError(
            f"{folder / 'config.json'}: {cls} is not supported; supported {model_type} classes: "
            f"{', '.join(family.architectures)}"
        )
    return family, cls


def _sentence_transformers(folder: Path) -> tuple[dict | None, str]:
    """How a sentence-transformers folder pools (its Pooling module's config) and whether it normalises,
    and where that was read; (None, why not) when the folder says nothing Sora can use."""
    modules = _modules(folder)
    if modules is None:
        pooling_dir, normalize = "1_Pooling", False
    else:
        pooling_dir = next((m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        if not isinstance(pooling_dir, str):
            return None, "its modules.json lists no Pooling module"
    name = f"{pooling_dir}/config.json"
    pooling_config = read_side_json(folder, name)
    if pooling_config is None:
        if modules is not None:
            return None, f"its modules.json names {name}, which is missing"
        marker = next((m for m in ST_MARKERS if (folder / m).is_file()), None)
        return None, (
            f"a sentence-transformers folder ({marker}) without modules.json or {name}, so how it pools is unknown"
            if marker
            else "no sentence-transformers pooling settings in the folder"
        )
    if pooling_config.get("pooling_mode_mean_tokens"):
        pooling = "mean"
    elif pooling_config.get("pooling_mode_cls_token"):
        pooling = "cls"
    else:
        modes = [
            k.removeprefix("pooling_mode_") for k, v in pooling_config.items() if k.startswith("pooling_mode_") and v
        ]
        return None, f"{name} asks for {' + '.join(modes) or 'no'} pooling, which Sora does not have"
    where = name if modules is not None else f"{name}; no modules.json, so embeddings are taken as not normalised"
    return {"pooling": pooling, "normalize": normalize}, where


ST_MARKERS = ("config_sentence_transformers.json", "sentence_bert_config.json")


def _modules(folder: Path) -> list[dict] | None:
    """sentence-transformers' modules.json (its pipeline: Transformer, Pooling, Normalize), or None."""
    path = existing_file(folder, "modules.json")
    if path is None:
        return None
    modules = read_json_file(path, expect=list)
    return [m for m in modules if isinstance(m, dict)]


def _choose_pooling(given: str | None, sentence: dict | None, found: str, family: Family) -> tuple[str, str]:
    """The pooling a feature extractor gets, and why: the option, the folder's setting, or the default."""
    if family.model_type == "vit":
        return "cls", "ViT pools its CLS token"
    if given:
        return given, "--pooling"
    if sentence:
        return sentence["pooling"], f"from {found}"
    return "cls", f"the default: {found}; --pooling mean chooses mean pooling"
