"""``nn.Linear`` that may have zero inputs or outputs (a layer pruned to no heads or neurons)."""

import warnings

from torch import nn


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")
        return nn.Linear(in_features, out_features, bias=bias)
