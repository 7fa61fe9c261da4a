"""The particle table (sora.models.anatomy.print_particles): what ``sora inspect`` and ``sora run`` print first."""

from rich.console import Console

from sora.models import build_model, particles, summary
from sora.models.anatomy import print_particles
from tests.helpers import tiny


def test_the_table_has_a_row_per_particle_and_the_totals():
    model = build_model(tiny(encoder={"n_layers": 2, "n_heads": [4, 0], "d_ff": [64, 16]}))  # a pruned shape
    console = Console(record=True, width=200)
    print_particles(model, console, title="tiny")
    lines = console.export_text().splitlines()
    names = [line.split("│")[1].strip() for line in lines if line.count("│") == 5]
    assert names == [p.name for p in particles(model)]  # every particle, in order
    assert "layers.0.attn.head.3" in names and "layers.1.attn.head.0" not in names
    s = summary(model)
    assert lines[-1] == (f"total: {s['parameters']:,} parameters, 2 layers, 4 attention heads, 80 feed-forward neurons")
