"""Recovery fine-tuning after pruning: a short run that lets the remaining particles take over.

It reuses the task (sora.tasks: loss and metrics) and sora.train's optimizer groups, but keeps the
loop small and in memory: no checkpoints or run folders, and it works on a model with LoRA adapters
(which the model folder cannot describe). With ``lora`` only the adapters train and are merged at the
end, so the result is an ordinary, smaller Sora model either way. The best state by the validation metric
is kept when there is a validation split.

With ``distill`` > 0 the unpruned model is a teacher (Hinton et al. 2015): the loss mixes the labels'
cross-entropy with the KL divergence from the teacher's softened outputs, which carry more than
the labels do (how sure the full model was, and of what), so the pruned model recovers faster.
With ``hidden`` > 0 every kept block also learns to output what its original did (sora.compress.hidden).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sora.compress.config import FinetuneConfig
from sora.compress.hidden import BlockOutputs, hidden_loss, teacher_blocks
from sora.compress.lora import add_lora, merge, trainable_parameters
from sora.data.protocol import TaskData
from sora.errors import SoraError
from sora.models.names import block_paths
from sora.tasks import IGNORE, Task, evaluate
from sora.train.config import TrainConfig, metric_mode
from sora.train.optim import build_optimizer


def finetune(
    model: nn.Module,
    data: TaskData,
    task: Task,
    config: FinetuneConfig,
    *,
    teacher: nn.Module | None = None,
    origins: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Fine-tune ``model`` in place on ``data``'s train split; returns what happened.

    ``teacher``: the model before pruning, for ``config.distill`` and ``config.hidden``; ``origins``:
    each of ``model``'s blocks -> its name in ``teacher`` (default: the same name)."""
    if (config.distill or config.hidden) and teacher is None:
        raise SoraError("finetune.distill and finetune.hidden need the unpruned model as the teacher")
    if config.distill and task.name not in ("classification", "lm", "seq2seq"):
        raise SoraError(f"finetune.distill: the {task.name} task has no per-position outputs to match")
    if teacher is not None:
        teacher.eval()
    torch.manual_seed(config.seed)
    counts = add_lora(model, config.lora) if config.lora else trainable_parameters(model)
    log(
        f"fine-tune: {counts['trainable']:,} of {counts['total']:,} parameters trainable "
        f"({counts['fraction']:.2%}){' (LoRA adapters)' if config.lora else ''}"
    )
    optimizer = build_optimizer(model, TrainConfig(lr=config.lr, epochs=config.epochs, weight_decay=0.01))
    n_batches = data.num_batches("train", config.batch_size)
    total = max(1, math.ceil(config.epochs * n_batches))
    validate = data.has_split("validation")
    monitor, mode = task.monitor, metric_mode(task.monitor)
    best_value, best_state, history = None, None, []
    step, epoch = 0, 0
    layers = _LayerDistillation(model, teacher, origins) if config.hidden else None
    try:
        while step < total:
            model.train()
            for batch in data.loader("train", config.batch_size, shuffle=True, seed=config.seed, epoch=epoch):
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * (1 - step / total)  # linear decay to zero
                loss = _loss(model, teacher if config.distill or config.hidden else None, task, batch, config, layers)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if step >= total:
                    break
            epoch += 1
            if validate:
                metrics = evaluate(model, data.loader("validation", 2 * config.batch_size), task)
                history.append({"epoch": epoch, "step": step, **metrics})
                log(f"fine-tune epoch {epoch}: validation {monitor} {metrics[monitor]:.4f}")
                value = metrics[monitor]
                if best_value is None or (value < best_value if mode == "min" else value > best_value):
                    best_value = value
                    best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    finally:  # the teacher is the caller's model: leave no hook on it
        if layers is not None:
            layers.close()
    if best_state is not None:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, value in best_state.items():
                params[name].copy_(value)
    if config.lora:
        merge(model)
    model.eval()
    return {
        "steps": step,
        "epochs": epoch,
        "trainable": counts,
        "history": history,
        "best": {monitor: best_value} if best_value is not None else None,
    }


def _loss(
    model: nn.Module,
    teacher: nn.Module | None,
    task: Task,
    batch: dict,
    config: FinetuneConfig,
    layers: _LayerDistillation | None = None,
) -> Tensor:
    """Mean loss per target: labels' cross-entropy, mixed with distillation from ``teacher`` if given,
    plus layer distillation if ``layers`` (the teacher runs once for both)."""
    n = max(task.targets(batch), 1)
    if teacher is None:
        return task.loss(model, batch) / n
    seen = {}

    def student(*args):  # the task's own forward, keeping the logits for the distillation term
        seen["logits"] = model(*args)
        return seen["logits"]

    labels_loss = task.loss(student, batch) / n
    with torch.no_grad():
        target = task.forward(teacher, batch)  # (its blocks' outputs reach ``layers`` through hooks)
    loss = (1 - config.distill) * labels_loss
    if config.distill:
        loss = loss + config.distill * distillation(seen["logits"], target, batch, config.temperature) / n
    if layers is not None:
        loss = loss + config.hidden * layers.loss(batch)
    return loss


def distillation(student: Tensor, teacher: Tensor, batch: dict, temperature: float) -> Tensor:
    """Summed KL(teacher || student) over the scored positions, at ``temperature``, times T^2 (so its
    gradients keep the scale of the cross-entropy's as T changes)."""
    s = F.log_softmax(student.float().flatten(0, -2) / temperature, dim=-1)  # (N, C)
    t = F.log_softmax(teacher.float().flatten(0, -2) / temperature, dim=-1)
    kl = F.kl_div(s, t, log_target=True, reduction="none").sum(-1)  # (N,)
    labels = batch["tgt_out"] if "tgt_out" in batch else batch["labels"]
    kl = kl[labels.flatten() != IGNORE] if labels.numel() == kl.numel() else kl
    return kl.sum() * temperature**2


class _LayerDistillation:
    """Hooks on both models' blocks, so the loss sees their outputs on the batch both just ran on."""

    def __init__(self, model: nn.Module, teacher: nn.Module, origins: dict[str, str] | None):
        names = block_paths(model)
        origins = origins or {name: name for name in names}
        self.pairs = teacher_blocks(origins, block_paths(teacher))
        self.student = BlockOutputs(model, names)
        self.teacher = BlockOutputs(teacher, sorted(set(self.pairs.values())))

    def loss(self, batch: dict) -> Tensor:
        """After both models ran on ``batch``."""
        return hidden_loss(self.student.outputs, self.teacher.outputs, self.pairs, batch)

    def close(self) -> None:
        self.student.close()
        self.teacher.close()
