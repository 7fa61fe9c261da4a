"""Data a classifier can learn from, checked before training rather than discovered after it.

All-empty texts or a single class still "train" (the loss falls to zero on one class), and only
the baseline fails, at the end; the user gets a model that cannot mean anything. Refuse such data
up front, naming the file and the column.
"""

from __future__ import annotations

import numpy as np

from sora.data import Prepared
from sora.errors import SoraError


def require_trainable(data: Prepared) -> None:
    """Refuse classification data whose training split has no text at all, or fewer than two classes."""
    train = data.splits.get("train") if data.task == "classification" else None
    if train is None or not len(train):
        return
    columns = data.config.columns
    texts = getattr(train, "texts", None)
    if data.modality == "text" and texts is not None and not any(str(t).strip() for t in texts):
        raise SoraError(
            f"{data.name}: column '{columns.get('text', 'text')}': every text of the training split is "
            "empty; a classifier needs text to learn from"
        )
    present = np.unique(train.labels)
    if len(present) < 2:
        only = data.labels[int(present[0])] if data.labels else str(present[0])
        raise SoraError(
            f"{data.name}: column '{columns.get('label', 'label')}': the training split has one class "
            f"({only!r}); a classifier needs at least two"
        )
