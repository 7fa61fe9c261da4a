"""Training throughput: Sora against Hugging Face transformers, same sizes, same data, same loop.

Two pairs, each trained for the same steps on the same batches with the same optimizer:
- text classification on rotten_tomatoes: Sora's encoder classifier configured as BERT (post-norm,
  embedding norm, learned positions, GELU, pooler, CLS pooling) against ``BertForSequenceClassification``;
- character language modelling on austen: Sora's decoder LM configured as GPT-2 (pre-norm, learned
  positions, tanh-GELU, tied embeddings) against ``GPT2LMHeadModel``.

Runs alternate (Sora, HF, Sora, HF, ...) and the best of ``--repeats`` counts, so a busy machine
hurts both alike. Writes ``bench/results/train_throughput.json``; asserts nothing about speed.

    python bench/train_throughput.py [--steps 40] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sora.data import DataConfig, prepare_data  # noqa: E402
from sora.models import ModelConfig, build_model  # noqa: E402

CLS = dict(d_model=128, n_layers=2, n_heads=4, d_ff=256, max_len=128, batch=32)
LM = dict(d_model=192, n_layers=4, n_heads=6, d_ff=768, block=128, batch=32)


def sora_bert(vocab: int, n_classes: int):
    return build_model(
        ModelConfig(
            arch="encoder_classifier",
            vocab_size=vocab,
            d_model=CLS["d_model"],
            max_len=CLS["max_len"],
            encoder={"n_layers": CLS["n_layers"], "n_heads": CLS["n_heads"], "d_ff": CLS["d_ff"]},
            norm_position="post",
            embed_norm=True,
            norm_eps=1e-12,
            position="learned",
            activation="gelu",
            pooler=True,
            pooling="cls",
            n_classes=n_classes,
            dropout=0.1,
            attn_dropout=0.0,
        )
    )


def hf_bert(vocab: int, n_classes: int):
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=vocab,
        hidden_size=CLS["d_model"],
        num_hidden_layers=CLS["n_layers"],
        num_attention_heads=CLS["n_heads"],
        intermediate_size=CLS["d_ff"],
        max_position_embeddings=CLS["max_len"],
        type_vocab_size=1,
        num_labels=n_classes,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config)


def sora_gpt(vocab: int):
    return build_model(
        ModelConfig(
            arch="decoder_lm",
            vocab_size=vocab,
            d_model=LM["d_model"],
            max_len=LM["block"],
            decoder={"n_layers": LM["n_layers"], "n_heads": LM["n_heads"], "d_ff": LM["d_ff"]},
            position="learned",
            activation="gelu_tanh",
            dropout=0.0,
            tie_embeddings=True,
        )
    )


def hf_gpt(vocab: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab,
        n_embd=LM["d_model"],
        n_layer=LM["n_layers"],
        n_head=LM["n_heads"],
        n_inner=LM["d_ff"],
        n_positions=LM["block"],
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu_new",
        tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)


def cls_loss(kind: str, model, batch) -> torch.Tensor:
    if kind == "sora":
        logits = model(batch["inputs"], batch["valid"])
    else:
        logits = model(input_ids=batch["inputs"], attention_mask=batch["valid"].long()).logits
    return F.cross_entropy(logits, batch["labels"])


def lm_loss(kind: str, model, batch) -> torch.Tensor:
    logits = model(batch["inputs"]) if kind == "sora" else model(input_ids=batch["inputs"]).logits
    return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())


def timed(kind: str, model, batches, loss_fn, unit) -> float:
    """Units (examples or tokens) per second over ``batches`` after two warm-up steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for batch in batches[:2]:
        loss_fn(kind, model, batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    start, done = time.perf_counter(), 0
    for batch in batches[2:]:
        loss_fn(kind, model, batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        done += unit(batch)
    return done / (time.perf_counter() - start)


def compare(name: str, make, batches, loss_fn, unit, repeats: int) -> dict:
    best = {"sora": 0.0, "hf": 0.0}
    for r in range(repeats):
        for kind in ("sora", "hf") if r % 2 == 0 else ("hf", "sora"):
            torch.manual_seed(0)
            best[kind] = max(best[kind], timed(kind, make[kind](), batches, loss_fn, unit))
            print(f"{name} {kind} run {r + 1}: {best[kind]:,.0f}/s (best so far)", flush=True)
    params = {k: sum(p.numel() for p in make[k]().parameters()) for k in make}
    return {
        "sora_per_s": round(best["sora"], 1),
        "hf_per_s": round(best["hf"], 1),
        "ratio": round(best["sora"] / best["hf"], 3),
        "parameters": params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (plus 2 warm-up)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    text = prepare_data(
        DataConfig(dataset="rotten_tomatoes", tokenizer={"kind": "bpe", "vocab_size": 8000}, max_len=CLS["max_len"])
    )
    cls_batches = list(text.loader("train", CLS["batch"], shuffle=True, seed=0))[: args.steps + 2]
    vocab, n_classes = text.vocab_size, len(text.labels)
    chars = prepare_data(
        DataConfig(
            dataset="austen",
            task="lm",
            tokenizer={"kind": "char"},
            block_size=LM["block"],
            split={"validation": 0.1, "test": 0.0},
        )
    )
    lm_batches = list(chars.loader("train", LM["batch"], shuffle=True, seed=0))[: args.steps + 2]

    results = {
        "classification": {
            "data": "rotten_tomatoes, bucketed batches of 32",
            "unit": "examples",
            **compare(
                "classification",
                {"sora": lambda: sora_bert(vocab, n_classes), "hf": lambda: hf_bert(vocab, n_classes)},
                cls_batches,
                cls_loss,
                lambda b: int(b["labels"].numel()),
                args.repeats,
            ),
        },
        "language_model": {
            "data": f"austen characters, blocks of {LM['block']} x {LM['batch']}",
            "unit": "tokens",
            **compare(
                "language_model",
                {"sora": lambda: sora_gpt(chars.vocab_size), "hf": lambda: hf_gpt(chars.vocab_size)},
                lm_batches,
                lm_loss,
                lambda b: int(b["labels"].numel()),
                args.repeats,
            ),
        },
    }
    import transformers

    payload = {
        "benchmark": "training throughput, Sora vs Hugging Face transformers (same sizes, data, loop, optimizer)",
        "machine": {
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "platform": platform.platform(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "steps_per_run": args.steps,
        "repeats": args.repeats,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(out)
    for name, r in results.items():
        print(f"{name}: sora {r['sora_per_s']:,.0f} vs hf {r['hf_per_s']:,.0f} {r['unit']}/s -> ratio {r['ratio']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
