"""How the report groups heads: by stack and kind (``decoder cross-attention``) and by layer."""


def stack_prefix_of(name: str) -> str:
    """``encoder.`` / ``decoder.`` for particles of a seq2seq model, else ``""``."""
    return next((p for p in ("encoder.", "decoder.") if name.startswith(p)), "")


def group_of(attn_path: str, cross: bool) -> str:
    prefix = stack_prefix_of(attn_path)
    kind = "cross-attention" if cross else "self-attention"
    return f"{prefix[:-1]} {kind}" if prefix else kind


def layer_label(attn_path: str) -> str:
    return attn_path.rsplit(".", 1)[0]  # layers.1.attn -> layers.1


def layer_order(name: str) -> tuple:
    """Sort key for layer particles: encoder before decoder, by index, block before attn before ffn."""
    prefix = stack_prefix_of(name)
    parts = name[len(prefix) :].split(".")
    index = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
    sub = {"": 0, "attn": 1, "cross_attn": 2, "ffn": 3}.get(".".join(parts[2:3]), 4)
    return (prefix == "decoder.", index, sub, name)
