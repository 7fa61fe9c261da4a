"""File formats, each read into a ``Table`` (or streamed row by row), with bad rows named by file:line.

Row formats (text, CSV/TSV, JSONL, Parquet) are read as iterators so that a shard larger than
memory can be streamed; array formats (IDX, NPZ) and folders (images, WAV files) are read whole.
The format is inferred from the extension when the config does not name it.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from typing import Any, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from sora.data.audio import decode_wav
from sora.data.sources import (
    basename,
    display_name,
    filesystem,
    is_dir,
    list_files,
    open_file,
    read_bytes,
    strip_compression,
)
from sora.data.table import RowErrors, Table
from sora.errors import SoraError

Row = tuple[str, dict[str, Any]]  # (where, values)
ROW_FORMATS = ("text", "csv", "tsv", "jsonl", "parquet")
_EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
    ".idx": "idx",
    "-ubyte": "idx",
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".pgm", ".ppm")
# Text files are UTF-8, or UTF-16/32 with a byte-order mark (what Windows tools write as "Unicode").
# UTF-32 first: its little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Bytes that are not valid in the file's encoding, as the "surrogateescape" error handler decodes them:
# each row that holds one is reported by its line, instead of the whole file failing without one.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_LINE_END = re.compile(r"\r\n|\r|\n")  # what ends a line for the readers (newline="" keeps them as written)
csv.field_size_limit(2**31 - 1)  # a long text is a valid field (the default limit is 128 KiB)


def infer_format(url: str, storage_options: dict | None = None) -> str:
    """The format an URL's extension implies; a folder holding images or WAV files is a folder format."""
    if is_dir(url, storage_options):
        names = [basename(f).lower() for f in list_files(url, storage_options, dirs=True)]
        if any(n.endswith(".wav") for n in names):
            return "wav_folder"
        if any(n.endswith(IMAGE_EXTENSIONS) for n in names):
            return "image_folder"
        raise SoraError(f"{url}: a folder with no images or .wav files; set data.format")
    if any(c in url.split("://")[-1] for c in "*?["):  # a glob: the files it matches decide
        url = list_files(url, storage_options)[0]
    name = strip_compression(basename(url).lower())
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise SoraError(
        f"{url}: cannot tell the format from the name; set data.format "
        f"(text, csv, tsv, jsonl, parquet, idx, npz, image_folder, wav_folder)"
    )


# ---------------------------------------------------------------- row formats (streamable)


def iter_rows(
    url: str, fmt: str, errors: RowErrors, storage_options: dict | None = None, *, whole_text: bool = False
) -> Iterator[Row]:
    """Rows of one file, lazily. ``whole_text`` reads a text file as one row (a corpus for an LM)."""
    name = display_name(url)
    try:
        with open_file(url, storage_options) as raw:
            if fmt == "parquet":
                yield from _parquet_rows(raw, name)
                return
            text = _text_stream(raw)
            if fmt == "text":
                yield from _text_rows(text, name, errors, whole_text)
            elif fmt in ("csv", "tsv"):
                yield from _delimited_rows(text, name, errors, "," if fmt == "csv" else "\t")
            elif fmt == "jsonl":
                yield from _jsonl_rows(text, name, errors)
            else:
                raise SoraError(f"{name}: format '{fmt}' is not a row format")
    except FileNotFoundError:
        raise SoraError(f"{name}: no such file") from None
    except UnicodeDecodeError as e:  # what surrogateescape cannot carry: a broken UTF-16/32 sequence
        raise SoraError(
            f"{name}: not valid {_encoding_name(e.encoding)} text ({e.reason}); save the file as UTF-8"
        ) from None
    except OSError as e:  # storage errors: permissions, a dropped connection, a corrupt .gz
        raise SoraError(f"{name}: cannot read ({e})") from None


class _Prepended(io.RawIOBase):
    """``head`` (bytes read ahead to find a byte-order mark), then the rest of ``raw``: no seeking needed,
    so compressed and remote files are sniffed too."""

    def __init__(self, head: bytes, raw):
        self.head, self.raw = head, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.head[: len(buffer)] if self.head else self.raw.read(len(buffer))
        self.head = self.head[len(data) :]
        buffer[: len(data)] = data
        return len(data)


def _text_stream(raw) -> io.TextIOWrapper:
    """``raw`` decoded by its byte-order mark (UTF-8 without one); undecodable bytes are kept as escapes
    for ``_undecodable`` to report by row. Newlines stay as written, for csv and for line numbers."""
    head = raw.read(4)
    encoding = next((enc for bom, enc in _BOMS if head.startswith(bom)), "utf-8")
    stream = io.BufferedReader(_Prepended(head, raw), buffer_size=1 << 16)
    return io.TextIOWrapper(stream, encoding=encoding, errors="surrogateescape", newline="")


def _encoding_name(encoding: str | None) -> str:
    return (encoding or "utf-8").upper().removesuffix("-SIG").replace("-LE", "").replace("-BE", "")


def _undecodable(text: str, encoding: str) -> str | None:
    """Why ``text`` (a row, or a field of one) cannot be used: a byte its file's encoding does not allow."""
    bad = _UNDECODABLE.search(text)
    if bad is None:
        return None
    return f"not valid {_encoding_name(encoding)} text (byte 0x{ord(bad.group()) - 0xDC00:02x}); save the file as UTF-8"


def _text_rows(f, name: str, errors: RowErrors, whole: bool) -> Iterator[Row]:
    if whole:
        text = f.read()
        bad = _UNDECODABLE.search(text)
        if bad:
            line = len(_LINE_END.findall(text, 0, bad.start())) + 1
            errors.bad(f"{name}:{line}", _undecodable(bad.group(), f.encoding))
            return
        yield f"{name}:1", {"text": text}
        return
    for where, line in _decodable_lines(f, name, errors):
        yield where, {"text": line.rstrip("\r\n")}


def _decodable_lines(f, name: str, errors: RowErrors) -> Iterator[tuple[str, str]]:
    """("file:line", line) for each non-blank line; one with bytes its encoding forbids is a bad row."""
    for i, line in enumerate(f, 1):
        if not line.strip():
            continue
        problem = _undecodable(line, f.encoding)
        if problem:
            errors.bad(f"{name}:{i}", problem)
            continue
        yield f"{name}:{i}", line


class _Pieces:
    """What ``csv.reader`` reads: the file's lines as Python's csv and pandas end them (at ``\\n``, ``\\r\\n`` or a
    bare ``\\r``; every one counts for line numbers, as in the other readers), noting whether the last one
    ended with a bare ``\\r`` in a file whose lines end with ``\\n`` (in an old Mac file, with no ``\\n``, a bare
    ``\\r`` is the line end)."""

    def __init__(self, f):
        self.pieces = iter(f)
        self.line = 1  # the line the next piece starts on
        self.seen_lf = False
        self.after_bare_cr = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        piece = next(self.pieces)
        self.seen_lf = self.seen_lf or piece.endswith("\n")
        self.after_bare_cr = self.seen_lf and piece.endswith("\r")
        self.line += 1
        return piece


def _delimited_rows(f, name: str, errors: RowErrors, delimiter: str) -> Iterator[Row]:
    """Rows as ``csv.reader`` reads them. A bare ``\\r`` in an unquoted field ends a row for csv and pandas;
    where that leaves a row with the wrong number of fields, the whole line it cut is one bad row, named by
    its cause, so that skipping it leaves no fragment behind as a row."""
    pieces = _Pieces(f)
    reader = csv.reader(pieces, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        raise SoraError(f"{name}:1: malformed header ({e})") from None
    _check_header(header, name, f.encoding)
    line: list[tuple[str, dict | str]] = []  # the records of one line: (where, values or what is wrong)
    cuts = 0  # bare carriage returns that ended a record inside this line
    while True:
        where = f"{name}:{pieces.line}"
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            fields = f"malformed row ({e})"
        if isinstance(fields, str) or fields and not (len(fields) == 1 and not fields[0].strip()):  # not blank
            line.append((where, _record(fields, header, f.encoding)))
        cuts += pieces.after_bare_cr
        if not pieces.after_bare_cr:
            yield from _line_records(line, cuts, errors)
            line, cuts = [], 0
    yield from _line_records(line, cuts, errors)


def _record(fields: list[str] | str, header: list[str], encoding: str) -> dict | str:
    """A row's values by column, or why it is not a row."""
    if isinstance(fields, str):
        return fields
    problem = _undecodable("".join(fields), encoding)
    if problem:
        return problem
    if len(fields) != len(header):
        return f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}"
    return dict(zip(header, fields))


def _line_records(line: list[tuple[str, dict | str]], cuts: int, errors: RowErrors) -> Iterator[Row]:
    """The rows of one line. A line that bare carriage returns cut into records where one is not a row had
    the \\r inside a field: the whole line is one bad row, so that skipping it keeps no fragment as a row."""
    problems = [p for _, p in line if isinstance(p, str)]
    if cuts and problems:
        errors.bad(
            line[0][0],
            "a bare carriage return (\\r) inside a field, which csv readers (Python's csv, pandas) take as a "
            f"line end, cuts this line into {cuts + 1} rows ({problems[0]}); quote that field or replace the \\r",
        )
        return
    for where, values in line:
        if isinstance(values, str):
            errors.bad(where, values)
        else:
            yield where, values


def _check_header(header: list[str], name: str, encoding: str) -> None:
    """Column names must be readable and distinct: a second column of the same name would hide the first
    (unnamed ones, such as the empty columns spreadsheets add, hide nothing a role could name)."""
    problem = _undecodable("".join(header), encoding)
    if problem:
        raise SoraError(f"{name}:1: the header row is {problem}")
    twice = sorted({c for c in header if c.strip() and header.count(c) > 1})
    if twice:
        raise SoraError(
            f"{name}:1: the header names column {', '.join(map(repr, twice))} twice; give every column its own name"
        )


def _jsonl_rows(f, name: str, errors: RowErrors) -> Iterator[Row]:
    for where, line in _decodable_lines(f, name, errors):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            errors.bad(where, f"not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(value, dict):
            errors.bad(where, f"expected a JSON object, found {type(value).__name__}")
            continue
        yield where, value


def _parquet_rows(raw, name: str) -> Iterator[Row]:
    import pyarrow.parquet as pq  # 0.1 s to import: parquet files only

    try:
        pf = pq.ParquetFile(raw)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise SoraError(f"{name}: not a Parquet file ({e})") from None
    row = 0
    for batch in pf.iter_batches(batch_size=4096):  # streams row groups, never the whole file
        for values in batch.to_pylist():
            row += 1
            yield f"{name}:row {row}", values


def rows_to_table(rows: Iterator[Row]) -> Table:
    where, records = [], []
    for w, r in rows:
        where.append(w)
        records.append(r)
    keys: dict[str, None] = {}
    for r in records:
        keys.update(dict.fromkeys(r))
    return Table({k: [r.get(k) for r in records] for k in keys}, where)


# ---------------------------------------------------------------- array formats

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """MNIST's IDX: two zero bytes, a dtype code, the number of dims, big-endian dim sizes, data."""
    if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_DTYPES:
        raise SoraError(f"{name}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise SoraError(f"{name}: IDX header promises {dims} ({expected} bytes) but the file has {len(data)}")
    return np.frombuffer(data, dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(files: list[str], storage_options: dict | None = None) -> Table:
    """Images and labels in separate IDX files, paired by name (train-images-... with train-labels-...)."""
    groups: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    for url in files:
        array = parse_idx(read_bytes(url, storage_options), display_name(url))
        key = re.sub(r"images|labels|idx\d", "", strip_compression(basename(url)))
        role = "label" if array.ndim == 1 else "image"
        if role in groups.setdefault(key, {}):
            raise SoraError(f"{display_name(url)}: two IDX {role} files pair with {groups[key][role][0]}")
        groups[key][role] = (display_name(url), array)
    tables = []
    for key, found in sorted(groups.items()):
        if "image" not in found:
            raise SoraError(f"{found['label'][0]}: IDX labels without a matching images file")
        name, images = found["image"]
        columns = {"image": _nhwc(images)}
        if "label" in found:
            if len(found["label"][1]) != len(images):
                raise SoraError(f"{found['label'][0]}: {len(found['label'][1])} labels for {len(images)} images")
            columns["label"] = found["label"][1].astype(np.int64)
        tables.append(Table(columns, [f"{name}:item {i}" for i in range(len(images))]))
    return Table.concat(tables)


def read_npz(files: list[str], storage_options: dict | None = None) -> Table:
    """NumPy archives (never unpickled): every array becomes a column; image arrays become N,H,W,C."""
    tables = []
    for url in files:
        name = display_name(url)
        try:
            archive = np.load(io.BytesIO(read_bytes(url, storage_options, compression=None)), allow_pickle=False)
            columns = {k: archive[k] for k in archive.files}  # arrays load lazily: errors surface here
        except (ValueError, OSError, EOFError) as e:
            raise SoraError(f"{name}: not a readable .npz without pickles ({e})") from None
        lengths = {k: len(v) for k, v in columns.items() if v.ndim}
        if len(set(lengths.values())) > 1:
            raise SoraError(f"{name}: arrays have different lengths {lengths}")
        columns = {k: _nhwc(v) if v.ndim >= 3 else v for k, v in columns.items() if v.ndim}
        n = next(iter(lengths.values()), 0)
        tables.append(Table(columns, [f"{name}:item {i}" for i in range(n)]))
    return Table.concat(tables)


def _nhwc(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:
        return images[..., None]  # (N, H, W) -> (N, H, W, 1)
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        return images.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    return images


# ---------------------------------------------------------------- folders


def _folder_files(root: str, storage_options: dict | None, extensions: tuple[str, ...]) -> list[tuple[str, str]]:
    """(url, label) for every matching file; the label is the name of the file's parent folder."""
    root = root.rstrip("/")
    fs, base = filesystem(root, storage_options)  # a relative local folder lists as absolute paths
    base = base.rstrip("/")
    found = []
    for url in list_files(root, storage_options, dirs=True):
        if url.lower().endswith(extensions):
            path = fs._strip_protocol(url)
            rel = path[len(base) :].lstrip("/") if path.startswith(base) else basename(url)
            parts = rel.split("/")
            found.append((url, parts[-2] if len(parts) > 1 else ""))
    if not found:
        raise SoraError(f"{root}: no {'/'.join(extensions)} files in this folder")
    return found


def read_image_folder(root: str, storage_options: dict | None = None, *, size: int | None = None) -> Table:
    """``root/<label>/<image>``: images decoded with Pillow, all the same size (or resized to ``size``)."""
    images, labels, where, files = [], [], [], []
    for url, label in _folder_files(root, storage_options, IMAGE_EXTENSIONS):
        try:
            image = Image.open(io.BytesIO(read_bytes(url, storage_options, compression=None)))
            image = image.convert("L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise SoraError(f"{display_name(url)}: not a readable image ({e})") from None
        if size:
            image = image.resize((size, size), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
        images.append(array if array.ndim == 3 else array[..., None])
        labels.append(label)
        where.append(display_name(url))
        files.append(basename(url))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise SoraError(f"{root}: images have different sizes {sorted(shapes)[:4]}; set data.image_size to resize")
    return Table({"image": np.stack(images), "label": labels, "file": files}, where)


def read_wav_folder(root: str, sample_rate: int, storage_options: dict | None = None) -> Table:
    """``root/<label>/<clip>.wav``, resampled to ``sample_rate``; a ``metadata.csv`` or ``.jsonl`` in the
    root (a ``file`` column plus any others, e.g. a transcript) adds columns by file name."""
    audio, labels, where, files = [], [], [], []
    for url, label in _folder_files(root, storage_options, (".wav",)):
        audio.append(decode_wav(read_bytes(url, storage_options, compression=None), sample_rate, display_name(url)))
        labels.append(label)
        where.append(display_name(url))
        files.append(basename(url))
    columns: dict[str, Any] = {"audio": audio, "label": labels, "file": files}
    meta = _folder_metadata(root, storage_options)
    if meta is not None:
        by_file = {basename(str(r.get("file", ""))): (w, r) for w, r in meta}
        missing = [f for f in files if f not in by_file]
        if missing:
            raise SoraError(f"{root}: metadata has no row for {missing[0]} (and {len(missing) - 1} more)")
        for key in {k for _, r in meta for k in r} - {"file"}:
            columns[key] = [by_file[f][1].get(key) for f in files]
    return Table(columns, where, {"sample_rate": sample_rate})


def _folder_metadata(root: str, storage_options: dict | None) -> list[Row] | None:
    for name, fmt in (("metadata.csv", "csv"), ("metadata.jsonl", "jsonl")):
        url = f"{root.rstrip('/')}/{name}"
        try:
            list_files(url, storage_options)
        except SoraError:
            continue
        return list(iter_rows(url, fmt, RowErrors("fail"), storage_options))
    return None
