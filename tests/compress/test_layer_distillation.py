"""Layer distillation: pruned blocks learn to output what their originals did."""

import pytest
import torch

from sora.compress import FinetuneConfig
from sora.compress.finetune import finetune
from sora.compress.hidden import BlockOutputs, hidden_loss, teacher_blocks
from sora.compress.plan import plan_from_names
from sora.compress.structural import prune_model
from sora.models import build_model
from sora.models.names import block_paths
from sora.tasks import task_for
from tests.compress.toy_data import ToyClassification
from tests.helpers import tiny


def test_a_block_before_dropped_ones_stands_in_for_the_last_of_them():
    teacher = [f"layers.{i}" for i in range(5)]
    origins = {"layers.0": "layers.0", "layers.1": "layers.2", "layers.2": "layers.3"}  # 1 and 4 dropped
    assert teacher_blocks(origins, teacher) == {"layers.0": "layers.1", "layers.1": "layers.2", "layers.2": "layers.4"}
    seq2seq = ["encoder.layers.0", "encoder.layers.1", "decoder.layers.0", "decoder.layers.1"]
    origins = {"encoder.layers.0": "encoder.layers.0", "decoder.layers.0": "decoder.layers.1"}
    assert teacher_blocks(origins, seq2seq) == {
        "encoder.layers.0": "encoder.layers.1",  # never a decoder block
        "decoder.layers.0": "decoder.layers.1",
    }


def test_hidden_loss_is_relative_and_ignores_padding():
    torch.manual_seed(0)
    t = {"layers.0": torch.randn(2, 5, 8)}
    valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    batch = {"valid": valid}
    assert float(hidden_loss(t, t, {"layers.0": "layers.0"}, batch)) == 0.0
    assert float(hidden_loss({}, {}, {}, batch)) == 0.0  # every block dropped: nothing to match
    s = {"layers.0": t["layers.0"].clone()}
    s["layers.0"][1, 3:] += 100.0  # padding only
    assert float(hidden_loss(s, t, {"layers.0": "layers.0"}, batch)) == 0.0
    scaled_s, scaled_t = {"layers.0": 10 * (t["layers.0"] + 0.1)}, {"layers.0": 10 * t["layers.0"]}
    shifted = {"layers.0": t["layers.0"] + 0.1}
    assert float(hidden_loss(scaled_s, scaled_t, {"layers.0": "layers.0"}, batch)) == pytest.approx(
        float(hidden_loss(shifted, t, {"layers.0": "layers.0"}, batch)), rel=1e-5
    )


def _pruned_gap_after_finetune(hidden: float) -> tuple[float, float]:
    """Block outputs' distance from the teacher's, before and after fine-tuning a pruned copy."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = ToyClassification()
    teacher = build_model(tiny(encoder={"n_layers": 3, "n_heads": 4, "d_ff": 64})).eval()
    student = prune_model(teacher, plan_from_names(teacher, ["layers.1", "layers.0.attn.head.0"]))
    origins = {"layers.0": "layers.0", "layers.1": "layers.2"}
    pairs = teacher_blocks(origins, block_paths(teacher))
    batch = next(iter(data.loader("validation", 48)))

    def gap() -> float:
        s, t = BlockOutputs(student.eval(), block_paths(student)), BlockOutputs(teacher, block_paths(teacher))
        with torch.no_grad():
            student(batch["inputs"], batch["valid"]), teacher(batch["inputs"], batch["valid"])
        value = float(hidden_loss(s.outputs, t.outputs, pairs, batch))
        s.close(), t.close()
        return value

    before = gap()
    config = FinetuneConfig(epochs=2, lr=3e-3, batch_size=16, hidden=hidden)
    finetune(
        student,
        data,
        task_for(data, student),
        config,
        teacher=teacher if hidden else None,
        origins=origins,
        log=lambda _: None,
    )
    hooks = [m for model in (student, teacher) for m in model.modules() if m._forward_hooks]
    assert not hooks  # fine-tuning leaves no hook behind
    return before, gap()


def test_fine_tuning_with_layer_distillation_pulls_pruned_blocks_to_their_originals():
    before, labels_only = _pruned_gap_after_finetune(hidden=0.0)
    _, distilled = _pruned_gap_after_finetune(hidden=1.0)
    assert distilled < before * 0.75 and distilled < labels_only / 2
