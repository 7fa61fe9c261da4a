"""BERT (MiniLM included) and RoBERTa: post-norm encoders with an embedding LayerNorm.

Two facts make the mapping exact rather than approximate:
- **Token types.** BERT adds ``token_type_embeddings[type]`` to every token. With two or more rows
  (sentence pairs) the table becomes Sora's segment embedding (``embed.segment``, ``segments: 2``) as
  it is, and export writes it back. A single row (RoBERTa) is a constant vector and is folded into the
  learned position table: ``pos'[t] = pos[t] + type[0]``.
- **RoBERTa's positions** start at ``padding_idx + 1`` (real token t sits at position
  ``t + padding_idx + 1``), so the table is sliced on import and re-padded on export.
  Sora pads on the right, so every real token keeps its position.

Classification heads: BERT's pooler (dense+tanh on [CLS]) plus classifier, and RoBERTa's
``classifier.dense`` + tanh + ``classifier.out_proj``, are both ``ClassifierHead(pooler=True)``.
"""

from __future__ import annotations

import torch
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


def _layer_pairs(i: int) -> list[tuple[str, str]]:
    s, h = f"layers.{i}.", f"encoder.layer.{i}."
    parts = [
        ("attn.q_proj", "attention.self.query"),
        ("attn.k_proj", "attention.self.key"),
        ("attn.v_proj", "attention.self.value"),
        ("attn.out_proj", "attention.output.dense"),
        ("attn_norm", "attention.output.LayerNorm"),
        ("ffn.fc_in", "intermediate.dense"),
        ("ffn.fc_out", "output.dense"),
        ("ffn_norm", "output.LayerNorm"),
    ]
    return [pair for a, b in parts for pair in linear_pairs(s + a, h + b)]


def token_types_record(types: Tensor) -> dict:
    """What meta.json says of the token-type table: kept whole as ``embed.segment`` (two rows or more), or its
    single row folded into the positions. Export checks it: older imports dropped the second row."""
    if types.shape[0] > 1:
        return {"rows": int(types.shape[0]), "kept_as": "embed.segment"}
    return {"rows": 1, "folded_row": 0, "dropped_max_diff": 0.0}


class BertFamily(Family):
    model_type, prefix, name = "bert", "bert.", "BERT"
    architectures = {
        "BertModel": "encoder",
        "BertForSequenceClassification": "encoder_classifier",
        "BertForTokenClassification": "token_classifier",
        "BertForQuestionAnswering": "span_extractor",
        "BertForMaskedLM": "encoder",
        "BertForPreTraining": "encoder",
    }
    dropped_heads = {
        "BertForMaskedLM": "the masked-LM head",
        "BertForPreTraining": "the masked-LM and next-sentence heads",
    }
    exports = {
        "encoder": "BertModel",
        "encoder_classifier": "BertForSequenceClassification",
        "token_classifier": "BertForTokenClassification",
        "span_extractor": "BertForQuestionAnswering",
    }
    type_vocab_size = 2

    def position_offset(self, pad_id: int) -> int:
        return 0

    # -- import ---------------------------------------------------------------------------------
    def import_checkpoint(self, hf: dict, ck: Checkpoint, arch: str, pooling: str) -> Imported:
        src = ck.config_source
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise SoraError(
                f"{src}: position_embedding_type={hf['position_embedding_type']!r} is not supported (only 'absolute')"
            )
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            raise SoraError(f"{src}: a {self.name} used as a decoder (is_decoder/add_cross_attention) is not supported")
        d, heads, n_layers = hf_ints(hf, src, "hidden_size", "num_attention_heads", "num_hidden_layers")
        if d % heads:
            raise SoraError(f"{src}: hidden_size {d} is not divisible by num_attention_heads {heads}")
        pad_id = hf.get("pad_token_id")
        pad_id = 0 if pad_id is None else int(pad_id)
        offset = self.position_offset(pad_id)
        max_len = hf_ints(hf, src, "max_position_embeddings")[0] - offset
        config = dict(
            arch=arch,
            input="text",
            vocab_size=hf_ints(hf, src, "vocab_size")[0],
            d_model=d,
            head_dim=d // heads,
            encoder={"n_layers": n_layers, "n_heads": heads, "d_ff": hf_ints(hf, src, "intermediate_size")[0]},
            activation=hf_activation(hf, "hidden_act", src),
            norm="layernorm",
            norm_eps=hf.get("layer_norm_eps", 1e-12),
            norm_position="post",
            embed_norm=True,
            position="learned",
            max_len=max_len,
            dropout=hf.get("hidden_dropout_prob", 0.1),
            attn_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            pooling=pooling,
            pad_id=pad_id,
        )
        notes, meta = [], {}
        state = {"embed.tokens.weight": ck.take("embeddings.word_embeddings.weight")}
        table = ck.take("embeddings.position_embeddings.weight")
        if table.shape != (max_len + offset, d):
            raise SoraError(
                f"{ck.source}: does not match config.json: tensor 'embeddings.position_embeddings.weight' "
                f"is {tuple(table.shape)} in the file, ({max_len + offset}, {d}) by its "
                "max_position_embeddings and hidden_size"
            )
        position = table[offset : offset + max_len]
        if ck.has("embeddings.token_type_embeddings.weight"):
            types = ck.take("embeddings.token_type_embeddings.weight")
            meta["token_types"] = token_types_record(types)
            if types.shape[0] > 1:
                config["segments"] = int(types.shape[0])
                state["embed.segment.weight"] = types
                notes.append(f"{types.shape[0]} token types kept as embed.segment (text pairs)")
            else:
                position = position + types[0]
                notes.append("the one token-type embedding folded into embed.position")
        state["embed.position.weight"] = position
        take_pairs(ck, linear_pairs("embed.norm", "embeddings.LayerNorm"), state)
        for i in range(n_layers):
            take_pairs(ck, _layer_pairs(i), state)

        labels = None
        if arch == "encoder_classifier":
            config.update(n_classes=n_labels(hf, src), pooler=True)
            take_pairs(ck, self._classifier_pairs(), state, top=True)
            labels = hf_labels(hf)
        elif arch == "token_classifier":
            config.update(n_classes=n_labels(hf, src))
            take_pairs(ck, linear_pairs("head.classifier", "classifier"), state, top=True)
            labels = hf_labels(hf)
        elif arch == "span_extractor":
            take_pairs(ck, linear_pairs("head.proj", "qa_outputs"), state, top=True)
        if arch != "encoder_classifier" and ck.has("pooler.dense.weight"):
            ck.take("pooler.dense.weight"), ck.take("pooler.dense.bias")  # explained here, not reported as unknown
            notes.append(
                f"{self.name}'s pooler (dense+tanh on the first token) is not carried over: "
                + (
                    "a span head reads every token"
                    if arch == "span_extractor"
                    else "a feature extractor returns hidden states; pool them with config.pooling"
                )
            )
        return Imported(ModelConfig.model_validate(config), state, labels, notes, meta)

    def _classifier_pairs(self) -> list[tuple[str, str]]:
        return linear_pairs("head.pooler", self.prefix + "pooler.dense") + linear_pairs("head.classifier", "classifier")

    # -- export ---------------------------------------------------------------------------------
    def export_problems(self, config: ModelConfig) -> list[str]:
        problems = common_export_problems(config, self.name)
        if config.arch not in self.exports:
            problems.append(f"{self.name} has no transformers class for a {config.arch} (export the body: --body-only)")
        if config.input != "text":
            problems.append(f"{self.name} reads tokens, this model {config.input}")
        if config.norm_position != "post":
            problems.append(f"{self.name} is post-norm; this model is pre-norm")
        if not config.embed_norm:
            problems.append(f"{self.name} normalises its embeddings; this model does not (embed_norm: false)")
        if config.arch == "encoder_classifier":
            if config.pooling != "cls" or not config.pooler or config.pooler_activation != "tanh":
                problems.append(
                    f"{self.name}'s sequence classifier pools the first token through dense+tanh; this "
                    f"model pools by {config.pooling}"
                    + (" with a pooler" if config.pooler else " without one")
                    + (f" ({config.pooler_activation})" if config.pooler else "")
                )
        return problems

    def export_checkpoint(
        self, config: ModelConfig, state: dict[str, Tensor], labels: list[str] | None, base: dict
    ) -> tuple[dict, dict[str, Tensor]]:
        enc = config.encoder
        offset = self.position_offset(config.pad_id)
        hf = dict(base)
        hf.update(
            model_type=self.model_type,
            architectures=[self.exports[config.arch]],
            vocab_size=config.vocab_size,
            hidden_size=config.d_model,
            num_hidden_layers=enc.n_layers,
            num_attention_heads=enc.heads()[0],
            intermediate_size=enc.widths()[0],
            hidden_act=ACTIVATIONS_OUT[config.activation],
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.attn_dropout,
            max_position_embeddings=config.max_len + offset,
            type_vocab_size=max(config.segments, self.type_vocab_size),
            layer_norm_eps=config.norm_eps,
            pad_token_id=config.pad_id,
            position_embedding_type="absolute",
        )
        hf.setdefault("initializer_range", 0.02)
        prefix = "" if config.arch == "encoder" else self.prefix
        d = config.d_model
        position = state["embed.position.weight"]
        out = {
            prefix + "embeddings.word_embeddings.weight": state["embed.tokens.weight"],
            prefix + "embeddings.position_embeddings.weight": torch.cat([position.new_zeros(offset, d), position]),
            prefix + "embeddings.token_type_embeddings.weight": self._token_types(config, state, position),
        }
        give_pairs(state, linear_pairs("embed.norm", "embeddings.LayerNorm"), out, prefix)
        for i in range(enc.n_layers):
            give_pairs(state, _layer_pairs(i), out, prefix)
        if config.arch == "encoder_classifier":
            give_pairs(state, self._classifier_pairs(), out)
            hf.update(label_config(config, labels))
        elif config.arch == "token_classifier":
            give_pairs(state, linear_pairs("head.classifier", "classifier"), out)
            hf.update(label_config(config, labels))
        elif config.arch == "span_extractor":
            give_pairs(state, linear_pairs("head.proj", "qa_outputs"), out)
            hf["num_labels"] = 2
        return hf, out

    def _token_types(self, config: ModelConfig, state: dict[str, Tensor], position: Tensor) -> Tensor:
        """The segment table as it is; without one, zeros (a folded row 0 already sits in the positions)."""
        if config.segments:
            return state["embed.segment.weight"]
        return position.new_zeros(self.type_vocab_size, config.d_model)


class RobertaFamily(BertFamily):
    model_type, prefix, name = "roberta", "roberta.", "RoBERTa"
    architectures = {
        "RobertaModel": "encoder",
        "RobertaForSequenceClassification": "encoder_classifier",
        "RobertaForTokenClassification": "token_classifier",
        "RobertaForMaskedLM": "encoder",
    }
    dropped_heads = {"RobertaForMaskedLM": "the masked-LM head"}
    exports = {
        "encoder": "RobertaModel",
        "encoder_classifier": "RobertaForSequenceClassification",
        "token_classifier": "RobertaForTokenClassification",
    }
    type_vocab_size = 1

    def position_offset(self, pad_id: int) -> int:
        return pad_id + 1  # positions count from padding_idx + 1

    def _classifier_pairs(self) -> list[tuple[str, str]]:
        return linear_pairs("head.pooler", "classifier.dense") + linear_pairs("head.classifier", "classifier.out_proj")
