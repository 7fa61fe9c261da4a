"""A tiny SQuAD in SQuAD JSON, written by the tests themselves (the real files stay out of the repository), and a
stand-in for an installed bigbench package that holds it where bigbench keeps SQuAD and SQuADShifts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

PLACES = ["Paris", "Rome", "Madrid", "Berlin", "Vienna", "Lisbon", "Prague", "Dublin", "Oslo", "Athens"]
RIVERS = ["Seine", "Tiber", "Manzanares", "Spree", "Danube", "Tagus", "Vltava", "Liffey", "Akerselva", "Kifisos"]
SHIFTS = {"new_wiki_v1.0.json": 2, "nyt_v1.0.json": 2, "reddit_v1.0.json": 1, "amazon_reviews_v1.0.json": 2}


def paragraph(i: int, *, off_by: int = 0) -> dict:
    """One paragraph about a city, with two questions; ``off_by`` shifts the second answer's start (as some
    SQuAD files do) so that it must be recovered."""
    city, river = PLACES[i % len(PLACES)], RIVERS[i % len(RIVERS)]
    context = f"{city} is a city number {i}. The river {river} flows through {city} and people like it very much."
    return {
        "context": context,
        "qas": [
            {
                "id": f"q{i}a",
                "question": f"Which river flows through {city}?",
                "answers": [
                    {"text": river, "answer_start": context.index(river)},
                    {"text": f"river {river}", "answer_start": context.index(f"river {river}")},
                ],
            },
            {
                "id": f"q{i}b",
                "question": f"What number is {city}?",
                "answers": [{"text": str(i), "answer_start": context.index(f"number {i}") + 7 + off_by}],
            },
        ],
    }


def squad_json(articles: int, paragraphs: int = 3, first: int = 0) -> dict:
    data, k = [], first
    for a in range(articles):
        paras = []
        for _ in range(paragraphs):
            paras.append(paragraph(k, off_by=3 if k % 5 == 4 else 0))
            k += 1
        data.append({"title": f"Article_{first}_{a}", "paragraphs": paras})
    return {"version": "1.1", "canary": "a test file, not BIG-bench's", "data": data}


def fake_bigbench(root: Path, articles: int = 8) -> Path:
    """``root/bigbench`` laid out as the installed package: benchmark_tasks/squad_shifts/*.json."""
    folder = root / "bigbench" / "benchmark_tasks" / "squad_shifts"
    folder.mkdir(parents=True)
    (root / "bigbench" / "__init__.py").write_text("")
    (folder / "squaddev_v1.1.json").write_text(json.dumps(squad_json(articles)))
    for i, (name, n) in enumerate(SHIFTS.items()):
        (folder / name).write_text(json.dumps(squad_json(n, 2, first=100 * (i + 1))))
    return folder


def use_fake_bigbench(monkeypatch, tmp_path: Path, articles: int = 8) -> Path:
    """A fake bigbench importable, and an empty Sora cache, for this test."""
    folder = fake_bigbench(tmp_path / "site", articles)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("SORA_HOME", str(tmp_path / "sora-home"))
    sys.modules.pop("bigbench", None)
    return folder
