"""Hugging Face checkpoints in and out: BERT (MiniLM included), RoBERTa, DistilBERT, GPT-2 and ViT.

``import_hf`` reads a local Hugging Face folder (config.json + safetensors, or pytorch_model.bin
read with ``weights_only=True``) and builds the same network out of Sora particles, carrying the
tokenizer over; ``export_hf`` writes a Sora model folder back as a folder transformers loads;
``load_pretrained`` starts a recipe's model from pretrained weights. transformers itself is only
imported to check parity (sora.interop.verify), never to read or write weights.
"""

from sora.interop.exporter import export_hf
from sora.interop.importer import FAMILIES, ImportResult, import_hf, import_to_folder, supported
from sora.interop.pretrained import Pretrained, body_as_encoder, load_pretrained, read_pretrained, with_pretrained
from sora.interop.sources import PACKAGED, resolve_source

__all__ = [
    "FAMILIES",
    "ImportResult",
    "PACKAGED",
    "Pretrained",
    "body_as_encoder",
    "export_hf",
    "import_hf",
    "import_to_folder",
    "load_pretrained",
    "read_pretrained",
    "resolve_source",
    "supported",
    "with_pretrained",
]
