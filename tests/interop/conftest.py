"""Fixtures for the interop tests: tiny transformers models saved to temporary folders (see hf_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.hf_models import VOCAB, make_hf_model


@pytest.fixture
def hf_folder(tmp_path):
    """save(cls_name, model_type, **overrides) -> (folder, transformers model)."""

    count = iter(range(1000))

    def save(cls_name: str, model_type: str, *, vocab_txt: bool = False, **overrides) -> tuple[Path, object]:
        model = make_hf_model(cls_name, model_type, **overrides)
        folder = tmp_path / f"{cls_name}-hf-{next(count)}"
        model.save_pretrained(folder)
        if vocab_txt:
            (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
        return folder, model

    return save
