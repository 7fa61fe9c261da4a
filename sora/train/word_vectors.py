"""Word vectors from the training texts alone, as the token embedding's start (``train.pretrain.objective: ppmi``).

Count which tokens occur near which (up to ``window`` positions apart, nearer pairs counting more), weight each
pair by its positive pointwise mutual information, and keep the ``d_model`` strongest directions of that matrix
(a truncated SVD): tokens used alike get vectors that lie close (Levy & Goldberg 2014 show skip-gram word2vec
factorises the same matrix, implicitly). It takes seconds, where masked-LM pretraining of a small encoder on ten
thousand snippets stayed at predicting the commonest tokens for its first thousand steps.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from scipy.sparse.linalg import svds
from torch import nn


def cooccurrence(sequences: list[np.ndarray], vocab_size: int, window: int) -> sparse.csr_matrix:
    """(V, V) counts of token pairs within ``window`` of each other in one sequence, weighted 1 / distance."""
    ids = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])  # (N,) every token in a row
    sentence = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])  # (N,) which sequence
    rows, cols, weights = [], [], []
    for distance in range(1, window + 1):
        same = sentence[:-distance] == sentence[distance:]  # pairs that do not cross a sequence boundary
        left, right = ids[:-distance][same], ids[distance:][same]
        rows += [left, right]
        cols += [right, left]
        weights += [np.full(2 * len(left), 1.0 / distance)]
    counts = sparse.coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(vocab_size, vocab_size)
    )
    return counts.tocsr()  # duplicates summed


def ppmi(counts: sparse.csr_matrix, alpha: float = 0.75) -> sparse.csr_matrix:
    """Positive PMI of each counted pair, with the context distribution smoothed by ``alpha`` (word2vec's 0.75),
    which keeps rare contexts from dominating."""
    counts = counts.tocoo()
    total = counts.sum()
    word = np.asarray(counts.sum(axis=1)).ravel() / total  # P(w)
    context = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    context /= context.sum()  # P_alpha(c)
    pmi = np.log(counts.data / total) - np.log(word[counts.row]) - np.log(context[counts.col])
    keep = pmi > 0
    return sparse.coo_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape).tocsr()


def ppmi_vectors(sequences: list[np.ndarray], vocab_size: int, dim: int, window: int = 4) -> np.ndarray:
    """(V, dim) vectors U sqrt(S) of the truncated SVD of the PPMI matrix; tokens never seen get zeros."""
    counts = cooccurrence(sequences, vocab_size, window)
    matrix = ppmi(counts)
    k = min(dim, min(matrix.shape) - 1)
    u, s, _ = svds(matrix.astype(np.float64), k=k, random_state=0)
    vectors = np.zeros((vocab_size, dim))
    vectors[:, :k] = u * np.sqrt(s)
    vectors[np.asarray(counts.sum(axis=1)).ravel() == 0] = 0  # unseen: not even the SVD's rounding noise
    return vectors


def init_token_embedding(embedding: nn.Parameter, sequences: list[np.ndarray], window: int = 4) -> dict:
    """Overwrite the rows of tokens the training texts use with their PPMI vectors, scaled to the mean row norm
    the embedding has now (the scale the model was designed around); other rows keep their random start."""
    vocab_size, dim = embedding.shape
    vectors = ppmi_vectors(sequences, vocab_size, dim, window)
    used = np.linalg.norm(vectors, axis=1) > 0
    with torch.no_grad():
        scale = embedding.norm(dim=1).mean().item() / np.linalg.norm(vectors[used], axis=1).mean()
        rows = torch.from_numpy(np.flatnonzero(used))
        embedding[rows] = torch.from_numpy(vectors[used] * scale).to(embedding.dtype)
    return {"objective": "ppmi", "tokens": int(used.sum()), "window": window, "dim": dim}
