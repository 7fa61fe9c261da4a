"""A CLS-pooled classifier reads one position of its last block: at inference that block answers for it alone.

The same logits as the full forward pass (within float error), for pre- and post-norm blocks, pruned layers and
patches; less work (the last feed-forward sees one position); and never while something listens to that block."""

import pytest
import torch

from sora.models import build_model
from tests.helpers import tiny


def classifier(**overrides):
    torch.manual_seed(0)
    return build_model(tiny("encoder_classifier", pooling="cls", **overrides)).eval()


def both(model, inputs, valid=None):
    with torch.no_grad():  # the full pass: every position of every block
        full = model(inputs, valid)
    with torch.inference_mode():
        fast = model(inputs, valid)
    return full, fast


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("heads", [4, [4, 0], [0, 4]])
def test_the_last_block_for_cls_alone_gives_the_same_logits(norm, heads):
    model = classifier(norm_position=norm, encoder={"n_layers": 2, "n_heads": heads, "d_ff": 64})
    ids = torch.randint(5, 50, (3, 9))
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[1, 6:] = False
    full, fast = both(model, ids, valid)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)


def test_image_patches_with_a_cls_token_too():
    model = classifier(input="image", image={"size": 8, "patch": 2})
    full, fast = both(model, torch.randn(2, 1, 8, 8))
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)


def widths_seen_by_the_last_ffn(model, run) -> list[int]:
    seen = []
    handle = model.layers[-1].ffn.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    run()
    handle.remove()
    return seen


def test_inference_skips_the_other_positions_of_the_last_block_only_when_nobody_listens():
    model = classifier()
    ids = torch.randint(5, 50, (2, 7))
    with torch.inference_mode():
        assert widths_seen_by_the_last_ffn(model, lambda: model(ids)) == [1]
    with torch.no_grad():  # training, gradients, analysis: every position
        assert widths_seen_by_the_last_ffn(model, lambda: model(ids)) == [7]
    patterns = []
    model.layers[-1].attn.hook_pattern.register_forward_hook(lambda m, args, out: patterns.append(out.shape))
    with torch.inference_mode():
        assert widths_seen_by_the_last_ffn(model, lambda: model(ids)) == [7]
    assert patterns == [torch.Size([2, 4, 7, 7])]  # a listener sees every query


def test_mean_pooling_reads_every_position():
    torch.manual_seed(0)
    model = build_model(tiny("encoder_classifier", pooling="mean")).eval()
    with torch.inference_mode():
        assert widths_seen_by_the_last_ffn(model, lambda: model(torch.randint(5, 50, (2, 7)))) == [7]
