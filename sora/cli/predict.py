"""``sora predict``: a model over a file or folder of inputs, one JSON line of prediction per record."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer
from tqdm import tqdm

from sora.atomic import staged_file
from sora.cli.app import app
from sora.cli.out import note
from sora.deploy.predictor import BACKENDS, Predictor
from sora.deploy.records import folder_files, read_records
from sora.deploy.stream import predict_stream
from sora.errors import SoraError


@app.command("predict")
def predict_command(
    model: Path = typer.Argument(..., help="a model folder, or an export folder (sora export)"),
    input_: Path = typer.Option(
        ...,
        "--input",
        help="text lines (.txt), CSV/TSV or JSONL (one column, --column; question answering: --question-column and "
        "--context-column), or a folder of images or WAV files",
    ),
    output: Path = typer.Option(..., "--output", help="the JSON lines file to write, one line per record"),
    column: str = typer.Option("text", "--column", help="the column of a CSV/TSV/JSONL input to predict"),
    question: str = typer.Option("question", "--question-column", help="question answering: the question's field"),
    context: str = typer.Option("context", "--context-column", help="question answering: the paragraph's field"),
    batch_size: int = typer.Option(
        32, "--batch-size", min=1, help="inputs per batch (sorted by length; question answering: context windows)"
    ),
    backend: str = typer.Option("auto", "--backend", help="auto (the faster, measured at load), torch or onnxruntime"),
    force: bool = typer.Option(False, "--force", help="replace --output if it exists"),
) -> None:
    """Predict every record of --input and write one JSON line per record to --output.

    The input is streamed a chunk at a time, so it may be larger than memory.

    A bad record is written as {"line": N, "error": "..."} and the rest still run; the summary counts them.
    """
    if backend not in BACKENDS:
        raise SoraError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    _check_output(output, input_, force)
    predictor = Predictor.load(model, backend=backend)
    records = read_records(input_, predictor.input, column, (question, context) if predictor.task == "span" else None)
    total = len(folder_files(input_, predictor.input)) if input_.is_dir() else None
    start = time.perf_counter()
    with staged_file(output) as tmp, open(tmp, "w", encoding="utf-8") as out:
        with tqdm(total=total, unit="record", file=sys.stderr, mininterval=0.5, dynamic_ncols=True) as bar:
            counts = predict_stream(predictor, records, out, batch_size=batch_size, progress=bar.update)
        if counts.total == 0:
            raise SoraError(f"{input_}: no records to predict")
    seconds = time.perf_counter() - start
    rate = counts.total / max(seconds, 1e-9)
    note(
        f"predicted {counts.predicted:,} of {counts.total:,} records ({counts.failed:,} failed) with "
        f"{predictor.backend} in {seconds:.1f} s ({rate:,.0f} records/s) -> {output}"
    )
    if counts.failed:
        note(f"first failure: {counts.first_failure}")
    if counts.predicted == 0:
        raise SoraError(f"{input_}: none of its {counts.total:,} records could be predicted (see {output})")


def _check_output(output: Path, input_: Path, force: bool) -> None:
    """--output is a new file, or an existing one with --force; never a folder, never the input itself."""
    if output.is_dir() and not output.is_symlink():
        raise SoraError(f"--output {output}: a folder; give the name of a file to write")
    if not output.parent.is_dir():
        raise SoraError(f"--output {output}: the folder {output.parent} does not exist")
    if input_.exists() and output.exists() and os.path.samefile(input_, output):
        raise SoraError(f"--output {output} is the input; choose another file")
    if (output.exists() or output.is_symlink()) and not force:
        raise SoraError(f"--output {output} exists; add --force to replace it")
