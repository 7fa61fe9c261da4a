"""A config's ``source`` read into tables: one per given split, or one (``all``) to be split later."""

from __future__ import annotations

from sora.data.builtin import Raw
from sora.data.config import DataConfig
from sora.data.formats import (
    ROW_FORMATS,
    infer_format,
    iter_rows,
    read_idx,
    read_image_folder,
    read_npz,
    read_wav_folder,
    rows_to_table,
)
from sora.data.sources import is_dir, list_files
from sora.data.table import RowErrors, Table
from sora.errors import SoraError


def read_source(cfg: DataConfig, task: str, errors: RowErrors) -> Raw:
    sources = cfg.source if isinstance(cfg.source, dict) else {"all": cfg.source}
    return Raw({split: read_url(url, cfg, task, errors) for split, url in sources.items()})


def read_url(url: str, cfg: DataConfig, task: str, errors: RowErrors) -> Table:
    opts = cfg.storage_options
    fmt = cfg.format or infer_format(url, opts)
    if fmt == "image_folder":
        return read_image_folder(url, opts, size=cfg.image_size)
    if fmt == "wav_folder":
        return read_wav_folder(url, cfg.sample_rate, opts)
    if is_dir(url, opts):
        raise SoraError(f"{url}: is a folder; format '{fmt}' reads files (use a glob such as {url.rstrip('/')}/*)")
    files = list_files(url, opts)
    if fmt == "idx":
        return read_idx(files, opts)
    if fmt == "npz":
        return read_npz(files, opts)
    if fmt in ROW_FORMATS:
        whole = task == "lm" and fmt == "text"
        tables = [rows_to_table(iter_rows(f, fmt, errors, opts, whole_text=whole)) for f in files]
        return Table.concat(tables)
    raise SoraError(f"data.format: unknown format '{fmt}'")
