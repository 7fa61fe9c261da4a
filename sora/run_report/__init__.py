"""``OUT/report.html``: the one page a ``sora run`` ends with.

It gathers what the stages wrote (metrics.json, the training log, analysis.json, compressed/report.json,
export/meta.json) into one self-contained page: each stage's figures, the training curves, links to
the detailed reports and the commands that use the result. It reads only the folder, so it can be
rewritten at any point of a run and shows what is there. Beside it, ``OUT/data.yaml`` (the run's data
section, from run.json) is what the printed ``sora eval`` command reads.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sora.atomic import staged_file
from sora.run_report.commands import DATA_YAML, usage_commands
from sora.run_report.curves import training_curves
from sora.run_report.page import render_page
from sora.run_report.read import read_run_folder

REPORT_HTML = "report.html"
__all__ = ["DATA_YAML", "REPORT_HTML", "write_run_report"]


def write_run_report(out_dir: str | Path) -> Path | None:
    """Write ``out_dir/report.html`` (and data.yaml) from what the run folder holds; None before
    training has written metrics.json (there is nothing to report yet)."""
    out_dir = Path(out_dir)
    if not (out_dir / "metrics.json").is_file():
        return None
    run = read_run_folder(out_dir)
    has_data_yaml = _write_data_yaml(out_dir, run.run.get("spec", {}).get("data"), run.name)
    page = render_page(run, training_curves(run), usage_commands(run, has_data_yaml=has_data_yaml))
    with staged_file(out_dir / REPORT_HTML) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out_dir / REPORT_HTML


def _write_data_yaml(out_dir: Path, data: dict | None, recipe: str) -> bool:
    """The run's data section as a file ``sora eval --data`` reads (run.json leaves out storage_options)."""
    if not isinstance(data, dict):
        return False
    header = f"# The data section of recipe '{recipe}' as this run used it (written by sora run, for sora eval).\n"
    with staged_file(out_dir / DATA_YAML) as tmp:
        tmp.write_text(header + yaml.safe_dump({"data": data}, sort_keys=False), encoding="utf-8")
    return True
