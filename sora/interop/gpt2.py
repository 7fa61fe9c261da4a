"""GPT-2: a pre-norm decoder with learned positions, a final LayerNorm and a tied LM head.

GPT-2 stores its projections as ``Conv1D``, whose weight is (in, out): the transpose of a
Linear's. Its attention projects Q, K and V with one fused ``c_attn`` (d -> 3d), split here
into Sora's ``q_proj``, ``k_proj`` and ``v_proj`` (head-major, the same layout). The default
activation ``gelu_new`` is the tanh approximation (Sora's ``gelu_tanh``).
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
    linear_pairs,
    take_pairs,
)
from sora.models import ModelConfig


def _norm_pairs(i: int) -> list[tuple[str, str]]:
    return linear_pairs(f"layers.{i}.attn_norm", f"h.{i}.ln_1") + linear_pairs(f"layers.{i}.ffn_norm", f"h.{i}.ln_2")


def _conv_pairs(i: int) -> list[tuple[str, str]]:  # Conv1D weights: transposed
    return [
        (f"layers.{i}.attn.out_proj", f"h.{i}.attn.c_proj"),
        (f"layers.{i}.ffn.fc_in", f"h.{i}.mlp.c_fc"),
        (f"layers.{i}.ffn.fc_out", f"h.{i}.mlp.c_proj"),
    ]


EMBEDDING = [
    ("embed.tokens.weight", "wte.weight"),
    ("embed.position.weight", "wpe.weight"),
    *linear_pairs("final_norm", "ln_f"),
]


class Gpt2Family(Family):
    model_type, prefix, name = "gpt2", "transformer.", "GPT-2"
    architectures = {"GPT2Model": "decoder_lm", "GPT2LMHeadModel": "decoder_lm"}
    exports = {"decoder_lm": "GPT2LMHeadModel"}

    def import_checkpoint(self, hf: dict, ck: Checkpoint, arch: str, pooling: str) -> Imported:
        src = ck.config_source
        for key, ok in (
            ("scale_attn_by_inverse_layer_idx", False),
            ("add_cross_attention", False),
            ("scale_attn_weights", True),
        ):
            if bool(hf.get(key, ok)) != ok:
                raise SoraError(
                    f"{src}: {key}={hf.get(key)!r} is not supported (Sora's attention scales by 1/sqrt(dh))"
                )
        d, heads, n_layers, vocab = hf_ints(hf, src, "n_embd", "n_head", "n_layer", "vocab_size")
        if d % heads:
            raise SoraError(f"{src}: n_embd {d} is not divisible by n_head {heads}")
        tied = hf.get("tie_word_embeddings", True)
        special = {k: hf.get(f"{k}_token_id") for k in ("bos", "eos")}
        config = dict(
            arch="decoder_lm",
            input="text",
            vocab_size=vocab,
            d_model=d,
            head_dim=d // heads,
            decoder={"n_layers": n_layers, "n_heads": heads, "d_ff": hf.get("n_inner") or 4 * d},
            activation=hf_activation(hf, "activation_function", src),
            norm="layernorm",
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            norm_position="pre",
            embed_norm=False,
            position="learned",
            max_len=hf_ints(hf, src, "n_positions")[0],
            dropout=hf.get("resid_pdrop", 0.1),
            attn_dropout=hf.get("attn_pdrop", 0.1),
            tie_embeddings=bool(tied),
            # only ids inside the vocabulary mean anything (tiny test models keep GPT-2's 50256)
            **{f"{k}_id": v for k, v in special.items() if isinstance(v, int) and 0 <= v < vocab},
        )
        state: dict[str, Tensor] = {}
        take_pairs(ck, EMBEDDING, state)
        for i in range(n_layers):
            take_pairs(ck, _norm_pairs(i), state)
            qkv_w, qkv_b = ck.take(f"h.{i}.attn.c_attn.weight"), ck.take(f"h.{i}.attn.c_attn.bias")  # (d, 3d), (3d,)
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                state[f"layers.{i}.attn.{name}.weight"] = qkv_w[:, j * d : (j + 1) * d].t().contiguous()
                state[f"layers.{i}.attn.{name}.bias"] = qkv_b[j * d : (j + 1) * d]
            for sora_name, hf_name in _conv_pairs(i):
                state[f"{sora_name}.weight"] = ck.take(f"{hf_name}.weight").t().contiguous()
                state[f"{sora_name}.bias"] = ck.take(f"{hf_name}.bias")
        if tied:
            state["head.proj.weight"] = state["embed.tokens.weight"]
            if ck.has("lm_head.weight", top=True):
                ck.take("lm_head.weight", top=True)  # a saved copy of the tied embedding
        else:
            state["head.proj.weight"] = ck.take("lm_head.weight", top=True)
        notes = [] if tied else ["untied LM head carried over"]
        return Imported(ModelConfig.model_validate(config), state, None, notes)

    def export_problems(self, config: ModelConfig) -> list[str]:
        if config.arch != "decoder_lm":
            return [f"{self.name} is a decoder language model; this model is {config.arch}"]
        problems = common_export_problems(config, self.name, stack="decoder")
        if config.norm_position != "pre" or config.embed_norm:
            problems.append(
                f"{self.name} is pre-norm without an embedding norm; this model is "
                f"{config.norm_position}-norm" + (" with one" if config.embed_norm else "")
            )
        return problems

    def export_checkpoint(
        self, config: ModelConfig, state: dict[str, Tensor], labels: list[str] | None, base: dict
    ) -> tuple[dict, dict[str, Tensor]]:
        dec, d = config.decoder, config.d_model
        hf = dict(base)
        for key in ("n_ctx",):  # old configs; n_positions is what counts
            hf.pop(key, None)
        hf.update(
            model_type=self.model_type,
            architectures=[self.exports["decoder_lm"]],
            vocab_size=config.vocab_size,
            n_embd=d,
            n_layer=dec.n_layers,
            n_head=dec.heads()[0],
            n_inner=dec.widths()[0],
            activation_function=ACTIVATIONS_OUT[config.activation],
            layer_norm_epsilon=config.norm_eps,
            n_positions=config.max_len,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.attn_dropout,
            tie_word_embeddings=config.tie_embeddings,
            scale_attn_weights=True,
            scale_attn_by_inverse_layer_idx=False,
            add_cross_attention=False,
            bos_token_id=config.bos_id,
            eos_token_id=config.eos_id,
        )
        hf.setdefault("initializer_range", 0.02)
        p = self.prefix
        out: dict[str, Tensor] = {}
        give_pairs(state, EMBEDDING, out, p)
        for i in range(dec.n_layers):
            give_pairs(state, _norm_pairs(i), out, p)
            out[f"{p}h.{i}.attn.c_attn.weight"] = torch.cat(
                [state[f"layers.{i}.attn.{n}.weight"].t() for n in ("q_proj", "k_proj", "v_proj")], dim=1
            )
            out[f"{p}h.{i}.attn.c_attn.bias"] = torch.cat(
                [state[f"layers.{i}.attn.{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")]
            )
            for sora_name, hf_name in _conv_pairs(i):
                out[f"{p}{hf_name}.weight"] = state[f"{sora_name}.weight"].t()
                out[f"{p}{hf_name}.bias"] = state[f"{sora_name}.bias"]
        if not config.tie_embeddings:
            out["lm_head.weight"] = state["head.proj.weight"]
        return hf, out
