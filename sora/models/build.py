"""Config -> model."""

from torch import nn

from sora.models.config import ModelConfig
from sora.models.decoder import DecoderLM
from sora.models.encoder import Encoder, EncoderClassifier, TokenClassifier
from sora.models.seq2seq import Seq2Seq

ASSEMBLIES = {
    "encoder_classifier": EncoderClassifier,
    "token_classifier": TokenClassifier,
    "decoder_lm": DecoderLM,
    "seq2seq": Seq2Seq,
    "encoder": Encoder,
}


def build_model(config: ModelConfig | dict) -> nn.Module:
    if isinstance(config, dict):
        config = ModelConfig.model_validate(config)
    return ASSEMBLIES[config.arch](config)
