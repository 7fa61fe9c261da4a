"""Cross-attention as word alignment: which source words each target word reads while it is produced.

Rows are target positions, labelled with the token that position *produces* (the reference word, or the
model's own next word), so a row is "while writing this word, the decoder looked at ...". Columns are the
source tokens. Each row of a head's cross-attention is a distribution over the source (rows sum to 1),
and so is the head average drawn beside the heads: black is 1, so a diffuse head reads pale and a sharp one dark.

Tokens are shown as a person reads them: byte-level BPE pieces decoded to text (``ĠpequeÃ±a`` ->
``pequeña``), a piece that continues a word marked ``##`` as WordPiece marks it, specials kept.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sora.analyze.figures import new_figure, save_png

WORD_START = ("Ġ", "▁")  # byte-level BPE and SentencePiece mark a piece that starts a word
SPECIAL = re.compile(r"^(\[[A-Z]+\]|<\|?[a-z/]+\|?>)$")
WIDTH = 12  # characters of a token label


def alignment_matrices(layers: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Per cross-attention layer (H, T, S): the heads as given and their average (T, S)."""
    return {"heads": list(layers), "mean": [layer.mean(axis=0) for layer in layers]}


def readable_tokens(tokenizer, ids: list[int]) -> list[str]:
    """Each id as a short readable string (see the module docstring); ids themselves without a tokenizer."""
    if tokenizer is None:
        return [str(i) for i in ids]
    kind = type(tokenizer.model).__name__  # BPE, WordPiece, WordLevel, Unigram
    return [_short(_readable(tokenizer, i, kind)) for i in ids]


def _readable(tokenizer, i: int, kind: str) -> str:
    token = tokenizer.id_to_token(i)
    if token is None:
        return str(i)
    if SPECIAL.match(token) or kind == "WordPiece":
        return token
    if kind == "WordLevel":
        return "␣" if token == " " else token
    text = tokenizer.decode([i], skip_special_tokens=False) or token
    if token.startswith(WORD_START):
        return text.strip() or "␣"
    return "##" + text  # a piece inside a word


def _short(token: str) -> str:
    return token if len(token) <= WIDTH else token[: WIDTH - 1] + "…"


def alignment_figure(alignment: dict, title: str, path: Path) -> str:
    """Rows: cross-attention layers; columns: each head, then their average. Source words along x, target
    words along y (on the outer panels)."""
    heads, mean, layers = alignment["heads"], alignment["mean"], alignment["layers"]
    source, target = alignment["source"], alignment["target"]
    n_rows, n_heads = len(heads), max(h.shape[0] for h in heads)
    T, S = len(target), len(source)
    cell = float(np.clip(0.13 * max(T, S) + 0.8, 1.8, 4.2))
    fig = new_figure((n_heads + 1) * cell * max(S / max(T, S), 0.5) + 1.2, n_rows * cell + 1.2)
    axes = fig.subplots(n_rows, n_heads + 1, squeeze=False)
    size = 7 if max(T, S) <= 24 else 5
    for i in range(n_rows):
        layer = layers[i].removeprefix("decoder.")
        panels = [(heads[i][h], f"{layer} h{h}") for h in range(heads[i].shape[0])]
        panels += [(None, "")] * (n_heads - heads[i].shape[0]) + [(mean[i], f"{layer} mean")]
        for j, (matrix, label) in enumerate(panels):
            ax = axes[i, j]
            if matrix is None:
                ax.axis("off")
                continue
            ax.imshow(matrix, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            ax.set_title(label, fontsize=7, weight="bold" if j == n_heads else None)
            ax.set_yticks(range(T), target if j == 0 else [], fontsize=size)
            ax.set_xticks(range(S), source if i == n_rows - 1 else [], fontsize=size, rotation=90)
    fig.suptitle(title + "  (rows: target words, columns: source words; black: all of a row's attention)", fontsize=9)
    return save_png(fig, path)
