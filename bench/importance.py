"""Importance you can trust: how many heads and neurons each ranking removes within one point, against random.

    python bench/importance.py --model runs/sentiment/model --recipe recipes/sentiment.yaml [--ablation] \
        [--check-examples 2048] [--threads 1]
    python bench/importance.py --table          # the Markdown table of every bench/results/importance_*.json

For a trained model and the recipe it came from, the analysis' ranking check (sora.analyze.checks) runs on
the validation split with every head and neuron ranking (ablation too with ``--ablation``: one evaluation
per head and per neuron group). Per ranking: the fraction removable before the metric falls more than one
point below the intact model (bootstrap 95% interval over examples), the area under the curve, and
whether it is worse than random order anywhere; random order (mean and spread of the seeds) and the reverse
of the best ranking beside. No fine-tuning: gates and masks switch units off in the trained model.
Written to bench/results/importance_<recipe>.json, with the curves drawn in importance_<recipe>.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sora.analyze import analyze_model  # noqa: E402
from sora.analyze.data import load_analysis_data, recipe_analyze_section  # noqa: E402
from sora.models import load_model, load_tokenizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def unit_summary(check: dict) -> dict:
    """What the table needs of one unit kind's check."""

    def row(r: dict) -> dict:
        keep = ("prunable_within_1_point", "prunable_ci", "auc", "auc_ci", "worse_than_random", "loses_at")
        return {k: r[k] for k in keep if k in r}

    return {
        "units": check["units"],
        "examples": check["examples"],
        "points": len(check["removed"]),
        "seconds": check.get("seconds"),
        "best": check["best"],
        "why": check["why"],
        "rankings": {name: row(r) for name, r in check["rankings"].items()},
        "random": row(check["random"])
        | {"seeds": check["random"]["seeds"], "prunable_per_seed": check["random"]["prunable_per_seed"]},
        "reverse": row(check["reverse"]) | {"of": check["reverse"]["of"]} if check.get("reverse") else None,
        "tuned": row(check["tuned"]) | {"of": check["tuned"]["of"]} if check.get("tuned") else None,
        "fraction": check["fraction"],
        "curves": {name: r["metric"] for name, r in check["rankings"].items()}
        | {"random": check["random"]["metric"], "random_std": check["random"]["std"]},
    }


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    model_dir = Path(args.model)
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    section = recipe_analyze_section(args.recipe)
    config = dict(section.data) if section is not None else {}
    config.update(
        methods=["gradient", "neurons", "pruning"] + (["ablation"] if args.ablation else []),
        check_examples=args.check_examples,
        pruning_seeds=args.seeds,
    )
    if args.steps:
        config["pruning_steps"] = args.steps
    if args.neuron_steps:
        config["neuron_steps"] = args.neuron_steps
    if args.rankings is not None:
        config["rankings"] = [r for r in args.rankings.split(",") if r]
    if args.neuron_rankings is not None:
        config["neuron_rankings"] = [r for r in args.neuron_rankings.split(",") if r]
    config["reconstruct"] = args.reconstruct
    batch_size = config.get("batch_size", 64)
    data = load_analysis_data(args.recipe, model, tokenizer, split="validation", batch_size=batch_size)
    start = time.perf_counter()
    name = args.name or Path(args.recipe).stem
    with tempfile.TemporaryDirectory() as tmp:
        result = analyze_model(model, data.batches, config, Path(tmp) / "analysis", task=data.task, tokenizer=tokenizer)
        figure = Path(tmp) / "analysis" / "ranking_check.png"
        if figure.is_file():
            RESULTS.mkdir(exist_ok=True)
            shutil.copyfile(figure, RESULTS / f"importance_{name}.png")
    return {
        "name": name,
        "model": str(model_dir),
        "recipe": args.recipe,
        "metric": result["metric"],
        "intact": next(iter(result["rankings"].values()))["random"]["metric"][0],  # on the check examples
        "analysis_examples": result["data"]["examples"],
        "check_examples": result["data"]["check_examples"],
        "seconds": round(time.perf_counter() - start, 1),
        "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "heads": unit_summary(result["rankings"]["heads"]) if "heads" in result["rankings"] else None,
        "neurons": unit_summary(result["rankings"]["neurons"]) if "neurons" in result["rankings"] else None,
    }


def _cell(r: dict | None) -> str:
    if not r:
        return "–"
    flag = " ✗" if r.get("worse_than_random") else ""
    return f"{r['prunable_within_1_point'] * 100:.0f}% ({r['auc'] * 100:.1f}){flag}"


def _shortfall(u: dict) -> float:
    """The chosen ranking's worst point against the mean of the random orders, in points."""
    chosen = u["curves"].get(u["best"], u["curves"]["random"])
    return min(c - r for c, r in zip(chosen, u["curves"]["random"])) * 100


def table() -> str:
    """One row per model and unit kind: each ranking's prunable fraction within 1 point (area under the curve
    in brackets, ✗ = worse than random somewhere), random and reverse beside, and the ranking chosen."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("importance_*.json"))]
    names = ["gradient", "gradient_raw", "fisher", "iterative", "ablation"]
    neuron_names = ["taylor", "taylor_layer", "fisher", "activation", "ablation"]
    lines = []
    for unit, cols in (("heads", names), ("neurons", neuron_names)):
        head = ["model", unit, "examples", "intact", *cols, "random", "reverse", "chosen", "chosen − random, worst"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in results:
            u = r.get(unit)
            if not u:
                continue
            cells = [r["name"], str(u["units"]), f"{u['examples']:,}", f"{r['intact'] * 100:.1f}%"]
            cells += [_cell(u["rankings"].get(c)) for c in cols]
            cells += [_cell(u["random"]), _cell(u["reverse"]), u["best"], f"{_shortfall(u):+.2f} pts"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--recipe")
    parser.add_argument("--name", default=None)
    parser.add_argument("--ablation", action="store_true", help="also rank by measured ablation (costly)")
    parser.add_argument("--check-examples", type=int, default=2048)
    parser.add_argument("--seeds", type=int, default=5, help="random orders")
    parser.add_argument("--steps", type=int, default=None, help="points on the head curve")
    parser.add_argument("--neuron-steps", type=int, default=None, help="points on the neuron curves")
    parser.add_argument("--rankings", default=None, help="head rankings, comma-separated (default: all)")
    parser.add_argument("--neuron-rankings", default=None, help="neuron rankings, comma-separated ('' for none)")
    parser.add_argument("--reconstruct", action="store_true", help="also the chosen order with tuned gates")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table())
        return
    out = run(args)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"importance_{out['name']}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for unit in ("heads", "neurons"):
        u = out[unit]
        if u:
            scores = ", ".join(f"{n} {_cell(r)}" for n, r in u["rankings"].items())
            print(f"{out['name']} {unit}: {scores}; random {_cell(u['random'])}; chosen {u['best']}")
    print(path)


if __name__ == "__main__":
    main()
