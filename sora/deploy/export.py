"""ONNX export of a model folder, checked against torch before anything is written.

``export_onnx`` writes an export folder: the model folder's files (so a tokenizer, labels and
preprocessing travel with it, and a torch backend can run it too) plus one ONNX graph per entry of
``sora.deploy.graphs`` and an ``"export"`` object in meta.json (docs/deploy.md). Each graph is
exported with the dynamo exporter, dynamic batch and sequence axes, then run in ONNX Runtime on real
inputs from the model's own data (``sora.deploy.samples``): an fp32 graph more than ``TOLERANCE``
from torch is refused, nothing written. ``int8`` quantizes the checked fp32 graphs with ONNX
Runtime (``sora.deploy.onnx_int8``) and records how often they agree with torch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import onnx
import torch

from sora.atomic import staged_dir
from sora.configio import read_json_file
from sora.deploy.graphs import Graph, freeze_gate_checks, graphs_for
from sora.deploy.onnx_int8 import PER_CHANNEL, quantize_graph
from sora.deploy.parity import Sessions, compare, fp32_diffs, int8_agreement
from sora.deploy.samples import parity_samples
from sora.errors import SoraError, first_line
from sora.models import load_config, load_meta, load_model, load_tokenizer
from sora.models.adapters import merge_lora
from sora.models.folder import CONFIG, META, TOKENIZER, WEIGHTS, require_model_dir
from sora.paths import existing_file

TOLERANCE = 1e-4  # largest |onnxruntime - torch| an fp32 graph may show on any output
GRAPH_FILES = frozenset({"model.onnx", "encoder.onnx", "decoder_step.onnx"})
EXPORT_FOLDER_FILES = GRAPH_FILES | {CONFIG, WEIGHTS, TOKENIZER, META}  # what an export folder may hold
PRECISIONS = ("fp32", "int8")


def export_onnx(
    model_dir: str | Path, out_dir: str | Path, *, int8: bool = False, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Write the export folder ``out_dir`` for ``model_dir`` and return its meta.json ``"export"`` object."""
    model_dir = require_model_dir(model_dir)
    if load_config(model_dir).quantization:
        raise SoraError(
            f"{model_dir}: holds torch int8 weights (sora quantize), which cannot be exported to ONNX; "
            "export the fp32 (pruned) model folder with --int8 instead"
        )
    model, meta, tokenizer = merge_lora(load_model(model_dir)), load_meta(model_dir), load_tokenizer(model_dir)
    graphs = graphs_for(model)
    samples = parity_samples(model, meta, tokenizer)
    log(f"parity inputs: {samples.source}" + (f" ({samples.note})" if samples.note else ""))
    _warm_up(model, graphs)
    with staged_dir(out_dir) as folder, tempfile.TemporaryDirectory(prefix="sora-onnx-") as scratch:
        fp32_folder = Path(scratch) if int8 else folder
        for graph in graphs:
            seconds = export_graph(graph, fp32_folder / graph.file)
            log(f"exported {graph.file} in {seconds:.1f} s")
        sessions = Sessions(fp32_folder, graphs)
        parity = {"inputs": samples.source, "fp32_max_abs_diff": _checked(compare(model, sessions, samples), log)}
        if int8:
            parity["int8"] = _quantized(model, graphs, fp32_folder, folder, samples, log)
        export = {
            "format": "onnx",
            "precision": "int8" if int8 else "fp32",
            "opset": _opset(fp32_folder / graphs[0].file),
            "graphs": {g.name: _signature(sessions, g) for g in graphs},
            "parity": parity,
            "source": str(model_dir),
        }
        _copy_model_files(model_dir, folder, {**meta, "export": export})
    return export


def _warm_up(model: torch.nn.Module, graphs: list[Graph]) -> None:
    """One eager pass through each graph, so the particles' gate checks know their answers, then fix them."""
    with torch.no_grad():
        for graph in graphs:
            graph.module.eval()(*graph.example)
    freeze_gate_checks(model)


def export_graph(graph: Graph, path: Path) -> float:
    """Export one graph with the dynamo exporter (its chatter kept quiet); returns the seconds it took."""
    start, chatter = time.perf_counter(), io.StringIO()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph.module.eval(),
                graph.example,
                str(path),
                dynamo=True,
                input_names=graph.inputs,
                output_names=graph.outputs,
                dynamic_shapes=graph.dynamic_shapes,
                external_data=False,
                verbose=False,
            )
    except Exception as e:  # noqa: BLE001  the exporter's errors are pages long; its summary line says why
        raise SoraError(f"{graph.file}: the ONNX exporter failed ({_summary(e)})") from None
    finally:
        quiet.setLevel(level)
    return time.perf_counter() - start


def _summary(e: Exception) -> str:
    """The line under the exporter's '## Exception summary', else the error's first line."""
    lines = str(e).splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("## Exception summary"):
            return lines[i + 1].strip()[:300]
    return first_line(e, 300)


def _checked(pairs, log) -> dict[str, float]:
    """The fp32 figures, or a refusal naming the first graph past TOLERANCE."""
    diffs = fp32_diffs(pairs)
    for name, diff in diffs.items():
        log(f"fp32 parity: {name} max |onnxruntime - torch| {diff:.2e}")
        if not diff <= TOLERANCE:  # NaN refuses too
            raise SoraError(
                f"{name}.onnx: differs from the torch model by {diff:.3g} (max |onnxruntime - torch|, "
                f"allowed {TOLERANCE:g}); nothing was written"
            )
    return {name: float(f"{diff:.3g}") for name, diff in diffs.items()}


def _quantized(model, graphs: list[Graph], fp32_folder: Path, folder: Path, samples, log) -> dict[str, Any]:
    for graph in graphs:
        start = time.perf_counter()
        quantize_graph(fp32_folder / graph.file, folder / graph.file)
        log(f"quantized {graph.file} to int8 in {time.perf_counter() - start:.1f} s")
    figures = int8_agreement(compare(model, Sessions(folder, graphs), samples))
    figures["per_channel"] = PER_CHANNEL
    log(
        f"int8 against fp32 torch: label agreement {figures['label_agreement']:.2%} of {figures['predictions']} "
        f"predictions, max logit difference {figures['max_logit_diff']:.3g}"
    )
    return figures


def _signature(sessions: Sessions, graph: Graph) -> dict[str, Any]:
    """The graph's file and its inputs and outputs, as ONNX Runtime reads them (an unused input is dropped)."""
    session = sessions.sessions[graph.name]
    return {
        "file": graph.file,
        "inputs": [i.name for i in session.get_inputs()],
        "outputs": [o.name for o in session.get_outputs()],
    }


def _opset(path: Path) -> int:
    proto = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _copy_model_files(model_dir: Path, folder: Path, meta: dict[str, Any]) -> None:
    for name in (CONFIG, WEIGHTS, TOKENIZER):
        source = existing_file(model_dir, name)
        if source is not None:
            shutil.copyfile(source, folder / name)
    (folder / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")


# -- reading an export folder


def is_export_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an export folder (meta.json with an ONNX ``"export"`` object): to tell one
    from a plain model folder; ``read_export`` checks it."""
    try:
        meta = json.loads((Path(path) / META).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(meta, dict) and isinstance(meta.get("export"), dict) and meta["export"].get("format") == "onnx"


def read_export(path: str | Path) -> dict[str, Any]:
    """The meta.json ``"export"`` object of export folder ``path``, checked: every error one line naming it."""
    path = Path(path)
    meta_path = existing_file(path, META) if path.is_dir() else None
    if meta_path is None:
        raise SoraError(f"{path}: not an export folder (no {META}); write one with `sora export MODEL --out {path}`")
    export = read_json_file(meta_path, META).get("export")
    where = f"{meta_path}: export"
    if not isinstance(export, dict):
        raise SoraError(f"{meta_path}: has no 'export' object: a model folder, not an export (see `sora export`)")
    if export.get("format") != "onnx":
        raise SoraError(f"{where}.format: expected 'onnx', got {export.get('format')!r}")
    if export.get("precision") not in PRECISIONS:
        raise SoraError(f"{where}.precision: expected one of {', '.join(PRECISIONS)}, got {export.get('precision')!r}")
    graphs = export.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise SoraError(f"{where}.graphs: expected an object naming at least one graph")
    for name, graph in graphs.items():
        _check_graph(path, f"{where}.graphs.{name}", graph)
    return export


def _check_graph(folder: Path, where: str, graph: Any) -> None:
    if not isinstance(graph, dict):
        raise SoraError(f"{where}: expected an object with file, inputs and outputs")
    for key in ("inputs", "outputs"):
        names = graph.get(key)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SoraError(f"{where}.{key}: expected a list of tensor names")
    file = graph.get("file")
    if not isinstance(file, str) or file not in GRAPH_FILES:
        raise SoraError(f"{where}.file: expected one of {', '.join(sorted(GRAPH_FILES))}, got {file!r}")
    if existing_file(folder, file) is None:
        raise SoraError(f"{folder / file}: missing; the export folder is incomplete (export it again)")
