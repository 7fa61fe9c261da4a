"""Data parallelism under torchrun: DistributedDataParallel, or FSDP2's ``fully_shard``.

``torchrun --nproc_per_node=N sora train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; the trainer
then joins a process group (gloo on CPU, nccl on GPU), each process reads its shard of every
batch, and gradients are averaged. Only rank 0 writes files. Multi-node runs use torchrun's
rendezvous (``--nnodes``, ``--rdzv-endpoint``); nothing here changes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

from sora.particles import Block
from sora.train.device import pick_device


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this process group was started here, so it is ended here

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def sum(self, t: Tensor) -> Tensor:
        """Sum of ``t`` over processes (a CPU float64 tensor comes back the same kind)."""
        if not self.enabled:
            return t
        comm = t.to(self.device, torch.float64 if self.device.type == "cpu" else torch.float32)
        dist.all_reduce(comm)
        return comm.to("cpu", t.dtype)

    def any(self, flag: bool) -> bool:
        """True on every process when it is True on any (stop together)."""
        if not self.enabled:
            return flag
        return bool(self.sum(torch.tensor([float(flag)])) > 0)

    def gather(self, t: Tensor) -> list[Tensor]:
        if not self.enabled:
            return [t]
        t = t.to(self.device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t)
        return [o.cpu() for o in out]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(device_choice: str = "auto") -> Dist:
    """Join the torchrun process group if there is one; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=pick_device(device_choice))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local)
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    return Dist(rank=rank, world_size=world, local_rank=local, device=device, owns_group=owns)


def wrap(model: nn.Module, d: Dist, strategy: str) -> nn.Module:
    """The module the training loop calls: DDP around the model, or the model sharded in place."""
    if not d.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard  # 2.9 s to import: under torchrun with FSDP only

        for module in model.modules():
            if isinstance(module, Block):  # one shard group per block, then the rest (embeddings, head)
                fully_shard(module)
        fully_shard(model)
        return model
    return DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)


def grad_sync(wrapped: nn.Module, sync: bool):
    """Skip the gradient all-reduce on micro-steps that are not the last of an accumulation."""
    if sync:
        return contextlib.nullcontext()
    if hasattr(wrapped, "no_sync"):  # DDP
        return wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        return _fsdp_no_sync(wrapped)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def is_sharded(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gathered(model: nn.Module):
    """Every parameter whole on every process (FSDP) while inside: for decoding and evaluation."""
    if not is_sharded(model):
        yield model
        return
    from torch.distributed.fsdp import FSDPModule

    shards = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for m in shards:
        m.set_reshard_after_forward(False, recurse=False)  # forward passes must not re-shard meanwhile
        m.unshard()
    try:
        yield model
    finally:
        for m in shards:
            m.reshard()
            m.set_reshard_after_forward(True, recurse=False)
