"""Identity modules placed at every activation, so tools can read or replace it by name.

A HookPoint does nothing on its own. Analysis attaches PyTorch forward hooks to it: a hook that
returns None only reads the activation; one that returns a tensor replaces it. Because the hook
point is a module, its name is its path in the model (``layers.2.attn.hook_pattern``).
"""

from torch import Tensor, nn


class HookPoint(nn.Module):
    kind = "hook"

    def forward(self, x: Tensor) -> Tensor:
        return x

    @property
    def active(self) -> bool:
        """Whether anything listens here (lets attention pick its explicit path on demand)."""
        return bool(self._forward_hooks)
