"""Starting a model from pretrained weights: how a recipe fine-tunes an imported checkpoint.

A recipe states its whole architecture in ``model:`` (as every recipe does) and names where the
weights come from in ``init:`` (``hf:all-minilm-l6-v2``, a Hugging Face folder, or a Sora model
folder). Every body parameter must find its pretrained value; the architecture fields that
decide the shapes and the function must agree, and a mismatch names the key. The task head is
new when the pretrained model had a different one (a bare encoder becoming a classifier), and
is kept when it has the same shape. A shorter ``max_len`` keeps the first rows of the position table.
A model without segment embeddings (one text per input) that starts from one with them (BERT) reads
every token as segment 0: that row is folded into its positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

from sora.errors import ConfigError
from sora.interop.checkpoint import read_json
from sora.interop.importer import import_hf
from sora.models import ModelConfig, build_model, load_meta, load_model, load_tokenizer
from sora.models.folder import is_model_dir

# Fields that decide what the body computes: they must equal the pretrained model's.
SAME = (
    "input",
    "vocab_size",
    "d_model",
    "head_dim",
    "activation",
    "norm",
    "norm_eps",
    "norm_position",
    "embed_norm",
    "position",
    "rope_base",
    "bias",
    "pad_id",
    "image",
    "audio",
    "adaptive_span",
    "quantization",
)
BUFFERS = ("head_gate", "neuron_mask")


@dataclass
class Pretrained:
    source: str
    tokenizer: Any  # tokenizers.Tokenizer or None
    meta: dict
    loaded: list[str] = field(default_factory=list)  # parameters that start from pretrained values
    fresh: list[str] = field(default_factory=list)  # parameters left as initialised (a new head)


def read_pretrained(source: str | Path) -> tuple[nn.Module, Any, dict]:
    """(model, tokenizer, meta) from a Sora model folder, a Hugging Face folder or ``hf:NAME``."""
    if _is_sora_folder(source):
        meta = load_meta(source)
        return load_model(source), load_tokenizer(source), meta
    result = import_hf(source)
    return result.model, result.tokenizer, result.meta


def load_pretrained(
    model: nn.Module, source: str | Path, *, key: str = "init", read: tuple[nn.Module, Any, dict] | None = None
) -> Pretrained:
    """Copy pretrained weights into ``model`` (built from the recipe), in place.

    ``read`` is what ``read_pretrained(source)`` returned, when the caller has it already.
    """
    pretrained, tokenizer, meta = read or read_pretrained(source)
    target, pre = model.config, pretrained.config
    problems = _mismatches(target, pre)
    if problems:
        raise ConfigError(
            f"{key}: {source}: the recipe's model does not match the pretrained one: " + "; ".join(problems)
        )
    theirs = _one_segment(pretrained.state_dict()) if not target.segments else pretrained.state_dict()
    same_head = target.arch == pre.arch
    result = Pretrained(str(source), tokenizer, meta)
    new_state: dict[str, Tensor] = {}
    for name, ours in model.state_dict().items():
        value = theirs.get(name)
        if name == "embed.position.weight" and value is not None:
            value = value[: ours.shape[0]]
        usable = value is not None and value.shape == ours.shape and (same_head or not name.startswith("head."))
        if usable:
            new_state[name] = value
            result.loaded.append(name)
        elif not name.endswith(BUFFERS):
            result.fresh.append(name)
    body_missing = [n for n in result.fresh if not n.startswith("head.")]
    if body_missing:
        raise ConfigError(f"{key}: {source}: no pretrained value for {', '.join(body_missing[:6])}")
    model.load_state_dict(new_state, strict=False)
    return result


def _one_segment(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` with segment 0's vector folded into the positions (what one-text inputs always add)."""
    segment = state.get("embed.segment.weight")
    if segment is None or "embed.position.weight" not in state:
        return state
    return {**state, "embed.position.weight": state["embed.position.weight"] + segment[0]}


def with_pretrained(
    recipe,
    out_dir: str | Path,
    *,
    on_model: Callable[[nn.Module], None] | None = None,
    log: Callable[[str], None] = print,
):
    """What a recipe with ``init:`` needs before training: (recipe, on_model).

    The returned recipe tokenizes its data with the pretrained tokenizer (written to
    ``OUT/pretrained/tokenizer.json``); ``on_model`` copies the pretrained weights into the model the
    trainer builds, before the first step, then calls the given ``on_model``. A resumed run's
    checkpoint overwrites them, as it should.
    """
    source = recipe.init
    read = read_pretrained(source)
    _, tokenizer, meta = read
    if tokenizer is None:
        raise ConfigError(f"init: {source}: has no tokenizer to tokenize the recipe's data with")
    data = recipe.data
    if data is not None:
        section = data.model_dump(exclude_unset=True) if hasattr(data, "model_dump") else dict(data)
        given = section.get("tokenizer") or {}
        if given.get("kind", "pretrained") != "pretrained" or given.get("path"):
            raise ConfigError(
                f"data.tokenizer: a model that starts from init: {source} reads its own tokenizer; "
                "remove data.tokenizer"
            )
        path = Path(out_dir) / "pretrained" / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save(str(path))
        section["tokenizer"] = {"kind": "pretrained", "path": str(path)}
        data = type(data).model_validate(section) if hasattr(data, "model_validate") else section
    recipe = recipe.model_copy(update={"data": data})

    def load(model: nn.Module) -> None:
        result = load_pretrained(model, source, read=read)
        log(
            f"init: {len(result.loaded)} tensors from {source}"
            + (f"; new: {', '.join(result.fresh)}" if result.fresh else "")
        )
        if on_model is not None:
            on_model(model)

    return recipe, load


def body_as_encoder(model: nn.Module) -> nn.Module:
    """The same body without its head, as a feature extractor (arch ``encoder``)."""
    config = model.config.model_copy(update={"arch": "encoder", "n_classes": None, "pooler": False})
    encoder = build_model(ModelConfig.model_validate(config.model_dump()))
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    encoder.load_state_dict(body)
    return encoder.eval()


def _mismatches(target: ModelConfig, pre: ModelConfig) -> list[str]:
    problems = [
        f"model.{f} is {getattr(target, f)!r}, pretrained {getattr(pre, f)!r}"
        for f in SAME
        if getattr(target, f) != getattr(pre, f)
    ]
    stack_name = "decoder" if target.arch == "decoder_lm" else "encoder"
    ours, theirs = getattr(target, stack_name), getattr(pre, "decoder" if pre.arch == "decoder_lm" else "encoder")
    if theirs is None:
        problems.append(f"the pretrained model ({pre.arch}) has no {stack_name} stack")
    else:
        for what, a, b in (
            ("n_layers", ours.n_layers, theirs.n_layers),
            ("n_heads", ours.heads(), theirs.heads()),
            ("d_ff", ours.widths(), theirs.widths()),
        ):
            if a != b:
                problems.append(f"model.{stack_name}.{what} is {a}, pretrained {b}")
    if target.max_len > pre.max_len and target.position == "learned":
        problems.append(f"model.max_len is {target.max_len}, longer than the pretrained {pre.max_len} positions")
    return problems


def _is_sora_folder(source: str | Path) -> bool:
    """A Sora model folder's config.json names an ``arch``; a Hugging Face one a ``model_type``."""
    if str(source).startswith("hf:") or not is_model_dir(source):
        return False
    config = read_json(Path(source) / "config.json") or {}
    return "arch" in config and "model_type" not in config
