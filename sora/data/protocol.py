"""What prepared data offers the stages above it: the task layer, training, analysis and compression.

``Prepared`` (sora.data.prepared) names ``TaskData`` as a base and so satisfies it; any stand-in (a
test's synthetic data) can do the same, or provide the members itself. The stages read these members
directly rather than probing a data object with ``getattr``, so what they rely on is written down here.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

from tokenizers import Tokenizer
from torch import Tensor

from sora.errors import SoraError


class TaskData(Protocol):
    """Prepared data as its users see it: the task, its labels and tokenizer, and batches of each split."""

    task: str  # classification | lm | seq2seq | ctc
    labels: list[str] | None  # class names (ctc: its symbols, the blank first); None for lm and seq2seq
    tokenizer: Tokenizer | None  # None for images and audio
    name: str  # what messages, metrics.json and provenance call the data
    config: Any  # the DataConfig it was prepared from (recorded in a model's provenance)

    def preprocessing(self) -> dict[str, Any] | None:
        """How raw images or audio become model inputs (sora.data.preprocess); None for text."""
        ...

    def model_fields(self) -> dict[str, Any]:
        """The ModelConfig keys this data decides (input kind, vocabulary, classes, special ids, sizes)."""
        ...

    def loader(self, split: str, batch_size: int, **options: Any) -> Iterable[dict[str, Tensor]]:
        """Batches of ``split`` in the batch contract (sora.data.datasets); options as ``Prepared.loader``."""
        ...

    def num_batches(self, split: str, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
        """Batches per rank that ``loader`` gives for ``split``."""
        ...

    def column(self, split: str, name: str) -> list:
        """One value per example of ``split`` from the source's column ``name`` (an accent, a noise level),
        for metrics by group; data that keeps no such column says so."""
        raise SoraError(f"{self.name or 'the data'}: keeps no column '{name}' to group by")

    def extra_splits(self) -> list[str]:
        """Test splits besides train, validation and test that the data brings (squad: the SQuADShifts sets),
        scored after the test split; none by default."""
        return []

    def has_split(self, split: str) -> bool:
        """Whether ``split`` exists and holds an example: a stage picks its split with this (validation
        if there is one, else train), so a missing split is an answer here, not an error."""
        try:
            return self.num_batches(split, 1) > 0
        except (SoraError, KeyError, ValueError):
            return False
