"""ViT: a pre-norm encoder over image patches, with a CLS token and a final LayerNorm.

The patch embedding is the same strided convolution as Sora's ``ImagePatchEmbedding``; the CLS
vector is prepended before the learned positions (N + 1 of them) are added. The image classifier
reads the CLS position after the final norm, with no pooler. ``ViTModel``'s own pooler
(dense+tanh on CLS) is not carried over by a feature extractor.
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


def _layer_pairs(i: int) -> list[tuple[str, str]]:
    s, h = f"layers.{i}.", f"encoder.layer.{i}."
    parts = [
        ("attn.q_proj", "attention.attention.query"),
        ("attn.k_proj", "attention.attention.key"),
        ("attn.v_proj", "attention.attention.value"),
        ("attn.out_proj", "attention.output.dense"),
        ("attn_norm", "layernorm_before"),
        ("ffn.fc_in", "intermediate.dense"),
        ("ffn.fc_out", "output.dense"),
        ("ffn_norm", "layernorm_after"),
    ]
    return [pair for a, b in parts for pair in linear_pairs(s + a, h + b)]


EMBEDDING = [
    *linear_pairs("embed.patches.proj", "embeddings.patch_embeddings.projection"),
    *linear_pairs("final_norm", "layernorm"),
]


class VitFamily(Family):
    model_type, prefix, name = "vit", "vit.", "ViT"
    architectures = {"ViTModel": "encoder", "ViTForImageClassification": "encoder_classifier"}
    exports = {"encoder": "ViTModel", "encoder_classifier": "ViTForImageClassification"}

    def import_checkpoint(self, hf: dict, ck: Checkpoint, arch: str, pooling: str) -> Imported:
        src = ck.config_source
        d, heads, n_layers, d_ff, patch = hf_ints(
            hf, src, "hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "patch_size"
        )
        size = hf.get("image_size", 224)
        if not isinstance(size, int):
            raise SoraError(f"{src}: image_size={size!r}: only square images (one integer) are supported")
        if size % patch or d % heads:
            raise SoraError(
                f"{src}: patch_size {patch} must divide image_size {size} and num_attention_heads "
                f"{heads} must divide hidden_size {d}"
            )
        if not hf.get("qkv_bias", True):
            raise SoraError(f"{src}: qkv_bias=false is not supported (Sora's layers all have biases or none)")
        config = dict(
            arch=arch,
            input="image",
            image={"size": size, "channels": hf.get("num_channels", 3), "patch": patch},
            d_model=d,
            head_dim=d // heads,
            encoder={"n_layers": n_layers, "n_heads": heads, "d_ff": d_ff},
            activation=hf_activation(hf, "hidden_act", src),
            norm="layernorm",
            norm_eps=hf.get("layer_norm_eps", 1e-12),
            norm_position="pre",
            embed_norm=False,
            position="learned",
            max_len=(size // patch) ** 2 + 1,
            dropout=hf.get("hidden_dropout_prob", 0.0),
            attn_dropout=hf.get("attention_probs_dropout_prob", 0.0),
            pooling="cls",  # the CLS token exists in every ViT
        )
        state = {
            "embed.patches.cls": ck.take("embeddings.cls_token"),  # (1, 1, d)
            "embed.position.weight": ck.take("embeddings.position_embeddings")[0],
        }  # (N+1, d)
        take_pairs(ck, EMBEDDING, state)
        for i in range(n_layers):
            take_pairs(ck, _layer_pairs(i), state)
        labels, notes = None, []
        if arch == "encoder_classifier":
            config.update(n_classes=n_labels(hf, src))
            take_pairs(ck, linear_pairs("head.classifier", "classifier"), state, top=True)
            labels = hf_labels(hf)
        elif ck.has("pooler.dense.weight"):
            ck.take("pooler.dense.weight"), ck.take("pooler.dense.bias")  # explained here, not reported as unknown
            notes.append(
                "ViT's pooler (dense+tanh on CLS) is not carried over: a feature extractor returns hidden states"
            )
        return Imported(ModelConfig.model_validate(config), state, labels, notes)

    def export_problems(self, config: ModelConfig) -> list[str]:
        problems = common_export_problems(config, self.name)
        if config.input != "image":
            problems.append(f"{self.name} reads images, this model {config.input}")
        if config.arch not in self.exports:
            problems.append(f"{self.name} has no {config.arch} head")
        if config.norm_position != "pre" or config.embed_norm:
            problems.append(f"{self.name} is pre-norm without an embedding norm; this model is not")
        if config.pooling != "cls":
            problems.append(f"{self.name} always has a CLS token; this model has none (pooling: {config.pooling})")
        if config.pooler:
            problems.append(f"{self.name}'s image classifier has no pooler; this model has one")
        if config.image is not None and config.image.stem != "patch":
            problems.append(f"{self.name} embeds each patch on its own; this model has a {config.image.stem} stem")
        return problems

    def export_checkpoint(
        self, config: ModelConfig, state: dict[str, Tensor], labels: list[str] | None, base: dict
    ) -> tuple[dict, dict[str, Tensor]]:
        enc, im = config.encoder, config.image
        hf = dict(base)
        hf.update(
            model_type=self.model_type,
            architectures=[self.exports[config.arch]],
            hidden_size=config.d_model,
            num_hidden_layers=enc.n_layers,
            num_attention_heads=enc.heads()[0],
            intermediate_size=enc.widths()[0],
            hidden_act=ACTIVATIONS_OUT[config.activation],
            layer_norm_eps=config.norm_eps,
            image_size=im.size,
            patch_size=im.patch,
            num_channels=im.channels,
            qkv_bias=True,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.attn_dropout,
        )
        hf.setdefault("initializer_range", 0.02)
        prefix = "" if config.arch == "encoder" else self.prefix
        out = {
            prefix + "embeddings.cls_token": state["embed.patches.cls"],
            prefix + "embeddings.position_embeddings": state["embed.position.weight"][None],
        }
        give_pairs(state, EMBEDDING, out, prefix)
        for i in range(enc.n_layers):
            give_pairs(state, _layer_pairs(i), out, prefix)
        if config.arch == "encoder_classifier":
            give_pairs(state, linear_pairs("head.classifier", "classifier"), out)
            hf.update(label_config(config, labels))
        return hf, out
