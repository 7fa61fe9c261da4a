"""The spoken_words set's plan (digit strings for CTC, respelled takes, seeded) and the rebuild of an old cache."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from sora.data import builtin
from sora.data.builtin import spoken_words as sw
from sora.errors import SoraError, SoraWarning

# en-us as espeak-ng transcribes it: the plan's tests need no espeak-ng
US = "z'i@roU w'Vn t'u: Tr'i: f'o@ f'aIv s'Iks s'Ev@n 'eIt n'aIn j'Es n'oU ,Vp d,aUn l'Eft r'aIt ,O2n 'O2f st2'0p g'oU"
PHONEMES = dict(zip(sw.DIGITS + sw.COMMANDS, US.split()))


def plan():
    return sw._plan(lambda accent: PHONEMES)


def test_digit_strings_have_3_to_8_digits_and_the_plan_is_seeded():
    clips = plan()
    strings = [c for c in clips if c["kind"] == "digits"]
    lengths = Counter(len(c["text"].split()) for c in strings)
    assert set(lengths) == set(range(3, 9)) and min(lengths.values()) > 0.1 * len(strings) / 6
    assert all(w in sw.DIGITS for c in strings for w in c["text"].split())
    # other languages' voices and respelled takes: training only
    extra = len(sw.ACCENTED) * sw.ACCENTED_DIGIT_STRINGS + 5 * sw.RESPELLED_DIGIT_STRINGS
    assert len(strings) == sw.DIGIT_STRINGS * 8 + extra
    assert Counter(c["split"] for c in strings) == {
        "train": 5 * sw.DIGIT_STRINGS + extra,
        "validation": sw.DIGIT_STRINGS,
        "test": 2 * sw.DIGIT_STRINGS,
    }
    assert plan() == clips  # the same clips, voices and noise on every call (and machine)
    assert len({c["file"] for c in clips}) == len(clips)


def test_a_respelled_take_swaps_vowels_or_th_and_keeps_every_other_sound_and_the_label():
    respelled = [c for c in plan() if c["say"] != c["text"]]
    assert {c["split"] for c in respelled} == {"train"} and {c["accent"] for c in respelled} == set(sw.ACCENTS["train"])
    words = [c for c in respelled if c["kind"] == "word"]
    assert len(words) == 5 * len(sw.WORDS) * sw.RESPELLED_WORD_TAKES
    assert len(respelled) == len(words) + 5 * sw.RESPELLED_DIGIT_STRINGS
    swaps = {"T": {"t", "f"}, "D": {"d", "v"}, **{v: set(sw.VOWELS) for v in sw.VOWELS + sw.OTHER_VOWELS}}
    for clip in respelled:
        said = clip["say"].split()
        assert len(said) == len(clip["text"].split())
        for word, phonemes in zip(clip["text"].split(), said):
            assert phonemes.startswith("[[") and phonemes.endswith("]]") and phonemes[2:-2] != PHONEMES[word]
            if word == "three":  # T, r, a vowel: only T and the vowel may change
                assert phonemes[2] in "Ttf" and phonemes[3:5] == "r'" and phonemes[5:-2] in swaps["i:"]
    assert {c["label"] for c in words} == set(sw.WORDS) and all(c["label"] == c["text"] for c in words)


def test_a_respelling_reads_sounds_longest_first():
    rng = np.random.default_rng(0)
    said = {sw._respell(["n'aIn"], rng) for _ in range(200)}  # aI is one vowel: never "a" plus "I"
    assert {s[4:-3] for s in said} <= set(sw.VOWELS) - {"aI"} and all(s.startswith("[[n'") for s in said)


def test_more_digit_strings_or_voices_leave_the_other_clips_as_they_were(monkeypatch):
    def words(accents):
        return [{k: v for k, v in c.items() if k != "file"} for c in plan() if c["accent"] in accents]

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
    monkeypatch.setattr(sw, "RESPELLED_WORD_TAKES", 1)
    monkeypatch.setattr(sw, "RESPELLED_DIGIT_STRINGS", 1)
    folder = builtin.fetch("spoken_words")
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["layout"] == sw.LAYOUT and manifest["clips"] == 9 * 3 + 5 * 3
    del manifest["layout"]  # what a cache built before layouts were recorded looks like
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.warns(
        SoraWarning, match=rf"spoken_words: the cached copy .* is out of date \(layout 1; .* layout {sw.LAYOUT}\)"
    ):
        builtin.fetch("spoken_words")
    assert json.loads((folder / "MANIFEST.json").read_text())["layout"] == sw.LAYOUT
    rows = [json.loads(line) for line in open(folder / "metadata.jsonl")]
    assert {len(r["text"].split()) for r in rows if r["kind"] == "digits"} <= set(range(3, 9))
