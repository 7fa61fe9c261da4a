"""The spoken_words set's plan (digit strings for CTC, seeded) and the rebuild of a cache of an older layout."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from sora.data import builtin
from sora.data.builtin import spoken_words as sw
from sora.errors import SoraError, SoraWarning


def test_digit_strings_have_3_to_8_digits_and_the_plan_is_seeded():
    plan = sw._plan()
    strings = [c for c in plan if c["kind"] == "digits"]
    lengths = Counter(len(c["text"].split()) for c in strings)
    assert set(lengths) == set(range(3, 9)) and min(lengths.values()) > 0.1 * len(strings) / 6
    assert all(w in sw.DIGITS for c in strings for w in c["text"].split())
    accented = len(sw.ACCENTED) * sw.ACCENTED_DIGIT_STRINGS  # other languages' voices: training only
    assert len(strings) == sw.DIGIT_STRINGS * 8 + accented
    assert Counter(c["split"] for c in strings) == {
        "train": 5 * sw.DIGIT_STRINGS + accented,
        "validation": sw.DIGIT_STRINGS,
        "test": 2 * sw.DIGIT_STRINGS,
    }
    assert sw._plan() == plan  # the same clips, voices and noise on every call (and machine)
    assert len({c["file"] for c in plan}) == len(plan)


def test_more_digit_strings_or_voices_leave_the_other_clips_as_they_were(monkeypatch):
    def words(accents):
        return [{k: v for k, v in c.items() if k != "file"} for c in sw._plan() if c["accent"] in accents]

    english = [a for accents in sw.ACCENTS.values() for a in accents]
    before = words(english)
    monkeypatch.setattr(sw, "ACCENTED", sw.ACCENTED + ["hu"])
    monkeypatch.setattr(sw, "ACCENTED_DIGIT_STRINGS", 3)
    assert words(english) == before


def test_a_cache_of_an_older_layout_is_rebuilt_not_read(tmp_path, monkeypatch):
    from sora.data.builtin.system import require_program

    try:
        require_program("espeak-ng", "espeak-ng", "spoken_words")
    except SoraError as e:
        pytest.skip(str(e))
    monkeypatch.setenv("SORA_HOME", str(tmp_path))  # a tiny set: 2 words, 1 take, 1 string a voice
    monkeypatch.setattr(sw, "WORDS", ["yes", "no"])
    monkeypatch.setattr(sw, "WORD_TAKES", 1)
    monkeypatch.setattr(sw, "DIGIT_STRINGS", 1)
    monkeypatch.setattr(sw, "ACCENTED", ["de"])
    monkeypatch.setattr(sw, "ACCENTED_WORD_TAKES", 1)
    monkeypatch.setattr(sw, "ACCENTED_DIGIT_STRINGS", 1)
    folder = builtin.fetch("spoken_words")
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["layout"] == sw.LAYOUT and manifest["clips"] == 9 * 3
    del manifest["layout"]  # what a cache built before layouts were recorded looks like
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.warns(
        SoraWarning, match=rf"spoken_words: the cached copy .* is out of date \(layout 1; .* layout {sw.LAYOUT}\)"
    ):
        builtin.fetch("spoken_words")
    assert json.loads((folder / "MANIFEST.json").read_text())["layout"] == sw.LAYOUT
    rows = [json.loads(line) for line in open(folder / "metadata.jsonl")]
    assert {len(r["text"].split()) for r in rows if r["kind"] == "digits"} <= set(range(3, 9))
