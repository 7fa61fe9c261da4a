"""``train.adapters``: fine-tune a pretrained model through adapters (LoRA or bottleneck), not all its weights.

Before the first step the pretrained body is written once to the cache as the adapters' **base**
(``$SORA_HOME/bases/<sha256>``: the body's tensors, without the task head, content-addressed so runs from
the same weights share it), then the adapters are added and everything but them and the head is frozen.
After training, ``OUT/adapter`` holds only what trained (sora.models.adapters: it names the base and its
SHA-256, and loads as base + adapters wherever a model folder is read), and ``OUT/model`` is the whole
model with LoRA merged into its weights (bottleneck adapters stay modules), so every later stage and
command reads it as any model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from safetensors.torch import save_file
from torch import nn

from sora.atomic import staged_dir
from sora.data.cache import sora_home
from sora.errors import ConfigError
from sora.models.adapters import (
    ADAPTER_JSON,
    ADAPTER_WEIGHTS,
    adapter_tensors,
    apply_adapters,
    train_only_adapters,
)
from sora.models.config import AdapterConfig
from sora.models.folder import CONFIG, META, TOKENIZER
from sora.paths import file_sha256

BASE_WEIGHTS = "model.safetensors"


def start_adapters(
    model: nn.Module, config: AdapterConfig, init: str | None, log: Callable[[str], None], *, main: bool = True
) -> dict:
    """Save the base (the main process only: under torchrun the others hold their weights from it only once
    the model is wrapped), add the adapters, freeze the rest; what meta.json and metrics.json record."""
    if not init:
        raise ConfigError("train.adapters: adapters fine-tune pretrained weights; give the recipe an init: source")
    base = save_base(model, init) if main else {"path": None, "sha256": None, "init": init}
    apply_adapters(model, config)
    counts = train_only_adapters(model)
    log(
        f"adapters: {config.kind} on {', '.join(config.resolved_targets())}; training {counts['trainable']:,} of "
        f"{counts['total']:,} parameters ({100 * counts['fraction']:.2f}%, the head included); base {base['path']}"
    )
    return {"base": base, "adapter": config.model_dump(mode="json"), "parameters": counts}


def save_base(model: nn.Module, init: str) -> dict[str, Any]:
    """The body's tensors (no head) in the cache, once per distinct content: {path, sha256, init}."""
    root = sora_home() / "bases"
    root.mkdir(parents=True, exist_ok=True)
    body = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("head.")}
    with staged_dir(root / ".incoming") as tmp:
        save_file(body, str(tmp / BASE_WEIGHTS), metadata={"init": init})
        (tmp / CONFIG).write_text(json.dumps(model.config.model_dump(mode="json"), indent=2) + "\n")
    sha = file_sha256(root / ".incoming" / BASE_WEIGHTS)
    folder = root / sha[:16]
    if (folder / BASE_WEIGHTS).is_file() and file_sha256(folder / BASE_WEIGHTS) == sha:
        shutil.rmtree(root / ".incoming")
    else:
        if folder.exists():
            shutil.rmtree(folder)
        (root / ".incoming").rename(folder)
    return {"path": str(folder), "sha256": sha, "init": init}


def save_adapter_folder(model: nn.Module, out_dir: Path, record: dict, *, tokenizer=None, meta: dict | None) -> Path:
    """``OUT/adapter``: the adapter's and head's tensors, adapter.json (base, checksum), config, tokenizer, meta."""
    with staged_dir(out_dir) as tmp:
        save_file(adapter_tensors(model), str(tmp / ADAPTER_WEIGHTS))
        (tmp / ADAPTER_JSON).write_text(json.dumps(record, indent=2) + "\n")
        (tmp / CONFIG).write_text(json.dumps(model.config.model_dump(mode="json"), indent=2) + "\n")
        if tokenizer is not None:
            tokenizer.save(str(tmp / TOKENIZER))
        if meta is not None:
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return Path(out_dir)
