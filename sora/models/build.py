"""Config -> model."""

from pathlib import Path

from torch import nn

from sora.errors import SoraError, first_line
from sora.models.adapters import apply_adapters
from sora.models.config import ModelConfig
from sora.models.decoder import DecoderLM
from sora.models.encoder import Encoder, EncoderClassifier, SpanExtractor, TokenClassifier
from sora.models.seq2seq import Seq2Seq

ASSEMBLIES = {
    "encoder_classifier": EncoderClassifier,
    "token_classifier": TokenClassifier,
    "decoder_lm": DecoderLM,
    "seq2seq": Seq2Seq,
    "encoder": Encoder,
    "span_extractor": SpanExtractor,
}


def build_model(config: ModelConfig | dict) -> nn.Module:
    if isinstance(config, dict):
        config = ModelConfig.model_validate(config)
    model = ASSEMBLIES[config.arch](config)
    if config.adapter is not None:  # a model trained with adapters (train.adapters) carries them
        apply_adapters(model, config.adapter)
    return model


def build_within_memory(config: ModelConfig, source: str | Path) -> nn.Module:
    """``build_model``, with a config too large to allocate (a damaged or foreign file, a vocabulary of a
    trillion) refused as one line naming ``source`` instead of the allocator's traceback."""
    try:
        return build_model(config)
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "allocate" not in str(e):
            raise
        raise SoraError(f"{source}: the model it describes does not fit in memory ({first_line(e)})") from None
