"""Spoken words synthesised with espeak-ng: 20 words for keyword spotting, digit strings (3-8 digits) for CTC.

Clean synthetic speech is too easy (a small model reaches 100% on unseen voice variants of seen
accents), so the set is made hard on purpose: 8 English accents, 11 voice variants, a range of
speeds and pitches, a random lead-in of silence, and white or pink noise at SNRs from 20 dB down to
0 dB (a sixth of the clips stay clean). Splits are by accent: validation and test accents are never
heard in training, which also hears other languages' voices reading the English words, and respelled
takes: a training accent's own phonemes with some vowels and dental fricatives swapped. Generation is
seeded, takes about 1.5 minutes on 2 cores (16,660 clips), and happens once per layout."""

from __future__ import annotations

import json
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.io import wavfile

from sora.data.audio import decode_wav
from sora.data.builtin.entry import Builtin, Raw
from sora.data.builtin.system import require_program
from sora.data.config import DataConfig
from sora.data.table import Table
from sora.errors import SoraError

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
WORDS = DIGITS + COMMANDS
ACCENTS = {
    "train": ["en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-us-nyc"],
    "validation": ["en-gb-x-gbcwmd"],
    "test": ["en-gb-scotland", "en-029"],
}
# Other languages' voices reading the English words (German rules say "zero" as "tsero"): accents no English
# voice has, for training only, so that a model meets many ways of saying each word. Languages near the test
# accents (Scottish Gaelic, Caribbean creoles) stay out.
ACCENTED = (
    "af ca cs cy da de eo es et eu fi fr-fr ga hr hu id is it lt lv ms nb nl pl pt ro sk sl sq sv sw tr vi".split()
)
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4"]
SNRS = [None, 20.0, 15.0, 10.0, 5.0, 0.0]  # dB; None = clean
CLEAN = "clean"  # the snr and noise columns' value for a clip without noise
WORD_TAKES = 20  # clips per (accent, word)
DIGIT_STRINGS = 500  # clips per English accent: CTC needs thousands of strings to learn digit boundaries
ACCENTED_WORD_TAKES = 8  # clips per (voice of ACCENTED, word): many voices, a few takes each
ACCENTED_DIGIT_STRINGS = 60  # clips per voice of ACCENTED
# Accents differ most in their vowels ("nine" as "noine") and dental fricatives ("three" as "tree", "free"). A
# respelled take says a training accent's own phonemes (espeak-ng's `[[...]]` input) with each vowel swapped, with
# even odds, for one drawn from all of English's, and each "th" for its usual stand-ins: a model must then know a word
# by what accents keep. Drawn uniformly, not from any test accent's rules.
RESPELLED_WORD_TAKES = 12  # clips per (English training accent, word)
RESPELLED_DIGIT_STRINGS = 200  # clips per English training accent
VOWELS = "a A: E eI i: I 0 O: oU u: U V 3: @ aI aU OI i@ e@ U@".split()
FRICATIVE_STAND_INS = {"T": ["t", "f"], "D": ["d", "v"]}
# What a transcription's vowels look like besides VOWELS (rhotic and regional forms), matched longest first
OTHER_VOWELS = "O2 o@ O@ I2 aI@ aU@ @L @2 a# 3 i".split()
SOUNDS = sorted(VOWELS + OTHER_VOWELS + list(FRICATIVE_STAND_INS), key=len, reverse=True)  # longest match first
DIGIT_LENGTHS = (3, 8)  # digits per string, drawn uniformly
RATE = 16000
SEED = 1234
LAYOUT = 7  # the plan's version: a cache built by another plan is rebuilt, never misread (sora.data.builtin.fetch)


def _plan(transcribe: Callable[[str], dict[str, str]]) -> list[dict]:
    """Every clip to synthesise, with its voice and noise, from a fixed seed.

    Each (accent, kind) draws from its own stream, so adding digit strings or accents leaves the other clips
    as they were. ``transcribe(accent)`` gives each word's phonemes in that accent, which respelled takes vary.
    """
    voices = [(split, accent) for split, accents in ACCENTS.items() for accent in accents]
    clips: list[dict] = []
    for split, accent in voices + [("train", a) for a in ACCENTED]:
        rng = np.random.default_rng([SEED, zlib.crc32(accent.encode()), 0])
        takes = ACCENTED_WORD_TAKES if accent in ACCENTED else WORD_TAKES
        words = [(w, w, "word") for w in WORDS for _ in range(takes)]
        clips += [_clip(len(clips) + i, t, split, accent, rng) for i, t in enumerate(words)]
        rng = np.random.default_rng([SEED, zlib.crc32(accent.encode()), 1])
        strings = [_digit_string(rng) for _ in range(ACCENTED_DIGIT_STRINGS if accent in ACCENTED else DIGIT_STRINGS)]
        clips += [_clip(len(clips) + i, (t, "digits", "digits"), split, accent, rng) for i, t in enumerate(strings)]
    for accent in ACCENTS["train"]:
        phonemes = transcribe(accent)
        rng = np.random.default_rng([SEED, zlib.crc32(accent.encode()), 2])
        words = [(w, w, "word", _respell([phonemes[w]], rng)) for w in WORDS for _ in range(RESPELLED_WORD_TAKES)]
        clips += [_clip(len(clips) + i, t, "train", accent, rng) for i, t in enumerate(words)]
        rng = np.random.default_rng([SEED, zlib.crc32(accent.encode()), 3])
        strings = [_digit_string(rng) for _ in range(RESPELLED_DIGIT_STRINGS)]
        said = [(t, "digits", "digits", _respell([phonemes[d] for d in t.split()], rng)) for t in strings]
        clips += [_clip(len(clips) + i, t, "train", accent, rng) for i, t in enumerate(said)]
    return clips


def _digit_string(rng: np.random.Generator) -> str:
    low, high = DIGIT_LENGTHS
    digits = rng.integers(0, 10, size=int(rng.integers(low, high + 1)))
    return " ".join(DIGITS[d] for d in digits)


def _respell(words: list[str], rng: np.random.Generator) -> str:
    """espeak-ng input saying ``words`` (phoneme strings), each with at least one vowel or "th" swapped."""
    said = []
    for word in words:
        sounds, at = [], 0
        while at < len(word):
            sounds.append(next((s for s in SOUNDS if word.startswith(s, at)), word[at]))
            at += len(sounds[-1])
        swappable = [i for i, s in enumerate(sounds) if s in SOUNDS]  # a vowel or "th"; the rest stays
        swapped = [i for i in swappable if rng.random() < 0.5] or [swappable[int(rng.integers(len(swappable)))]]
        for i in swapped:
            stand_ins = FRICATIVE_STAND_INS.get(sounds[i]) or [v for v in VOWELS if v != sounds[i]]
            sounds[i] = stand_ins[int(rng.integers(len(stand_ins)))]
        said.append(f"[[{''.join(sounds)}]]")
    return " ".join(said)


def _transcriptions(espeak: str) -> Callable[[str], dict[str, str]]:
    def transcribe(accent: str) -> dict[str, str]:
        words = list(dict.fromkeys(WORDS + DIGITS))
        cmd = [espeak, "-q", "-x", "-v", accent, " ".join(words)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        phonemes = done.stdout.split()
        if done.returncode != 0 or len(phonemes) != len(words):
            raise SoraError(f"spoken_words: `{' '.join(cmd)}` gave {phonemes} ({done.stderr.strip()})")
        return dict(zip(words, phonemes))

    return transcribe


def _clip(number: int, text: tuple, split: str, accent: str, rng: np.random.Generator) -> dict:
    """One clip's voice (variant, speed, pitch), lead-in and noise, drawn from ``rng``.

    ``text`` is (text, label, kind), and for a respelled take what espeak-ng is given to say.
    """
    snr = SNRS[int(rng.integers(len(SNRS)))]
    return {
        "file": f"clips/{accent}/{number:05d}.wav",
        "text": text[0],
        "label": text[1],
        "kind": text[2],
        "say": text[3] if len(text) > 3 else text[0],
        "split": split,
        "accent": accent,
        "variant": VARIANTS[int(rng.integers(len(VARIANTS)))],
        "speed": int(rng.integers(120, 211)),
        "pitch": int(rng.integers(20, 81)),
        "snr": snr,
        "noise": None if snr is None else ("white", "pink")[int(rng.integers(2))],
        "lead_in": round(float(rng.uniform(0.0, 0.3)), 3),
        "seed": int(rng.integers(2**31)),
    }


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))  # 1/f power
    noise = np.fft.irfft(spectrum, n)
    return (noise / (noise.std() + 1e-12)).astype(np.float32)


def _synthesise(clip: dict, espeak: str, tmp: Path, folder: Path) -> None:
    wav = tmp / f"{Path(clip['file']).stem}.wav"
    cmd = [
        espeak,
        "-v",
        f"{clip['accent']}+{clip['variant']}",
        "-s",
        str(clip["speed"]),
        "-p",
        str(clip["pitch"]),
        "-w",
        str(wav),
        clip["say"],
    ]  # -w, not --stdout: a piped header has a bogus frame count
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not wav.exists():
        raise SoraError(f"spoken_words: `{' '.join(cmd)}` failed ({done.stderr.strip()})")
    speech = decode_wav(wav.read_bytes(), RATE, str(wav))
    wav.unlink()
    rng = np.random.default_rng(clip["seed"])
    speech = np.concatenate(
        [np.zeros(int(clip["lead_in"] * RATE), np.float32), speech, np.zeros(int(0.1 * RATE), np.float32)]
    )
    if clip["snr"] is not None:
        power = float(np.mean(speech**2)) + 1e-12
        noise = (
            rng.standard_normal(len(speech)).astype(np.float32) if clip["noise"] == "white" else _pink(len(speech), rng)
        )
        speech = speech + noise * np.sqrt(power / 10 ** (clip["snr"] / 10))
    peak = float(np.abs(speech).max()) or 1.0
    out = folder / clip["file"]
    out.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(out, RATE, (speech / max(peak, 1.0) * 32767).astype(np.int16))


def require_espeak() -> str:
    return require_program("espeak-ng", "espeak-ng", "spoken_words")


def fetch_spoken_words(folder: Path) -> dict:
    espeak = require_espeak()
    clips = _plan(_transcriptions(espeak))
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: _synthesise(c, espeak, Path(tmp), folder), clips))
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
        for clip in clips:
            f.write(json.dumps({k: v for k, v in clip.items() if k != "seed"}) + "\n")
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout.strip()
    return {"generator": version, "clips": len(clips), "sample_rate": RATE, "seed": SEED}


def load_spoken_words(folder: Path, cfg: DataConfig, task: str) -> Raw:
    kind = "digits" if task == "ctc" else "word"
    meta_path = folder / "metadata.jsonl"
    rows = [(i, json.loads(line)) for i, line in enumerate(open(meta_path, encoding="utf-8"), 1)]
    tables = {}
    for split in ACCENTS:
        chosen = [(i, r) for i, r in rows if r["kind"] == kind and r["split"] == split]
        waves = [decode_wav((folder / r["file"]).read_bytes(), cfg.sample_rate, r["file"]) for _, r in chosen]
        columns = {
            "audio": waves,
            **{k: [r[k] for _, r in chosen] for k in ("text", "label", "accent", "variant", "speed", "pitch", "file")},
            "snr": [CLEAN if r["snr"] is None else r["snr"] for _, r in chosen],  # a column to report metrics by
            "noise": [r["noise"] or CLEAN for _, r in chosen],
        }
        tables[split] = Table(columns, [f"{meta_path}:{i}" for i, _ in chosen], {"sample_rate": cfg.sample_rate})
    if task == "ctc":
        return Raw(tables, {"audio": "audio", "text": "text"}, DIGITS)
    return Raw(tables, {"audio": "audio", "label": "label"}, WORDS)


SPOKEN_WORDS = Builtin(
    name="spoken_words",
    task="classification",
    tasks=("classification", "ctc"),
    description="espeak-ng speech: 20 words (keyword spotting) and digit strings (ctc); 8 accents, "
    "noise 20-0 dB; test accents unheard in training",
    origin="generated with espeak-ng (Debian package espeak-ng)",
    fetch_into=fetch_spoken_words,
    load=load_spoken_words,
    layout=LAYOUT,
    requires=require_espeak,
)
