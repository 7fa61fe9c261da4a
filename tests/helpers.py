"""Tiny configs shared by the tests: every assembly and every embedder, small enough to run in ms."""

import torch
import torch.nn.functional as F

from sora.models import ModelConfig


def tiny(arch: str = "encoder_classifier", **overrides) -> ModelConfig:
    base = dict(arch=arch, d_model=32, max_len=64, dropout=0.0)
    if arch in ("encoder_classifier", "token_classifier"):
        base.update(encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64}, n_classes=3)
    if arch == "decoder_lm":
        base.update(decoder={"n_layers": 2, "n_heads": 4, "d_ff": 64})
    if arch == "seq2seq":
        base.update(encoder={"n_layers": 2, "n_heads": 4, "d_ff": 64},
                    decoder={"n_layers": 2, "n_heads": 4, "d_ff": 64, "cross_heads": 2}, bos_id=1, eos_id=2)
    if overrides.get("input", "text") == "text":
        base["vocab_size"] = 50
    base.update(overrides)
    return ModelConfig.model_validate(base)


def run_cli(capsys, *args):
    """Run `sora ARGS...` in-process; return (exit code, stdout, stderr with rich's wrapping folded)."""
    from sora.cli import main

    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, " ".join(out.err.split())


def fit_classifier(model, data, epochs: int, lr: float = 3e-3):
    """Train a tiny classifier on ``data``'s train split (AdamW, batches of 16); returns it in eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for epoch in range(epochs):
        for batch in data.loader("train", 16, shuffle=True, epoch=epoch):
            F.cross_entropy(model(batch["inputs"], batch["valid"]), batch["labels"]).backward()
            opt.step()
            opt.zero_grad()
    return model.eval()
