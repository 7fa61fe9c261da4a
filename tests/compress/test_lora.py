"""LoRA: only the adapters train; the adapter saves alone; merged = unmerged outputs."""

import pytest
import torch
import torch.nn.functional as F

from sora.compress import LoRAConfig, add_lora, load_adapter, merge, save_adapter
from sora.compress.lora import LoRALinear, lora_layers
from sora.errors import SoraError
from sora.models import build_model
from tests.helpers import tiny


def _train_a_little(model, steps=5):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, labels = torch.randint(3, 50, (8, 6)), torch.randint(0, 3, (8,))
    for _ in range(steps):
        F.cross_entropy(model(ids), labels).backward()
        opt.step()
        opt.zero_grad()


def test_only_adapters_train_and_the_count_is_reported():
    model = build_model(tiny(activation="swiglu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    counts = add_lora(model, LoRAConfig(rank=2, targets=["attn", "ffn"]))
    per_layer = 4 * 2 * (32 + 32) + 2 * 2 * (32 + 64) + 2 * (64 + 32)  # q,k,v,out + fc_in,fc_gate + fc_out
    assert counts["trainable"] == 2 * per_layer
    assert counts["total"] == sum(p.numel() for p in before.values()) + counts["trainable"]
    _train_a_little(model)
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad
        else:
            assert not p.requires_grad
            assert torch.equal(p, before[name.replace(".base.", ".")]), name
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if n.endswith("lora_B"))


@pytest.mark.parametrize("targets", [["q", "v"], ["attn"], ["ffn"], ["layers.1.attn", "layers.0.ffn.fc_out"]])
def test_merged_outputs_equal_unmerged(targets):
    model = build_model(tiny("decoder_lm")).eval()
    add_lora(model, LoRAConfig(rank=4, alpha=8, targets=targets))
    with torch.no_grad():  # as if trained: a fresh adapter is a no-op, which would prove nothing
        for layer in lora_layers(model).values():
            layer.lora_B.normal_(0, 0.1)
    ids = torch.randint(3, 50, (2, 9))
    unmerged = model(ids)
    merge(model)
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())
    assert isinstance(model.layers[1].attn.v_proj, torch.nn.Linear)
    torch.testing.assert_close(model(ids), unmerged, atol=1e-5, rtol=0)


def test_adapter_saves_alone_and_loads_into_a_fresh_base(tmp_path):
    torch.manual_seed(1)
    base_state = build_model(tiny()).state_dict()
    model = build_model(tiny())
    model.load_state_dict(base_state)
    add_lora(model, LoRAConfig(rank=2, targets=["q", "v", "ffn"]))
    _train_a_little(model)
    model.eval()
    save_adapter(model, tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter.json", "adapter.safetensors"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter" / "adapter.safetensors"), "pt") as f:
        assert all("lora_" in k for k in f.keys())  # the base weights are not in it
    fresh = build_model(tiny())
    fresh.load_state_dict(base_state)
    load_adapter(fresh, tmp_path / "adapter")
    fresh.eval()
    ids = torch.randint(3, 50, (3, 7))
    torch.testing.assert_close(fresh(ids), model(ids))


def test_bad_targets_and_mismatched_bases_fail_clearly(tmp_path):
    model = build_model(tiny())
    with pytest.raises(SoraError, match="lora.targets: 'query' is neither a role"):
        add_lora(model, LoRAConfig(targets=["query"]))
    with pytest.raises(SoraError, match="'layers.0.attn_norm' is neither .* an attention or a feed-forward particle"):
        add_lora(model, LoRAConfig(targets=["layers.0.attn_norm"]))
    add_lora(model, LoRAConfig(rank=2))
    assert isinstance(model.layers[0].attn.q_proj, LoRALinear)
    with pytest.raises(SoraError, match="already has LoRA"):
        add_lora(model, LoRAConfig(rank=2))
    save_adapter(model, tmp_path / "a")
    with pytest.raises(SoraError, match="different model config"):
        load_adapter(build_model(tiny(d_model=64)), tmp_path / "a")
