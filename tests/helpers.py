"""Tiny configs shared by the tests: every assembly and every embedder, small enough to run in ms."""

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
