"""A model's particles as a table and as a graph (what ``sora inspect`` and ``sora run`` show).

Every attention head is its own row; a feed-forward layer is one row that counts its neurons
(``layers.3.ffn.neuron.0`` .. ``.neuron.{F-1}``), since listing thousands of neurons helps no one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table
from torch import nn

from sora.particles import FeedForward, MultiHeadAttention


@dataclass
class Particle:
    name: str
    kind: str
    params: int
    shape: str

    def as_dict(self) -> dict:
        return asdict(self)


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _shape(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"{module.in_features}->{module.out_features}"
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        return f"{tuple(module.normalized_shape)[0]}"
    if isinstance(module, nn.Conv2d):
        return f"{module.in_channels}x{module.kernel_size[0]}x{module.kernel_size[1]}->{module.out_channels}"
    weight = getattr(module, "weight", None)
    return "x".join(map(str, weight.shape)) if isinstance(weight, nn.Parameter) else ""


def particles(model: nn.Module) -> list[Particle]:
    rows: list[Particle] = []
    seen: set[int] = set()  # tied parameters are counted once, where they first appear
    covered: list[str] = []  # attention and feed-forward particles list their own insides
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in covered):
            continue
        if isinstance(module, MultiHeadAttention):
            covered.append(name)
            rows.extend(_attention_rows(name, module, seen))
        elif isinstance(module, FeedForward):
            covered.append(name)
            params = _count_new(module, seen)
            rows.append(Particle(name, f"feedforward/{module.activation}", params, f"neurons={module.d_ff}"))
        elif _is_leaf_particle(module, model):
            params = _count_new(module, seen, recurse=True)
            rows.append(Particle(name, getattr(module, "kind", type(module).__name__.lower()), params, _shape(module)))
    return rows


def _is_leaf_particle(module: nn.Module, model: nn.Module) -> bool:
    """Parameterised modules not inside an attention or feed-forward particle (those have own rows)."""
    if module is model or isinstance(module, (nn.ModuleList, nn.Dropout)) or getattr(module, "kind", "") == "hook":
        return False
    return any(True for _ in module.parameters(recurse=False))


def _count_new(module: nn.Module, seen: set[int], recurse: bool = True) -> int:
    total = 0
    for p in module.parameters(recurse=recurse):
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _attention_rows(name: str, attn: MultiHeadAttention, seen: set[int]) -> list[Particle]:
    d_model, dh, bias = attn.q_proj.in_features, attn.head_dim, attn.q_proj.bias is not None
    per_head = 4 * d_model * dh + (3 * dh if bias else 0)
    for p in attn.parameters():
        seen.add(id(p))
    kind = "cross_attention" if attn.cross else "attention"
    rows = [Particle(name, kind, sum(p.numel() for p in attn.parameters()), f"heads={attn.n_heads} dh={dh}")]
    for h in range(attn.n_heads):
        rows.append(Particle(f"{name}.head.{h}", "head", per_head, f"q,k,v {d_model}->{dh}, o {dh}->{d_model}"))
    return rows


def summary(model: nn.Module) -> dict:
    attn = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    ffn = [m for m in model.modules() if isinstance(m, FeedForward)]
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "heads": sum(m.n_heads for m in attn),
        "neurons": sum(m.d_ff for m in ffn),
        "layers": len(ffn),
    }


def print_particles(model: nn.Module, console: Console, title: str = "particles") -> None:
    """The particle table, then the totals: the first thing a person reads about a model."""
    table = Table(title=title, show_lines=False)
    for column, justify in (("name", "left"), ("kind", "left"), ("params", "right"), ("shape", "left")):
        table.add_column(column, justify=justify)
    for p in particles(model):
        style = "dim" if p.kind == "head" else None
        table.add_row(p.name, p.kind, f"{p.params:,}", p.shape, style=style)
    console.print(table)
    s = summary(model)
    console.print(
        f"total: {s['parameters']:,} parameters, {s['layers']} layers, "
        f"{s['heads']} attention heads, {s['neurons']:,} feed-forward neurons"
    )


def block_parts(block: nn.Module) -> list[str]:
    """A block's particles in order, sized: ``["attn: 6 heads", "cross_attn: 2 heads", "ffn: 768 neurons"]``."""
    parts = [f"attn: {block.attn.n_heads} heads"]
    if block.cross_attn is not None:
        parts.append(f"cross_attn: {block.cross_attn.n_heads} heads")
    return parts + [f"ffn: {block.ffn.d_ff} neurons"]


def mermaid(model: nn.Module) -> str:
    """The particle graph as a Mermaid flowchart: inputs flow top to bottom through each block."""
    lines = ["flowchart TD"]

    def node(key: str, label: str) -> str:
        lines.append(f'    {key}["{label}"]')
        return key

    def chain(prefix: str, stack: nn.Module, start: str) -> str:
        embed = stack.embed
        source = "tokens" if embed.tokens is not None else "patches"
        key_prefix = prefix.replace(".", "_")
        prev = node(f"{key_prefix}embed", f"{prefix}embed.{source} + position ({stack.config.position})")
        lines.append(f"    {start} --> {prev}")
        for i, block in enumerate(stack.layers):
            key = f"{key_prefix}L{i}"
            lines.append(f'    subgraph {key}["{prefix}layers.{i}"]')
            inner = []
            for j, label in enumerate(block_parts(block)):
                inner.append(f"{key}_{j}")
                lines.append(f'        {key}_{j}["{label}"]')
            lines.append("    " + " --> ".join(inner))
            lines.append("    end")
            lines.append(f"    {prev} --> {key}")
            prev = key
        if stack.final_norm is not None:
            norm_key = f"{key_prefix}final_norm"
            node(norm_key, f"{prefix}final_norm")
            lines.append(f"    {prev} --> {norm_key}")
            prev = norm_key
        return prev

    node("input", "input")
    if hasattr(model, "encoder") and hasattr(model, "decoder"):
        enc = chain("encoder.", model.encoder, "input")
        node("target", "target so far")
        dec = chain("decoder.", model.decoder, "target")
        for i, block in enumerate(model.decoder.layers):
            lines.append(f"    {enc} -. memory .-> decoder_L{i}")
        last = dec
    else:
        last = chain("", model, "input")
    if getattr(model, "head", None) is not None:  # a feature extractor (arch encoder) has none
        head = node("head", f"head: {type(model.head).__name__}")
        lines.append(f"    {last} --> {head}")
    return "\n".join(lines) + "\n"
