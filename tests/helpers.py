"""What the tests share: tiny configs of every assembly and embedder (small enough to run in ms), tiny saved
models and their data, an in-process runner of the ``sora`` command, snapshots of a tree, and the settings
of generated tests."""

import csv
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, settings
from torch import nn

from sora.cli import main
from sora.models import ModelConfig, build_model, save_model

FUZZ_SCALE = int(os.environ.get("SORA_FUZZ_SCALE", "1"))  # more examples everywhere, for a longer search
FILLER = "the film was a it".split()  # words that say nothing of a review's label


def tiny(arch: str = "encoder_classifier", **overrides) -> ModelConfig:
    base = dict(arch=arch, d_model=32, max_len=64, dropout=0.0)
    if arch in ("encoder_classifier", "token_classifier"):
        base.update(encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64}, n_classes=3)
    if arch == "decoder_lm":
        base.update(decoder={"n_layers": 2, "n_heads": 4, "d_ff": 64})
    if arch == "seq2seq":
        base.update(
            encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64},
            decoder={"n_layers": 2, "n_heads": 4, "d_ff": 64, "cross_heads": 2},
            bos_id=1,
            eos_id=2,
        )
    if overrides.get("input", "text") == "text":
        base["vocab_size"] = 50
    base.update(overrides)
    return ModelConfig.model_validate(base)


def sharp_lm(**overrides) -> nn.Module:
    """A ``tiny`` decoder LM in eval mode with weights scaled up: sharp next-token distributions, so that float
    error between two exact paths (cache or not, plain ops or particles) never flips a near-tie."""
    torch.manual_seed(0)
    model = build_model(tiny("decoder_lm", **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    return model


def save_tiny(folder: Path, data, arch: str = "encoder_classifier", **overrides) -> Path:
    """An untrained ``tiny`` model sized by ``data`` (vocabulary, classes, special ids), saved with the data's
    tokenizer and labels: a model folder as training leaves one, for the commands that read one."""
    model = build_model(tiny(arch, **{**data.model_fields(), **overrides})).eval()
    meta = {"labels": data.labels} if data.labels is not None else None
    return save_model(model, folder, tokenizer=data.tokenizer, meta=meta)


def write_reviews(path: Path, words: dict[str, list[str]], n: int, seed: int = 0, filler: int = 0) -> Path:
    """A CSV (text, label) of ``n`` five-word reviews, drawn with ``seed``: a label of ``words``, ``filler``
    words of FILLER, and the rest words of that label (so that the words give the label away)."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(n):
            label = rng.choice(sorted(words))
            w.writerow([" ".join(rng.choices(FILLER, k=filler) + rng.choices(words[label], k=5 - filler)), label])
    return path


@dataclass(frozen=True)
class Answer:
    """What ``sora ARGS...`` answered. Unpacks and indexes as ``(code, out, err)``."""

    code: int
    out: str
    stderr: str  # as printed, lines intact

    def __iter__(self):
        return iter((self.code, self.out, self.err))

    def __getitem__(self, index: int):
        return (self.code, self.out, self.err)[index]

    @property
    def err(self) -> str:
        """stderr with its white space folded: a phrase that rich wrapped over two lines is found whole."""
        return " ".join(self.stderr.split())

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()

    def error(self, lines: int = 1) -> str:
        """The message of an exit-2 answer: exit 2, no traceback, one ``error:`` line, and from it to the end
        at most ``lines`` lines (one per problem); what was printed before it (warnings) is not part of it."""
        assert self.code == 2, f"exit {self.code}; stderr:\n{self.stderr[-3000:]}"
        assert "Traceback" not in self.out + self.stderr, self.stderr[-3000:]
        starts = [i for i, line in enumerate(self.lines) if line.startswith("error:")]
        assert len(starts) == 1, f"expected one error, stderr:\n{self.stderr[-3000:]}"
        message = self.lines[starts[0] :]
        assert len(message) <= lines, f"expected {lines} line(s), got:\n" + "\n".join(message)
        return "\n".join(message)


def run_cli(capsys, *args) -> Answer:
    """Run ``sora ARGS...`` in-process. With ``capsys`` None (a module fixture, a forked child: no capsys
    there) only the exit code is read and the output is left to pytest."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr() if capsys is not None else None
    return Answer(code, captured.out if captured else "", captured.err if captured else "")


def snapshot(root: Path, skip: Path | None = None, *, times: bool = False) -> dict[str, tuple]:
    """Every entry under ``root`` but ``skip`` and what is in it, by path relative to ``root``: a link by its
    target (never followed), a folder by its mode (not its time: it changes when ``skip`` is made inside), a
    file by its mode and bytes, and with ``times`` its modification time too (a rewrite of the same bytes)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder) / d != skip]
        for name in dirs + files:
            path = Path(folder) / name
            if path == skip:
                continue
            stat = path.lstat()
            if path.is_symlink():
                found[str(path.relative_to(root))] = ("link", os.readlink(path))
            elif path.is_dir():
                found[str(path.relative_to(root))] = ("dir", stat.st_mode)
            else:
                found[str(path.relative_to(root))] = ("file", stat.st_mode, path.read_bytes()) + (
                    (stat.st_mtime_ns,) if times else ()
                )
    return found


def run_cli_within(capsys, root: Path, out: Path | None, *args, times: bool = False) -> Answer:
    """``run_cli``, and nothing under ``root`` outside ``out`` may change (what ``--out`` is for)."""
    before = snapshot(root, out, times=times)
    answer = run_cli(capsys, *args)
    assert snapshot(root, out, times=times) == before, f"sora {' '.join(map(str, args))} changed files outside {out}"
    return answer


def fuzz(n: int) -> settings:
    """Settings of a generated test: ``n`` examples (times $SORA_FUZZ_SCALE), the same ones on every run (no
    database of past failures either), no deadline; fixtures of the test's scope are meant to be shared."""
    return settings(
        max_examples=n * FUZZ_SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def fit_classifier(model, data, epochs: int, lr: float = 3e-3):
    """Train a tiny classifier on ``data``'s train split (AdamW, batches of 16); returns it in eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for epoch in range(epochs):
        for batch in data.loader("train", 16, shuffle=True, epoch=epoch):
            F.cross_entropy(model(batch["inputs"], batch["valid"]), batch["labels"]).backward()
            opt.step()
            opt.zero_grad()
    return model.eval()


# A recipe's model section for tiny character-level classifier runs (pipeline, report and --out tests).
TINY_RECIPE_MODEL = {
    "arch": "encoder_classifier",
    "d_model": 16,
    "vocab_size": 100,
    "max_len": 32,
    "n_classes": 2,
    "encoder": {"n_layers": 1, "n_heads": 2, "d_ff": 16},
}
