"""The ``encoder`` assembly (a feature extractor without a head) that bare pretrained bodies import as."""

import torch

from sora.models import build_model, load_model, mermaid, particles, save_model
from tests.helpers import tiny

STACK = {"n_layers": 2, "n_heads": 4, "d_ff": 64}


def test_encoder_returns_hidden_states_and_pools_real_positions_only(tmp_path):
    model = build_model(tiny("encoder", encoder=STACK, pooling="mean")).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [5, 6, 7, 8, 9]])
    with torch.no_grad():
        hidden = model(ids)
        pooled = model.pooled(ids)
        alone = model.pooled(ids[:1, :3])
    assert hidden.shape == (2, 5, 32) and pooled.shape == (2, 32)
    assert torch.allclose(pooled[0], alone[0], atol=1e-5)  # padding changes nothing
    save_model(model, tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "m")(ids), hidden)


def test_encoder_has_no_head_in_its_particles_or_graph():
    model = build_model(tiny("encoder", encoder=STACK, pooling="cls"))
    assert model.head is None
    assert not any(p.name.startswith("head") for p in particles(model))
    graph = mermaid(model)
    assert "layers.1" in graph and "head:" not in graph


def test_image_encoder_keeps_a_cls_token():
    model = build_model(
        tiny("encoder", input="image", encoder=STACK, image={"size": 8, "channels": 1, "patch": 4})
    ).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 5, 32)  # 4 patches + CLS
