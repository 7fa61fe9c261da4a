"""Every hook point holds what its declaration says: the shape comment beside ``HookPoint()`` is the spec.

Each test hooks every hook point of a tiny model of one assembly, runs it, and checks that every point
fired, each with the shape its comment states (B, T, S, d, H, dh, F bound to the model and the batch,
chosen all different so that a swapped dimension shows), and that docs/particles.md says the same.
"""

import inspect
import math
import re
from pathlib import Path

import pytest
import torch

from sora.analyze import hook_points, hooks, run_with_cache
from sora.compress import QuantizeConfig, quantize_model
from sora.models import build_model
from sora.particles import FeedForward, HookPoint, MultiHeadAttention, attention_mask
from tests.helpers import tiny

DECLARED = re.compile(r"self\.(hook_\w+) = HookPoint\(\)\s*# \(([^)]*)\)")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "particles.md"
B = 2


def declared_shapes(cls: type) -> dict[str, tuple[str, ...]]:
    """hook name -> its declared dimensions, from the comments in the source of ``cls`` (and its bases)."""
    shapes: dict[str, tuple[str, ...]] = {}
    for klass in cls.__mro__:
        if klass.__module__.startswith("sora."):
            for name, dims in DECLARED.findall(inspect.getsource(klass)):
                shapes.setdefault(name, tuple(d.strip() for d in dims.split(",")))
    return shapes


def expected_shape(model, hook: str, lengths: dict[str, int], cached: int = 0) -> tuple[int, ...]:
    """The shape a hook point's comment promises, in this model on a batch whose stacks have ``lengths``."""
    owner_path, _, name = hook.rpartition(".")
    owner = model.get_submodule(owner_path)
    dims = declared_shapes(type(owner)).get(name)
    assert dims is not None, f"{hook}: {type(owner).__name__} declares {name} without a (shape) comment"
    stack = next((p for p in ("encoder.", "decoder.") if owner_path.startswith(p)), "")
    T = lengths[stack]
    size = {
        "B": B,
        "T": T,
        "S": lengths["encoder."] if ".cross_attn" in owner_path else cached + T,
        "d": model.config.d_model,
    }
    if isinstance(owner, MultiHeadAttention):
        size.update(H=owner.n_heads, dh=owner.head_dim)
    if isinstance(owner, FeedForward):
        size["F"] = owner.d_ff
    return tuple(size[d] for d in dims)


def fired_shapes(model, *inputs, **kwargs) -> dict[str, list[tuple[int, ...]]]:
    """Run ``model`` with every hook point hooked; each point's shapes, once per time it fired."""
    fired: dict[str, list[tuple[int, ...]]] = {}
    record = {name: (lambda t, n: fired.setdefault(n, []).append(tuple(t.shape))) for name in hook_points(model)}
    with torch.no_grad(), hooks(model, record):
        model(*inputs, **kwargs)
    return fired


def audio(arch: str, **overrides):
    return tiny(arch, input="audio", audio={"n_mels": 16, "patch_frames": 4}, **overrides)


# (config, inputs, the positions of each stack): B=2, T=9 tokens, d=32, H=4, dh=8, F=64 (48 with SwiGLU)
CASES = {
    "text-classifier": (tiny("encoder_classifier"), (torch.randint(3, 50, (B, 9)),), {"": 9}),
    "image-classifier": (
        tiny("encoder_classifier", input="image", image={"size": 8, "patch": 2}),
        (torch.randn(B, 1, 8, 8),),
        {"": 16 + 1},
    ),
    "audio-classifier": (audio("encoder_classifier"), (torch.randn(B, 16, 40),), {"": 10 + 1}),
    "audio-ctc": (audio("token_classifier"), (torch.randn(B, 16, 40),), {"": 10}),
    "tagger-sinusoidal": (
        tiny("token_classifier", position="sinusoidal", norm_position="post"),
        (torch.randint(3, 50, (B, 9)),),
        {"": 9},
    ),
    "decoder-rotary-swiglu": (
        tiny(
            "decoder_lm",
            position="rotary",
            activation="swiglu",
            norm="rmsnorm",
            decoder={"n_layers": 2, "n_heads": 4, "d_ff": 48},
        ),
        (torch.randint(3, 50, (B, 9)),),
        {"": 9},
    ),
    "decoder-adaptive-span": (
        tiny("decoder_lm", adaptive_span={"max_span": 16, "ramp": 4}),
        (torch.randint(3, 50, (B, 9)),),
        {"": 9},
    ),
    "seq2seq": (
        tiny("seq2seq"),
        (torch.randint(3, 50, (B, 7)), torch.randint(3, 50, (B, 5))),
        {"encoder.": 7, "decoder.": 5},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_hook_point_fires_with_its_declared_shape(case):
    config, inputs, lengths = CASES[case]
    torch.manual_seed(0)
    model = build_model(config).eval()
    fired = fired_shapes(model, *inputs)
    assert set(fired) == set(hook_points(model)), f"never fired: {sorted(set(hook_points(model)) - set(fired))}"
    for hook, shapes in fired.items():
        assert set(shapes) == {expected_shape(model, hook, lengths)}, hook


def test_int8_particles_declare_their_hook_points_too():
    torch.manual_seed(0)
    model = quantize_model(build_model(tiny("decoder_lm")), QuantizeConfig(min_weights=0, min_side=0))
    fired = fired_shapes(model, torch.randint(3, 50, (B, 9)))
    assert "Int8Embedding" in type(model.get_submodule("embed.tokens")).__name__
    assert set(fired) == set(hook_points(model))
    for hook, shapes in fired.items():
        assert set(shapes) == {expected_shape(model, hook, {"": 9})}, hook


def test_while_decoding_keys_and_values_include_the_cache():
    """One new token after a prompt of 6: queries cover T=1 position, keys and values S=7."""
    torch.manual_seed(0)
    model = build_model(tiny("decoder_lm", position="rotary")).eval()
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(3, 50, (B, 6)), cache=cache)
    fired = fired_shapes(model, torch.randint(3, 50, (B, 1)), cache=cache)
    assert fired["layers.0.attn.hook_k"] == [(B, 4, 7, 8)] and fired["layers.0.attn.hook_q"] == [(B, 4, 1, 8)]
    for hook, shapes in fired.items():
        assert set(shapes) == {expected_shape(model, hook, {"": 1}, cached=6)}, hook


@pytest.mark.parametrize("position", ["rotary", "learned"])
def test_the_pattern_is_the_softmax_of_the_hooked_queries_and_keys(position):
    """q and k are taken at the same moment (both rotated), so the pattern follows from them exactly,
    and a cache of patterns (no hook on the pattern: SDPA runs) leaves the logits bit-identical."""
    torch.manual_seed(0)
    model = build_model(tiny("decoder_lm", position=position)).eval()
    ids = torch.randint(3, 50, (B, 9))
    batch = {"inputs": ids[:, :-1], "labels": ids[:, 1:]}
    attn = "layers.1.attn"
    names = [f"{attn}.hook_q", f"{attn}.hook_k", f"{attn}.hook_pattern"]
    with torch.no_grad():
        plain = model(batch["inputs"])
        logits, tapped = run_with_cache(model, batch, "lm", names)
        model.get_submodule(attn).explicit = True
        _, explicit = run_with_cache(model, batch, "lm", names)
    q, k = explicit[f"{attn}.hook_q"], explicit[f"{attn}.hook_k"]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    mask = attention_mask(None, q_len=8, k_len=8, causal=True, dtype=scores.dtype, device=scores.device)
    assert torch.equal((scores + mask).softmax(-1), explicit[f"{attn}.hook_pattern"])
    assert torch.equal(tapped[f"{attn}.hook_pattern"], explicit[f"{attn}.hook_pattern"])
    assert torch.equal(logits, plain)


def _doc_rows() -> list[tuple[str, dict[str, tuple[str, ...]]]]:
    """(source file, hook name -> dimensions) for every row of the particle table."""
    rows = []
    for line in DOCS.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`"):
            continue
        file = cells[1].strip("`")
        path = f"sora/{file}" if "/" in file else f"sora/particles/{file}"
        hooks_in_row = {}
        for names, dims in re.findall(r"((?:`hook_\w+`(?:, )?)+) \(([^)]*)\)", cells[3]):
            for name in re.findall(r"`(hook_\w+)`", names):
                hooks_in_row[name] = tuple(d.strip() for d in dims.split(","))
        rows.append((path, hooks_in_row))
    return rows


def test_docs_table_states_the_shapes_the_code_declares():
    root = DOCS.parents[1]
    rows = _doc_rows()
    assert len(rows) >= 12
    documented: dict[str, dict[str, tuple[str, ...]]] = {}
    for path, row in rows:
        documented.setdefault(path, {}).update(row)
    for path, row in documented.items():
        source = (root / path).read_text()
        declared = {name: tuple(d.strip() for d in dims.split(",")) for name, dims in DECLARED.findall(source)}
        assert row == declared, path
    particle_files = {
        f"sora/particles/{p.name}"
        for p in (root / "sora" / "particles").glob("*.py")
        if "HookPoint()" in p.read_text() and p.name != "hookpoint.py"
    }
    assert particle_files <= set(documented), f"not in docs/particles.md: {particle_files - set(documented)}"


def test_a_hook_point_is_an_identity_that_reports_whether_it_is_heard():
    point = HookPoint()
    x = torch.randn(3, 4)
    assert point(x) is x and not point.active
    handle = point.register_forward_hook(lambda m, i, o: None)
    assert point.active
    handle.remove()
    assert not point.active
