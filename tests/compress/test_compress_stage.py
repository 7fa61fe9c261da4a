"""The compress stage end to end: importance, prune, fine-tune, quantize, evaluate, report."""

import json

import pytest
import torch

from sora.compress import CompressConfig, FinetuneConfig, LoRAConfig, PruneConfig, QuantizeConfig
from sora.compress.finetune import distillation, finetune
from sora.compress.stage import _step_fraction, compress_model
from sora.errors import SoraError
from sora.models import build_model, load_model, save_model
from sora.particles.int8 import Int8Linear
from sora.tasks import evaluate, task_for
from tests.compress.toy_data import ToyClassification
from tests.helpers import fit_classifier, tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier trained to high accuracy on the toy data, saved as a model folder."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = ToyClassification()
    model = build_model(tiny())
    fit_classifier(model, data, epochs=6)
    folder = save_model(model.eval(), tmp_path_factory.mktemp("run") / "model", meta={"labels": data.labels})
    return folder, data


def _config(**overrides):
    base = dict(
        prune=PruneConfig(heads=0.5, neurons=0.25),
        quantize=QuantizeConfig(min_weights=0, min_side=0),
        importance_batches=2,
        latency_repeats=2,
        eval_batch_size=48,
    )
    return CompressConfig(**{**base, **overrides})


def test_compress_writes_every_variant_a_report_and_a_plot(trained, tmp_path):
    folder, data = trained
    logs = []
    report = compress_model(
        folder, data, _config(finetune=FinetuneConfig(epochs=1, lr=1e-3)), tmp_path / "c", log=logs.append
    )
    out = tmp_path / "c"
    assert sorted(p.name for p in out.iterdir()) == [
        "int8",
        "plot.png",
        "pruned",
        "pruned_int8",
        "report.json",
        "report.md",
    ]
    assert json.loads((out / "report.json").read_text())["variants"].keys() == report["variants"].keys()
    assert report["int8_kernel"]["activation_bits"] in (7, 8)  # the timings depend on the CPU's int8 GEMM
    v = report["variants"]
    assert list(v) == ["fp32", "pruned", "int8", "pruned+int8"]
    assert v["pruned"]["heads"] == 4 and v["pruned"]["neurons"] == 96 and v["fp32"]["heads"] == 8
    assert v["pruned"]["parameters"] < v["fp32"]["parameters"]
    assert v["int8"]["smaller"] > 2 and v["pruned+int8"]["smaller"] > v["int8"]["smaller"]
    assert all(set(r["speedup"]) == {"1", "32"} and r["speedup"]["1"] > 0 for r in v.values())
    assert v["fp32"]["metrics"]["accuracy"] > 0.9
    for name, sub in (("pruned", "pruned"), ("int8", "int8"), ("pruned+int8", "pruned_int8")):
        reloaded = evaluate(load_model(out / sub), data.loader("test", 48), task_for(data))
        assert reloaded["accuracy"] == pytest.approx(v[name]["metrics"]["accuracy"])
    table = (out / "report.md").read_text()
    assert "| pruned+int8 |" in table and "speed-up b32" in table
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert any("fine-tune" in line for line in logs)
    assert report["pruning"]["rounds"][0]["heads_removed"] == 4


def test_iterative_pruning_reaches_the_budget_in_rounds(trained, tmp_path):
    folder, data = trained
    config = _config(
        prune=PruneConfig(heads=0.75, scope="per_layer"),
        steps=3,
        quantize=None,
        finetune=FinetuneConfig(epochs=0.5, lora=LoRAConfig(rank=2, targets=["attn"])),
    )
    report = compress_model(folder, data, config, tmp_path / "c", log=lambda _: None)
    rounds = report["pruning"]["rounds"]
    assert [r["heads_removed"] for r in rounds] == [2, 2, 2]  # 8 heads -> 6 -> 4 -> 2
    assert report["variants"]["pruned"]["heads"] == 2
    assert rounds[0]["finetune"]["trainable"]["fraction"] < 0.2  # LoRA: adapters only
    assert load_model(tmp_path / "c" / "pruned").config.encoder.n_heads == 1


def test_step_fractions_compound_to_the_budget():
    kept = 1.0
    for k in range(1, 5):
        kept *= 1 - _step_fraction(0.6, k, 4)
    assert kept == pytest.approx(0.4)


def test_scores_from_a_file_and_explicit_names(trained, tmp_path):
    folder, data = trained
    scores = {f"layers.{l}.attn.head.{h}": float(h + 4 * l) for l in range(2) for h in range(4)}
    (tmp_path / "analysis.json").write_text(json.dumps(scores))
    config = _config(
        prune=PruneConfig(
            heads=0.25, remove=["layers.1.ffn.neuron.0"], scores=str(tmp_path / "analysis.json"), normalize=False
        ),
        quantize=None,
    )
    report = compress_model(folder, data, config, tmp_path / "c", log=lambda _: None)
    assert sorted(report["pruning"]["rounds"][0]["removed"]) == [
        "layers.0.attn.head.0",
        "layers.0.attn.head.1",
        "layers.1.ffn.neuron.0",
    ]


def test_failures_leave_no_half_written_folder(trained, tmp_path):
    folder, data = trained
    bad = _config(prune=PruneConfig(remove=["layers.5.attn.head.0"]))
    with pytest.raises(SoraError, match="compress.prune.remove: unknown particle 'layers.5.attn.head.0'"):
        compress_model(folder, data, bad, tmp_path / "c", log=lambda _: None)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SoraError, match="over 100%"):
        compress_model(folder, data, {"prune": {"heads": 1.01}}, tmp_path / "c")


def test_finetune_recovers_accuracy_of_a_damaged_model(trained):
    folder, data = trained
    model = load_model(folder)
    with torch.no_grad():
        model.layers[1].ffn.fc_out.weight.mul_(-3)
    task = task_for(data, model)
    before = evaluate(model, data.loader("validation", 48), task)["accuracy"]
    info = finetune(model, data, task, FinetuneConfig(epochs=2, lr=3e-3, batch_size=16), log=lambda _: None)
    after = evaluate(model, data.loader("validation", 48), task)["accuracy"]
    assert after > before and after >= info["best"]["accuracy"] - 1e-9


def test_finetune_seed_is_a_reproducible_sample(trained):
    folder, data = trained

    def tuned(seed: int):
        model = load_model(folder)
        finetune(
            model,
            data,
            task_for(data, model),
            FinetuneConfig(epochs=0.5, lr=3e-3, batch_size=16, seed=seed),
            log=lambda _: None,
        )
        return model.layers[0].ffn.fc_in.weight

    assert torch.equal(tuned(0), tuned(0)) and not torch.equal(tuned(0), tuned(1))


def test_distillation_pulls_a_damaged_model_towards_its_teacher(trained):
    folder, data = trained
    teacher, model = load_model(folder).eval(), load_model(folder)
    batch = next(iter(data.loader("validation", 48)))
    with torch.no_grad():
        logits = teacher(batch["inputs"], batch["valid"])
    assert float(distillation(logits, logits, batch, 2.0)) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        model.layers[1].ffn.fc_out.weight.mul_(-3)

    def gap():
        with torch.no_grad():
            return float(distillation(model.eval()(batch["inputs"], batch["valid"]), logits, batch, 2.0))

    before = gap()
    task = task_for(data, model)
    config = FinetuneConfig(epochs=1, lr=3e-3, batch_size=16, distill=1.0)  # the teacher's outputs alone
    finetune(model, data, task, config, teacher=teacher, log=lambda _: None)
    assert gap() < before / 2
    with pytest.raises(SoraError, match="teacher"):
        finetune(model, data, task, config, log=lambda _: None)


def test_dropping_the_least_useful_block_measured_by_ablation(trained, tmp_path):
    folder, data = trained
    config = _config(
        prune=PruneConfig(layers=1, heads=0.5), quantize=None, finetune=FinetuneConfig(epochs=0.5, lr=1e-3, hidden=1.0)
    )  # the kept block matches layers.1
    report = compress_model(folder, data, config, tmp_path / "c", log=lambda _: None)
    first = report["pruning"]["rounds"][0]
    assert first["finetune"]["steps"] > 0
    assert first["layers_removed"] in (["layers.0"], ["layers.1"])
    assert first["heads_removed"] == 4 + 2  # the dropped block's 4 heads, then half of the other 4
    pruned = load_model(tmp_path / "c" / "pruned")
    assert pruned.config.encoder.n_layers == 1 and pruned.config.encoder.n_heads == 2


def test_the_pruned_model_may_have_its_own_int8_settings(trained, tmp_path):
    folder, data = trained
    quantize = QuantizeConfig(min_weights=0, min_side=0, sensitive=2, calibration_batches=1)

    def row_scaled(model_dir):
        return sum(m.compute == "int8_row" for m in load_model(model_dir).modules() if isinstance(m, Int8Linear))

    config = _config(quantize=quantize, pruned_quantize=quantize.model_copy(update={"sensitive": 0}))
    compress_model(folder, data, config, tmp_path / "both", log=lambda m: None)
    assert row_scaled(tmp_path / "both/int8") == 2 and row_scaled(tmp_path / "both/pruned_int8") == 0

    alone = compress_model(
        folder, data, _config(quantize=None, pruned_quantize=quantize), tmp_path / "alone", log=lambda m: None
    )  # only the pruned model is quantized
    assert list(alone["variants"]) == ["fp32", "pruned", "pruned+int8"]
    assert row_scaled(tmp_path / "alone/pruned_int8") == 2


def test_compression_prunes_by_a_checked_ranking_and_can_tune_the_kept_heads(trained, tmp_path):
    from sora.analyze.rankings import HEAD_RANKINGS
    from sora.models.names import attention_modules

    folder, data = trained
    logs = []
    config = _config(prune=PruneConfig(heads=0.5, reconstruct=True), quantize=None, check_examples=48)
    report = compress_model(folder, data, config, tmp_path / "c", log=logs.append)
    chosen = report["pruning"]["ranking"]["heads"]
    assert chosen["ranking"] in (*HEAD_RANKINGS, "random") and chosen["why"] and chosen["examples"] == 48
    assert chosen["ranking"] not in chosen["worse_than_random"]
    assert any(m.startswith(f"heads ranked by '{chosen['ranking']}'") for m in logs)
    gates = torch.cat([a.head_gate for _, a in attention_modules(load_model(tmp_path / "c" / "pruned"))])
    assert gates.numel() == 4 and not torch.all(gates == 1)  # tuned by reconstruction, kept in the folder
