"""``prepare_data``: from a ``data:`` config to ready splits, a tokenizer and loaders (``Prepared``).

The steps, in order: read the source (a built-in or any URL), check every row (missing values,
unknown labels: fail naming file:line, or skip and count: sora.data.rows), split (given, grouped,
stratified, random, or contiguous for language modelling: sora.data.splits), cap each split
(``limit``), train the tokenizer on the training split only, then encode (the task's builder:
sora.data.builders). ``Prepared.loader`` (sora.data.prepared) turns a split into batches.
"""

from __future__ import annotations

from tokenizers import Tokenizer

from sora.configio import validate
from sora.data import builtin
from sora.data.builders import BUILDERS, Source
from sora.data.config import DataConfig
from sora.data.prepared import Prepared
from sora.data.read import read_source
from sora.data.rows import skipped_note
from sora.data.table import RowErrors
from sora.errors import SoraError


def prepare_data(cfg: DataConfig | dict, tokenizer: Tokenizer | None = None) -> Prepared:
    """Read, check, split, tokenize: everything before batching. Pass ``tokenizer`` to reuse one."""
    if isinstance(cfg, dict):
        cfg = validate(DataConfig, cfg, source="data", prefix=("data",))
    entry = builtin.get(cfg.dataset) if cfg.dataset else None
    task = cfg.task or (entry.task if entry else "classification")
    errors = RowErrors(cfg.on_error)
    raw = builtin.load(cfg.dataset, cfg, task) if entry else read_source(cfg, task, errors)
    name = cfg.dataset or (cfg.source if isinstance(cfg.source, str) else cfg.source["train"])
    if sum(len(t) for t in raw.tables.values()) == 0:
        raise SoraError(f"{name}: the dataset is empty (no rows{skipped_note(errors)})")
    prepared = BUILDERS[task](Source(cfg, raw, {**raw.columns, **cfg.columns}, errors, tokenizer, name))
    prepared.name = name
    errors.report(name)
    if errors.skipped:
        prepared.info["skipped_rows"] = len(errors.skipped)
    if len(prepared.splits["train"]) == 0:
        short = (
            (
                f" (its {len(prepared.splits['train'].stream)} tokens do not fill one block of data.block_size="
                f"{cfg.block_size} plus the next token)"
            )
            if task == "lm"
            else ""
        )
        raise SoraError(f"{name}: the training split is empty{short}{skipped_note(errors)}")
    return prepared
