"""Assemblies of particles: encoder classifier, token classifier, decoder LM, seq2seq."""

from sora.models.anatomy import mermaid, particles, summary
from sora.models.build import build_model
from sora.models.config import ModelConfig, StackConfig
from sora.models.decoder import DecoderLM
from sora.models.encoder import Encoder, EncoderClassifier, TokenClassifier
from sora.models.folder import load_config, load_meta, load_model, load_tokenizer, save_model
from sora.models.seq2seq import Seq2Seq

__all__ = [
    "DecoderLM",
    "Encoder",
    "EncoderClassifier",
    "ModelConfig",
    "Seq2Seq",
    "StackConfig",
    "TokenClassifier",
    "build_model",
    "load_config",
    "load_meta",
    "load_model",
    "load_tokenizer",
    "mermaid",
    "particles",
    "save_model",
    "summary",
]
