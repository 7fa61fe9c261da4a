import pytest
import torch

from sora.particles import FeedForward, LearnedPosition, Rotary, SinusoidalPosition


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "swiglu"])
def test_neuron_mask_equals_removed_neuron(activation):
    full = FeedForward(16, 8, activation).eval()
    small = FeedForward(16, 7, activation).eval()
    keep = torch.tensor([0, 1, 2, 4, 5, 6, 7])
    with torch.no_grad():
        small.fc_in.weight.copy_(full.fc_in.weight[keep])
        small.fc_in.bias.copy_(full.fc_in.bias[keep])
        if full.fc_gate is not None:
            small.fc_gate.weight.copy_(full.fc_gate.weight[keep])
            small.fc_gate.bias.copy_(full.fc_gate.bias[keep])
        small.fc_out.weight.copy_(full.fc_out.weight[:, keep])
        small.fc_out.bias.copy_(full.fc_out.bias)
    x = torch.randn(2, 5, 16)
    unmasked = full(x)  # all ones: the mask is skipped, and the next in-place write must be seen
    full.neuron_mask[3] = 0
    torch.testing.assert_close(full(x), small(x), atol=1e-6, rtol=0)
    full.neuron_mask.fill_(1)
    torch.testing.assert_close(full(x), unmasked, atol=0, rtol=0)


def test_unknown_activation_is_named():
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        FeedForward(8, 8, "tanh")


def test_positions_offset_continue_the_sequence():
    for pos in (LearnedPosition(16, 8), SinusoidalPosition(16, 8)):
        torch.testing.assert_close(pos(3, offset=2), pos(5)[2:])
    with pytest.raises(ValueError, match="longer than max_len=16"):
        SinusoidalPosition(16, 8)(17)


def test_rotary_scores_depend_only_on_relative_position():
    rope = Rotary(8, 32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        return (rope(q, offset=i) * rope(k, offset=j)).sum()

    torch.testing.assert_close(score(5, 2), score(13, 10), atol=1e-5, rtol=0)


def test_rotary_rotates_interleaved_feature_pairs():
    """The layout saved models rely on: features (2i, 2i+1) turn by angle position / base^(2i/dh)."""
    rope = Rotary(4, 16)
    x = torch.randn(2, 5, 3, 4).transpose(1, 2)  # (B, H, T, dh), not contiguous, as attention passes it
    out = rope(x, offset=3)
    for t in range(5):
        for i, freq in enumerate([1.0, 1e-2]):
            angle = torch.tensor((t + 3) * freq)
            a, b = x[..., t, 2 * i], x[..., t, 2 * i + 1]
            torch.testing.assert_close(out[..., t, 2 * i], a * angle.cos() - b * angle.sin())
            torch.testing.assert_close(out[..., t, 2 * i + 1], a * angle.sin() + b * angle.cos())
