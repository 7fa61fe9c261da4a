"""``--out`` is the user's: the one rule every command that writes a folder follows.

A command writes ``--out`` when it does not exist or is an empty folder, and replaces it when it
is recognisably Sora's own output of the same kind (saying so). Anything else -- a file, a link, a
folder holding files Sora did not write, Sora's output of another kind (a training run given to
``prune``) -- is refused with one line, unless ``--force``. A training run is never replaced
silently: ``--resume`` continues it and ``--force`` starts over. Nothing here follows a link out of
``--out``, and a command never replaces a folder it reads from.

"Recognisably Sora's own" is decided from what is on disk: every entry is one that kind of output
writes, with the file that proves the writer (a model's ``config.json`` in Sora's format, an
export's weights whose header names ``sora hf export``, an ONNX export's meta.json ``"export"`` object, an
analysis's ``analysis.json``...).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from sora.analyze.report import HTML_NAME, JSON_NAME, MERMAID_NAME
from sora.atomic import clean_stale, is_staging_name, remove_path
from sora.compress.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from sora.compress.stage import FOLDERS, PLOT, REPORT_JSON, REPORT_MD
from sora.deploy.export import EXPORT_FOLDER_FILES, is_export_dir
from sora.errors import SoraError
from sora.interop.checkpoint import read_json
from sora.interop.exporter import EXPORT_FILES, HF_WEIGHTS, POOLING_DIR, is_sora_export
from sora.models.folder import CONFIG, META, TOKENIZER, WEIGHTS
from sora.run_report import DATA_YAML as RUN_DATA
from sora.run_report import REPORT_HTML as RUN_REPORT
from sora.stages import STAGES_FILE
from sora.train.checkpoint import OPTIMIZER, RNG, TRAINER
from sora.train.job import TOKENIZER_HANDOFF
from sora.train.run_folder import RUN_FILE


def _sora_config(folder: Path) -> bool:
    """A model's config.json in Sora's format (a Hugging Face one has ``model_type``, not ``arch``)."""
    config = read_json(folder / CONFIG)
    return config is not None and "arch" in config


@dataclass(frozen=True)
class Kind:
    """What one kind of Sora output holds: enough to tell it from anything else on disk."""

    noun: str  # how a message names it
    files: frozenset[str] = frozenset()  # the file names it may hold
    dirs: Mapping[str, "Kind | None"] = field(default_factory=dict)  # its folders, and what each holds (None: any)
    pattern: str | None = None  # further file names it may hold (figures)
    required: tuple[str, ...] = ()  # files it always holds
    signed: Callable[[Path], bool] = lambda folder: True  # the proof Sora wrote it
    leftovers: bool = False  # may hold hidden files of unfinished writes (a run written in place)


MODEL = Kind(
    "a model folder",
    frozenset({CONFIG, WEIGHTS, TOKENIZER, META, ADAPTER_WEIGHTS, ADAPTER_CONFIG}),
    required=(CONFIG, WEIGHTS),
    signed=_sora_config,
)
CHECKPOINT = Kind(
    "a training checkpoint",
    MODEL.files | {f"{OPTIMIZER}.safetensors", f"{OPTIMIZER}.json", f"{RNG}.safetensors", f"{RNG}.json", TRAINER},
    required=(CONFIG, WEIGHTS, TRAINER),
    signed=_sora_config,
)
HF_EXPORT = Kind(
    "a Hugging Face export",
    EXPORT_FILES,
    {POOLING_DIR: Kind("pooling settings", frozenset({CONFIG}))},
    required=(HF_WEIGHTS,),
    signed=is_sora_export,
)
ANALYSIS = Kind(
    "an analysis", frozenset({JSON_NAME, HTML_NAME, MERMAID_NAME}), pattern=r"[a-z0-9_]+\.png", required=(JSON_NAME,)
)
COMPRESSION = Kind(
    "a compression report",
    frozenset({REPORT_JSON, REPORT_MD, PLOT}),
    {name: MODEL for name in FOLDERS.values()},
    required=(REPORT_JSON,),
)
EXPORT = Kind("an ONNX export", EXPORT_FOLDER_FILES, required=(CONFIG, WEIGHTS, META), signed=is_export_dir)
# What `sora train` and `sora run` write into OUT (sora.train.job, trainer, logbook, pipeline, interop.pretrained).
RUN = Kind(
    "a training run",
    frozenset({"metrics.json", RUN_FILE, TOKENIZER_HANDOFF, RUN_REPORT, RUN_DATA, STAGES_FILE}),
    {
        "model": MODEL,
        "best": MODEL,
        "analysis": ANALYSIS,
        "compressed": COMPRESSION,
        "export": EXPORT,
        "checkpoints": None,
        "logs": None,
        "pretrained": None,
    },
    leftovers=True,
)
KINDS = {"model": MODEL, "hf": HF_EXPORT, "analysis": ANALYSIS, "compress": COMPRESSION, "run": RUN, "export": EXPORT}
KNOWN = (MODEL, CHECKPOINT, HF_EXPORT, ANALYSIS, COMPRESSION, EXPORT, RUN)  # the order `describe` tries them in


def claim_out(
    out: str | Path,
    kind: str,
    *,
    force: bool = False,
    resume: bool = False,
    reads: tuple[str | Path, ...] = (),
    say: Callable[[str], None] = print,
) -> Path:
    """Check that this command may write ``out`` (raise SoraError naming why not) and return it.

    ``kind`` is one of KINDS. ``reads``: paths the command reads, which ``out`` may not be or hold.
    A run folder is cleared here under ``--force``; other kinds are replaced when written.
    """
    path = Path(os.path.abspath(out))
    _check_place(out, path, reads, atomic=kind != "run")
    clean_stale(path.parent, path.name)  # what a killed write of this same target left
    if kind == "run":
        _claim_run(out, path, force=force, resume=resume, say=say)
    elif os.path.lexists(path) and not _is_empty_folder(path):
        _claim_replace(out, path, KINDS[kind], force=force, say=say)
    return Path(out)


def _check_place(out, path: Path, reads, *, atomic: bool) -> None:
    """Refuse a place no command may write: under a file, the root, a folder the command reads or runs in."""
    if path == path.parent:
        raise SoraError(f"--out {out}: is the root folder; choose a folder for the output")
    above = path.parent
    while not os.path.lexists(above):
        above = above.parent
    if not above.is_dir():
        raise SoraError(f"--out {out}: {above} is a file, not a folder; choose another path")
    for read in reads:
        if _holds(path, Path(read)):
            raise SoraError(f"--out {out}: holds {read}, which this command reads; choose another folder")
        if _holds(Path(read), path):
            raise SoraError(f"--out {out}: is inside {read}, which this command reads; choose another folder")
    if atomic and os.path.lexists(path) and _holds(path, Path.cwd()):  # replacing it would pull the floor away
        raise SoraError(f"--out {out}: holds the current folder; choose another folder")


def _holds(folder: Path, path: Path) -> bool:
    folder, path = folder.resolve(), path.resolve()
    return folder == path or folder in path.parents


def _claim_replace(out, path: Path, kind: Kind, *, force: bool, say) -> None:
    if path.is_dir() and not path.is_symlink() and _offence(path, kind) is None:
        say(f"--out {out}: replacing {kind.noun} Sora wrote there earlier")
        return
    if force:
        say(f"--out {out}: replacing what is there (--force)")
        return
    raise SoraError(f"--out {out}: {refusal(path, kind)}; choose another {_place(path)} or pass --force")


def _claim_run(out, path: Path, *, force: bool, resume: bool, say) -> None:
    """A run folder is written in place for minutes: never two runs in one, never another kind's folder."""
    if force and resume:
        raise SoraError(f"--out {out}: --resume continues the run there and --force starts it over; give one of them")
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        if describe(path) is RUN:  # the run's own killed saves (OUT/model, OUT/best, a checkpoint)
            clean_stale(path)
            clean_stale(path / "checkpoints")
        if _is_empty_folder(path) or resume and describe(path) is RUN and _replaced_by_run(path) is None:
            return
    if force:
        say(f"--out {out}: starting over (--force): removing what is there")
        clear(path)
        return
    if describe(path) is RUN and (not resume or _replaced_by_run(path) is None):
        raise SoraError(
            f"--out {out}: holds a training run already; pass --resume to continue it, or --force to start over"
        )
    raise SoraError(f"--out {out}: {refusal(path, RUN)}; choose another {_place(path)} or pass --force")


def _replaced_by_run(path: Path) -> str | None:
    """The first foreign entry in the run's subfolders that a resumed run replaces whole (OUT/model, ...)."""
    for name, kind in RUN.dirs.items():
        folder = path / name
        if kind is not None and folder.is_dir() and not folder.is_symlink():
            bad = _offence(folder, kind)
            if bad is not None:
                return f"{name}/{bad}"
    return None


def refusal(path: Path, kind: Kind) -> str:
    """Why ``path`` is not ``kind``'s output, in a few words naming an example."""
    if path.is_symlink():
        return "is a symbolic link (with --force the link is replaced, not what it points to)"
    if not path.is_dir():
        return "is a file, not a folder"
    found = describe(path)
    if found is RUN and kind is RUN:
        return f"holds files Sora did not write (e.g. {_replaced_by_run(path) or _first(path)})"
    if found is not None:
        return f"is {found.noun} Sora wrote, not {kind.noun}"
    return f"holds files Sora did not write (e.g. {_offence(path, kind) or _first(path)})"


def describe(folder: Path) -> Kind | None:
    """The kind of Sora output ``folder`` is, or None (a run is any folder with a run's checkpoints or run file)."""
    for kind in KNOWN:
        if _offence(folder, kind) is None:
            return kind
    return RUN if (folder / "checkpoints").is_dir() or (folder / RUN_FILE).is_file() else None


def _offence(folder: Path, kind: Kind) -> str | None:
    """None when ``folder`` is ``kind``'s output; else the first entry that shows it is not."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return folder.name
    if not entries:
        return folder.name
    for entry in entries:
        bad = _bad_entry(entry, kind)
        if bad is not None:
            return bad
    names = {e.name for e in entries}
    if any(name not in names for name in kind.required) or not kind.signed(folder):
        return next((n for n in kind.required if n in names), entries[0].name)
    return None


def _bad_entry(entry: os.DirEntry, kind: Kind) -> str | None:
    name = entry.name
    if kind.leftovers and _leftover(name, kind):
        return None
    if entry.is_symlink():
        return name
    if entry.is_dir():
        if name not in kind.dirs:
            return f"{name}/"
        inner = kind.dirs[name]
        bad = None if inner is None else _offence(Path(entry.path), inner)
        return None if bad is None else f"{name}/{bad}"
    known = name in kind.files or (kind.pattern is not None and re.fullmatch(kind.pattern, name))
    return None if known and entry.is_file() else name


def _leftover(name: str, kind: Kind) -> bool:
    """A hidden file or folder of a write into ``kind``'s folder that did not finish (``.metrics.json.123.tmp``)."""
    return is_staging_name(name) or any(name.startswith(f".{entry}.") for entry in (*kind.files, *kind.dirs))


def clear(path: Path) -> None:
    """Empty the folder ``path`` (or remove it if it is a file or a link), following no link."""
    if path.is_symlink() or not path.is_dir():
        remove_path(path)
        return
    for entry in os.scandir(path):
        remove_path(entry.path)


def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(os.scandir(path))


def _first(path: Path) -> str:
    return min(os.listdir(path), default=path.name)


def _place(path: Path) -> str:
    return "folder" if path.is_dir() and not path.is_symlink() else "path"
