"""Tiny randomly initialised transformers models of every supported family, saved to temporary folders.

Weights are perturbed after transformers' own initialisation (which sets every LayerNorm to 1 and
0, and would hide a swapped norm), so each tensor is distinct and parity means something.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="interop parity tests compare against transformers")
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

WORDS = (
    "the a film is good bad dull plot slow strong sequel never loses its nerve beautifully shot "
    "performances carry through middle hour utterly forgettable , . !"
).split()
SENTENCES = ["The film is good.", "A dull, slow plot!", "Never dull", "The performances carry the slow middle hour."]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
VOCAB += [f"##x{i}" for i in range(99 - len(VOCAB))]  # 99 entries: the tiny models' vocab_size

TEXT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
CONFIGS = {
    "bert": lambda: transformers.BertConfig(**TEXT, max_position_embeddings=40, hidden_act="gelu"),
    "roberta": lambda: transformers.RobertaConfig(
        **TEXT, max_position_embeddings=42, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1
    ),
    "distilbert": lambda: transformers.DistilBertConfig(
        vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=40
    ),
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=40, bos_token_id=98, eos_token_id=98
    ),
    "vit": lambda: transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
    ),
}


def make_hf_model(cls_name: str, model_type: str, *, seed: int = 0, **config_overrides):
    torch.manual_seed(seed)
    config = CONFIGS[model_type]()
    for key, value in config_overrides.items():
        setattr(config, key, value)
    if cls_name.endswith(("SequenceClassification", "ImageClassification", "TokenClassification")):
        config.num_labels = 3
        config.id2label = {0: "neg", 1: "neutral", 2: "pos"}
        config.label2id = {"neg": 0, "neutral": 1, "pos": 2}
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def text_batch(pad_id: int = 0, vocab: int = 99, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths, padded on the right (never using pad_id inside a row)."""
    g = torch.Generator().manual_seed(seed)
    lengths = [12, 7, 3, 10]
    ids = torch.full((len(lengths), max(lengths)), pad_id, dtype=torch.long)
    valid = torch.zeros_like(ids, dtype=torch.bool)
    for i, n in enumerate(lengths):
        row = torch.randint(0, vocab - 1, (n,), generator=g)
        ids[i, :n] = row + (row >= pad_id).long()
        valid[i, :n] = True
    return ids, valid
