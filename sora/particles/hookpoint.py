"""Identity modules placed at every activation, so tools can read or replace it by name.

A HookPoint does nothing on its own. Analysis attaches PyTorch forward hooks to it: a hook that
returns None only reads the activation; one that returns a tensor replaces it. Because the hook
point is a module, its name is its path in the model (``layers.2.attn.hook_pattern``).
"""

from torch import Tensor, nn

try:
    from torch.nn.modules.module import _has_any_global_hook
except ImportError:  # a torch without it: always go through nn.Module's own call

    def _has_any_global_hook() -> bool:
        return True


class HookPoint(nn.Module):
    kind = "hook"

    def __call__(self, x: Tensor) -> Tensor:
        """``x`` itself unless a hook listens. A model holds about twenty hook points a layer, and going through
        ``nn.Module.__call__`` for each cost about a tenth of a small decoder's time per generated token."""
        own = self._forward_hooks or self._forward_pre_hooks or self._backward_hooks or self._backward_pre_hooks
        return super().__call__(x) if own or _has_any_global_hook() else x

    def forward(self, x: Tensor) -> Tensor:
        return x

    @property
    def active(self) -> bool:
        """Whether anything listens here (lets attention pick its explicit path on demand)."""
        return bool(self._forward_hooks)
