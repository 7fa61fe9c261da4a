"""DistilBERT: BERT without token types or a pooler, LayerNorm eps fixed at 1e-12.

Its sequence classifier is ``pre_classifier`` + ReLU + ``classifier`` on the first token:
``ClassifierHead(pooler=True, pooler_activation="relu")``. Sinusoidal position tables
(``sinusoidal_pos_embds``) are stored in the checkpoint like learned ones and import as a table.
"""

from __future__ import annotations

from torch import Tensor

from sora.errors import SoraError
from sora.interop.checkpoint import Checkpoint
from sora.interop.family import (
    ACTIVATIONS_OUT,
    Family,
    Imported,
    common_export_problems,
    give_pairs,
    hf_activation,
    hf_ints,
    hf_labels,
    label_config,
    linear_pairs,
    n_labels,
    take_pairs,
)
from sora.models import ModelConfig

EPS = 1e-12  # hard-coded in transformers' DistilBERT


def _layer_pairs(i: int) -> list[tuple[str, str]]:
    s, h = f"layers.{i}.", f"transformer.layer.{i}."
    parts = [
        ("attn.q_proj", "attention.q_lin"),
        ("attn.k_proj", "attention.k_lin"),
        ("attn.v_proj", "attention.v_lin"),
        ("attn.out_proj", "attention.out_lin"),
        ("attn_norm", "sa_layer_norm"),
        ("ffn.fc_in", "ffn.lin1"),
        ("ffn.fc_out", "ffn.lin2"),
        ("ffn_norm", "output_layer_norm"),
    ]
    return [pair for a, b in parts for pair in linear_pairs(s + a, h + b)]


def _embedding_pairs() -> list[tuple[str, str]]:
    return [
        ("embed.tokens.weight", "embeddings.word_embeddings.weight"),
        ("embed.position.weight", "embeddings.position_embeddings.weight"),
        *linear_pairs("embed.norm", "embeddings.LayerNorm"),
    ]


CLASSIFIER = linear_pairs("head.pooler", "pre_classifier") + linear_pairs("head.classifier", "classifier")


class DistilBertFamily(Family):
    model_type, prefix, name = "distilbert", "distilbert.", "DistilBERT"
    architectures = {
        "DistilBertModel": "encoder",
        "DistilBertForSequenceClassification": "encoder_classifier",
        "DistilBertForTokenClassification": "token_classifier",
        "DistilBertForMaskedLM": "encoder",
    }
    dropped_heads = {"DistilBertForMaskedLM": "the masked-LM head"}
    exports = {
        "encoder": "DistilBertModel",
        "encoder_classifier": "DistilBertForSequenceClassification",
        "token_classifier": "DistilBertForTokenClassification",
    }

    def import_checkpoint(self, hf: dict, ck: Checkpoint, arch: str, pooling: str) -> Imported:
        src = ck.config_source
        d, heads, n_layers = hf_ints(hf, src, "dim", "n_heads", "n_layers")
        if d % heads:
            raise SoraError(f"{src}: dim {d} is not divisible by n_heads {heads}")
        pad_id = hf.get("pad_token_id")
        config = dict(
            arch=arch,
            input="text",
            vocab_size=hf_ints(hf, src, "vocab_size")[0],
            d_model=d,
            head_dim=d // heads,
            encoder={"n_layers": n_layers, "n_heads": heads, "d_ff": hf_ints(hf, src, "hidden_dim")[0]},
            activation=hf_activation(hf, "activation", src),
            norm="layernorm",
            norm_eps=EPS,
            norm_position="post",
            embed_norm=True,
            position="learned",
            max_len=hf_ints(hf, src, "max_position_embeddings")[0],
            dropout=hf.get("dropout", 0.1),
            attn_dropout=hf.get("attention_dropout", 0.1),
            pooling=pooling,
            pad_id=0 if pad_id is None else int(pad_id),
        )
        state: dict[str, Tensor] = {}
        take_pairs(ck, _embedding_pairs(), state)
        for i in range(n_layers):
            take_pairs(ck, _layer_pairs(i), state)
        labels = None
        if arch == "encoder_classifier":
            config.update(n_classes=n_labels(hf, src), pooler=True, pooler_activation="relu")
            take_pairs(ck, CLASSIFIER, state, top=True)
            labels = hf_labels(hf)
        elif arch == "token_classifier":
            config.update(n_classes=n_labels(hf, src))
            take_pairs(ck, linear_pairs("head.classifier", "classifier"), state, top=True)
            labels = hf_labels(hf)
        return Imported(ModelConfig.model_validate(config), state, labels)

    def export_problems(self, config: ModelConfig) -> list[str]:
        problems = common_export_problems(config, self.name)
        if config.input != "text":
            problems.append(f"{self.name} reads tokens, this model {config.input}")
        if config.norm_position != "post" or not config.embed_norm:
            problems.append(f"{self.name} is post-norm with an embedding LayerNorm; this model is not")
        if config.norm_eps != EPS:
            problems.append(f"{self.name}'s LayerNorm eps is fixed at {EPS}; this model uses {config.norm_eps}")
        if config.arch == "encoder_classifier" and (
            config.pooling != "cls" or not config.pooler or config.pooler_activation != "relu"
        ):
            problems.append(
                f"{self.name}'s sequence classifier pools the first token through dense+ReLU; "
                f"this model pools by {config.pooling}"
            )
        return problems

    def export_checkpoint(
        self, config: ModelConfig, state: dict[str, Tensor], labels: list[str] | None, base: dict
    ) -> tuple[dict, dict[str, Tensor]]:
        enc = config.encoder
        hf = dict(base)
        hf.update(
            model_type=self.model_type,
            architectures=[self.exports[config.arch]],
            vocab_size=config.vocab_size,
            dim=config.d_model,
            n_layers=enc.n_layers,
            n_heads=enc.heads()[0],
            hidden_dim=enc.widths()[0],
            activation=ACTIVATIONS_OUT[config.activation],
            dropout=config.dropout,
            attention_dropout=config.attn_dropout,
            max_position_embeddings=config.max_len,
            pad_token_id=config.pad_id,
            sinusoidal_pos_embds=False,
        )
        hf.setdefault("initializer_range", 0.02)
        prefix = "" if config.arch == "encoder" else self.prefix
        out: dict[str, Tensor] = {}
        give_pairs(state, _embedding_pairs(), out, prefix)
        for i in range(enc.n_layers):
            give_pairs(state, _layer_pairs(i), out, prefix)
        if config.arch == "encoder_classifier":
            give_pairs(state, CLASSIFIER, out)
            hf.update(label_config(config, labels))
        elif config.arch == "token_classifier":
            give_pairs(state, linear_pairs("head.classifier", "classifier"), out)
            hf.update(label_config(config, labels))
        return hf, out
