"""The training loop: steps, validation, best model, early stopping, checkpoints, exact resume.

One optimizer step takes ``grad_accum`` micro-batches. Each micro-batch's loss is a *sum* over
its targets, divided by the number of targets in the whole step on every process, so
accumulation and data parallelism reproduce one large batch exactly. Validation runs after
every epoch (and every ``validate_every_steps``); the best model by the chosen metric is kept in
``OUT/best``; a checkpoint follows every validation and every stop decision, and ``resume`` restores
model, optimizer, schedule position, random generators, the data position, the best-model record
and the stop decision, so a run killed at any moment and resumed ends bit-identical to one that
never stopped. ``OUT/run.json`` names the run that owns the folder (sora.train.run_folder): only its
checkpoints are rotated and resumed. Where the run is lives in a ``TrainState`` (sora.train.state),
which each checkpoint saves.

``data`` is prepared data (sora.data.TaskData): ``loader(split, batch_size, ...)``,
``num_batches(split, batch_size, world_size)``, ``has_split``, ``task``, ``labels``, ``tokenizer``.

torch.distributed.checkpoint is imported where it is used: it takes seconds to import, and every
command that only reads this module (eval, analyze, compress) would pay for it.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from sora.data.protocol import TaskData
from sora.errors import ConfigError, SoraError
from sora.models import build_model, load_model, save_model
from sora.particles import MultiHeadAttention
from sora.tasks import Task, evaluate, task_for
from sora.tasks.device import autocast, to_device
from sora.train import checkpoint as ckpt
from sora.train import distributed, run_folder
from sora.train.averaging import averaged_weights, keep_average, update_average
from sora.train.config import TrainConfig
from sora.train.device import check_precision
from sora.train.killpoints import kill_point
from sora.train.logbook import RunLog, format_metrics
from sora.train.optim import build_optimizer, lr_factor, set_lr
from sora.train.state import BestTracker, TrainState, over_time, stop_reason, total_steps, validation_metrics


@dataclass
class TrainResult:
    model: nn.Module  # the selected model: best by validation if there was one, else the last; eval mode
    step: int
    epoch: float
    stopped: str  # epochs | max_steps | max_minutes | early_stopping | interrupted
    best: dict[str, Any] | None = None  # {"metric", "mode", "value", "step"}
    history: list[dict[str, Any]] = field(default_factory=list)  # every validation
    elapsed_s: float = 0.0
    throughput: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"

    def best_validation(self) -> dict[str, Any] | None:
        """The metrics of the validation that picked the model (None without one)."""
        record = next((r for r in self.history if self.best and r["step"] == self.best["step"]), None)
        return validation_metrics(record) if record is not None else None


@dataclass
class _Parts:
    """What an optimizer step works with: the model, its wrapped (DDP/FSDP) and compiled forms, the
    optimizer, the fp16 gradient scaler, and the adaptive spans whose penalty joins the loss."""

    model: nn.Module
    wrapped: nn.Module
    train_fn: Callable
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    spans: list
    span_coef: float


@dataclass
class _Window:
    """Sums since the last train log line: they give its loss and throughput."""

    loss: float = 0.0
    count: float = 0.0
    examples: float = 0.0
    tokens: float = 0.0
    steps: int = 0
    t: float = field(default_factory=time.monotonic)

    def add(self, out: dict[str, Any]) -> None:
        self.loss += out["loss"]
        self.count += out["count"]
        self.examples += out["examples"]
        self.tokens += out["tokens"]
        self.steps += 1


class _Clock:
    """Training time across resumes: the checkpointed seconds plus this process's."""

    def __init__(self, before: float):
        self.before, self.t0 = before, time.monotonic()

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.t0


@dataclass
class _Loop:
    """What one ``fit`` carries from step to step besides its TrainState."""

    parts: _Parts
    state: TrainState
    tracker: BestTracker
    clock: _Clock
    stop_after_steps: int | None
    window: _Window = field(default_factory=_Window)
    stopped: str | None = None  # this process's stop decision (a checkpoint saves it unless "interrupted")
    early_stopped: bool = False  # patience ran out, also when an interruption came at the same step
    checkpoint: Path | None = None  # the last one written


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        data: TaskData,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        task: Task | None = None,
        resume: bool = False,
        meta: dict[str, Any] | None = None,
        dist: distributed.Dist | None = None,
        run_spec: dict[str, Any] | None = None,
    ):
        """``run_spec``: what else defines the run besides model and train config (recipe, data), as JSON
        values; a resume must match it."""
        self.model, self.data, self.config = model, data, config
        self.out_dir = Path(out_dir)
        self.task = task or task_for(
            data, model, decode_examples=config.decode_examples, max_new_tokens=config.decode_max_tokens
        )
        self.resume = resume
        self.run_spec = dict(run_spec or {})
        self.meta = dict(meta or {})
        self.tokenizer = data.tokenizer
        self._given_dist = dist
        self._stop_requested = False

    # -- the loop --------------------------------------------------------------------------------

    def fit(self, *, stop_after_steps: int | None = None) -> TrainResult:
        """Train until the config's end (or ``stop_after_steps``, which stops as an interruption does)."""
        cfg = self.config
        d = self.dist = self._given_dist or distributed.setup(cfg.device)
        try:
            return self._fit(d, stop_after_steps)
        finally:
            if self._given_dist is None:
                d.close()

    def _fit(self, d: distributed.Dist, stop_after_steps: int | None) -> TrainResult:
        """Set up (or restore) the run, train it to its end, and return the selected model."""
        self._plan(d)
        _seed_all(self.config.seed + d.rank)
        model = self.model.to(d.device)
        self.run_id = self._open_run(d)
        restored = self._load_checkpoint(model, d) if self.resume else None
        state = restored.state if restored is not None else TrainState()
        parts = self._parts(model, d, restored, state)
        if restored is not None:
            self._check_position(state, restored)
        tracker = BestTracker.from_config(self.config, self.task.monitor)
        self.log = RunLog(self.out_dir, enabled=d.main, quiet=self.config.quiet, total=self.total, initial=state.step)
        loop = _Loop(parts, state, tracker, _Clock(state.elapsed_s), stop_after_steps)
        previous_handler = self._catch_sigint()
        try:
            self._train(loop, restored.rng if restored is not None else None)
        finally:
            self._restore_sigint(previous_handler)
            self.log.close()
        return self._result(loop)

    def _plan(self, d: distributed.Dist) -> None:
        """Threads, precision, per-process batch sizes and the run's length; errors for what cannot run."""
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        check_precision(cfg.precision, d.device)
        if cfg.batch_size % d.world_size:
            raise ConfigError(f"train.batch_size: {cfg.batch_size} does not split evenly over {d.world_size} processes")
        self.local_bs = cfg.batch_size // d.world_size
        self.eval_bs = max(1, (cfg.eval_batch_size or 2 * cfg.batch_size) // d.world_size)
        self.n_batches = self.data.num_batches("train", self.local_bs, world_size=d.world_size)
        if self.n_batches <= 0:
            raise SoraError("the training split is empty")
        self.total = total_steps(cfg, self.n_batches)
        self.validates = self.data.has_split("validation")

    def _parts(
        self, model: nn.Module, d: distributed.Dist, restored: ckpt.Checkpoint | None, state: TrainState
    ) -> _Parts:
        """The wrapped model, optimizer and scaler, restored from ``restored`` when resuming."""
        cfg = self.config
        wrapped = distributed.wrap(model, d, cfg.strategy)
        optimizer = build_optimizer(model, cfg)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        if restored is not None:
            self._restore_optimizer(model, optimizer, restored.optimizer, restored.folder)
            if scaler is not None and state.scaler:
                scaler.load_state_dict(state.scaler)
        train_fn = torch.compile(wrapped) if cfg.compile else wrapped
        spans = [m.adaptive_span for m in model.modules() if isinstance(m, MultiHeadAttention) and m.adaptive_span]
        span_coef = model.config.adaptive_span.penalty if spans else 0.0
        return _Parts(model, wrapped, train_fn, optimizer, scaler, spans, span_coef)

    def _train(self, loop: _Loop, rng: tuple | None) -> None:
        """Epoch after epoch until ``loop.stopped``; ``rng``: a checkpoint's generators, restored once."""
        state = loop.state
        loop.stopped = stop_reason(
            self.config,
            state.step,
            self.total,
            early_stopped=state.stopped == "early_stopping",
            time_up=over_time(self.config, state.elapsed_s),
        )
        while loop.stopped is None:
            self._train_epoch(loop, self._epoch_batches(state, rng))
            rng = None

    def _epoch_batches(self, state: TrainState, rng: tuple | None) -> Iterator:
        """The training batches of ``state``'s epoch from its batch on. A checkpoint's generators are
        restored before a fresh epoch's loader is made, and after a resumed one's: where the saved run was."""
        cfg, d = self.config, self.dist
        if rng is not None and state.batch == 0:
            ckpt.restore_rng(*rng, d.rank)
            rng = None
        loader = self.data.loader(
            "train",
            self.local_bs,
            shuffle=True,
            seed=cfg.seed,
            epoch=state.epoch,
            start_batch=state.batch,
            rank=d.rank,
            world_size=d.world_size,
            num_workers=cfg.num_workers,
        )
        batches = iter(loader)
        if rng is not None:
            ckpt.restore_rng(*rng, d.rank)
        return batches

    def _train_epoch(self, loop: _Loop, batches: Iterator) -> None:
        """Steps over ``batches`` until the epoch ends, they run out, or the run stops."""
        state = loop.state
        while loop.stopped is None and state.batch < self.n_batches:
            group = list(islice(batches, min(self.config.grad_accum, self.n_batches - state.batch)))
            if not group:
                return
            if self._train_step(loop, group):
                return

    def _train_step(self, loop: _Loop, group: list) -> bool:
        """One optimizer step and what follows it: log, stop decision, validation, checkpoint.
        True when it ended the epoch."""
        cfg, state = self.config, loop.state
        lr = self._lr(state.step, loop.clock)
        set_lr(loop.parts.optimizer, lr)
        out = self._step(loop.parts, group)
        state.step, state.batch = state.step + 1, state.batch + len(group)
        if cfg.ema_decay:
            update_average(loop.parts.optimizer, cfg.ema_decay, state.step)
        self._count(loop, out)
        kill_point("step", state.step)
        if state.step % cfg.log_every == 0 or state.step == self.total:
            self._log_train(loop.window, state.step, lr, out["grad_norm"], state.position(self.n_batches))
            loop.window = _Window()
        end_of_epoch = state.batch >= self.n_batches
        if end_of_epoch:
            state.epoch, state.batch = state.epoch + 1, 0
        loop.stopped = self._stop_after_step(loop)
        validate = self._validation_due(loop, end_of_epoch)
        if validate:
            self._validate_and_select(loop)
        if (
            validate
            or loop.stopped is not None
            or (cfg.checkpoint_every_steps is not None and state.step % cfg.checkpoint_every_steps == 0)
        ):
            self._checkpoint(loop)
        return end_of_epoch

    def _lr(self, step: int, clock: _Clock) -> float:
        """The learning rate of the step after ``step``: by steps, or by time under max_minutes."""
        cfg = self.config
        progress = clock.elapsed() / (cfg.max_minutes * 60) if cfg.max_minutes else None
        return cfg.lr * lr_factor(step, self.total, cfg, progress)

    def _count(self, loop: _Loop, out: dict[str, Any]) -> None:
        """Add a step's figures to the log window, the run's totals and the progress bar."""
        loop.window.add(out)
        loop.state.examples += out["examples"] * self.dist.world_size
        loop.state.tokens += out["tokens"] * self.dist.world_size
        self.log.advance(1)

    def _stop_after_step(self, loop: _Loop) -> str | None:
        """Why the run stops after this step, agreed by every process (None: it goes on)."""
        time_up, halt = self._agree(
            over_time(self.config, loop.clock.elapsed()),
            self._stop_requested or loop.state.step == loop.stop_after_steps,
        )
        return stop_reason(self.config, loop.state.step, self.total, time_up=time_up, halted=halt)

    def _validation_due(self, loop: _Loop, end_of_epoch: bool) -> bool:
        """After every epoch, every ``validate_every_steps`` and a stop decision. Scheduled validations
        run even when interrupted, so a resumed run's history matches."""
        every = self.config.validate_every_steps
        return self.validates and (
            end_of_epoch
            or loop.stopped not in (None, "interrupted")
            or (every is not None and loop.state.step % every == 0)
        )

    def _validate_and_select(self, loop: _Loop) -> None:
        """Validate, keep the model in OUT/best when it is the best so far, stop early when patience runs out."""
        state = loop.state
        with averaged_weights(loop.parts.optimizer, enabled=bool(self.config.ema_decay)):
            record = self._validate(loop.parts.model, state.step, state.position(self.n_batches))
            state.history.append(record)
            better = loop.tracker.observe(state, record, self.task.name)
            if better:
                self._save_best(loop.parts.model, self.dist, record)
        if not better and loop.tracker.exhausted(state):
            loop.stopped = loop.stopped or "early_stopping"
            loop.early_stopped = True
            best = state.best
            self.log.say(
                f"early stopping: no {loop.tracker.metric} improvement in {loop.tracker.patience} "
                f"validations (best {best['value']:.4g} at step {best['step']})"
            )
        kill_point("validated", state.step)

    def _checkpoint(self, loop: _Loop) -> None:
        """Save the run as it stands, with its stop decision (an interruption is not one: a resume goes on)."""
        state, scaler = loop.state, loop.parts.scaler
        state.elapsed_s = loop.clock.elapsed()
        if loop.stopped == "interrupted":  # an interruption is no decision, but an early stop at the same step is
            state.stopped = "early_stopping" if loop.early_stopped else None
        else:
            state.stopped = loop.stopped
        if scaler is not None:
            state.scaler = scaler.state_dict()
        loop.checkpoint = self._save_checkpoint(loop.parts.model, loop.parts.optimizer, self.dist, state)
        kill_point("checkpointed", state.step)

    def _result(self, loop: _Loop) -> TrainResult:
        state = loop.state
        elapsed = loop.clock.elapsed()
        if loop.stopped == "interrupted":
            self.log.say(f"stopped at step {state.step}: checkpoint {loop.checkpoint}; continue with --resume")
        if self.config.ema_decay and loop.stopped != "interrupted":
            keep_average(loop.parts.optimizer)  # the run's last model is the average too
        final = self._final_model(loop.parts.model, self.dist, state)
        return TrainResult(
            model=final,
            step=state.step,
            epoch=state.position(self.n_batches),
            stopped=loop.stopped,
            best=state.best,
            history=state.history,
            elapsed_s=elapsed,
            checkpoint=loop.checkpoint,
            throughput={
                "examples_per_s": state.examples / max(elapsed, 1e-9),
                "tokens_per_s": state.tokens / max(elapsed, 1e-9),
            },
        )

    def _agree(self, *flags: bool) -> list[bool]:
        """Each flag True on every process when it is True on any: processes stop together."""
        sums = self.dist.sum(torch.tensor([float(f) for f in flags], dtype=torch.float64))
        return [bool(v > 0) for v in sums.tolist()]

    def _step(self, parts: _Parts, group: list) -> dict[str, Any]:
        """One optimizer step over ``group`` (the micro-batches of one accumulation)."""
        d, task = self.dist, self.task
        parts.model.train()
        local = sum(task.targets(b) for b in group)
        total = float(d.sum(torch.tensor([float(local)], dtype=torch.float64)).item())
        scale = d.world_size / max(total, 1.0)  # DDP averages over processes: undo that, divide by all targets
        loss_sum, examples, tokens = 0.0, 0, 0
        for i, raw in enumerate(group):
            loss = self._backward(
                parts, to_device(raw, d.device), scale, last=i == len(group) - 1, micro_batches=len(group)
            )
            loss_sum += float(loss.detach())
            examples += task.examples(raw)
            tokens += task.tokens(raw)
        if not math.isfinite(loss_sum):
            raise SoraError(f"training loss became {loss_sum} (try a lower train.lr, train.clip_grad_norm, or fp32)")
        grad_norm = self._apply_gradients(parts)
        return {"loss": loss_sum, "count": float(local), "examples": examples, "tokens": tokens, "grad_norm": grad_norm}

    def _backward(self, parts: _Parts, batch: dict, scale: float, *, last: bool, micro_batches: int) -> Tensor:
        """Forward and backward of one micro-batch (gradients synchronised on the ``last``); its loss."""
        cfg = self.config
        with distributed.grad_sync(parts.wrapped, last), autocast(self.dist.device, cfg.precision):
            try:
                loss = self.task.loss(parts.train_fn, batch, cfg.label_smoothing)
            except ValueError as e:
                if "max_len" in str(e):
                    raise ConfigError(f"model.max_len: {e}") from None
                raise
            objective = loss * scale
            if parts.spans:
                penalty = sum(s.penalty() for s in parts.spans)
                objective = objective + parts.span_coef * penalty / len(parts.spans) / micro_batches
            (parts.scaler.scale(objective) if parts.scaler is not None else objective).backward()
        return loss

    def _apply_gradients(self, parts: _Parts) -> Tensor:
        """Clip, step the optimizer (through the scaler under fp16), clear gradients; the gradient norm."""
        optimizer, scaler = parts.optimizer, parts.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.clip_grad_norm or float("inf"))
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for s in parts.spans:
            s.clamp_()
        return grad_norm

    # -- reporting -----------------------------------------------------------------------------------

    def _log_train(self, window: _Window, step: int, lr: float, grad_norm: Tensor, epoch: float) -> None:
        d = self.dist
        sums = d.sum(
            torch.tensor([window.loss, window.count, window.examples, window.tokens], dtype=torch.float64)
        ).tolist()
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a sharded norm
            grad_norm = grad_norm.full_tensor()
        seconds = max(time.monotonic() - window.t, 1e-9)
        values = {
            "loss": sums[0] / max(sums[1], 1),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "examples_per_s": sums[2] / seconds,
            "tokens_per_s": sums[3] / seconds,
            "steps_per_s": window.steps / seconds,
        }
        self.log.scalars("train", values, step)
        self.log.event("train", step, epoch=round(epoch, 4), **values)
        self.log.advance(0, loss=values["loss"], lr=lr, **{"ex/s": round(values["examples_per_s"], 1)})

    def _validate(self, model: nn.Module, step: int, epoch: float) -> dict[str, Any]:
        cfg, d = self.config, self.dist
        loader = self.data.loader(
            "validation", self.eval_bs, shuffle=False, rank=d.rank, world_size=d.world_size, num_workers=cfg.num_workers
        )
        with distributed.gathered(model):
            metrics = evaluate(
                model,
                loader,
                self.task,
                device=d.device,
                precision=cfg.precision,
                max_batches=cfg.eval_max_batches,
                decode_examples=math.ceil(cfg.decode_examples / d.world_size),
                reduce=d.sum if d.enabled else None,
            )
        self.log.scalars("val", metrics, step)
        self.log.event("validation", step, epoch=round(epoch, 4), **metrics)
        self.log.say(f"step {step} (epoch {epoch:.2f}) validation: {format_metrics(metrics)}")
        return {"step": step, "epoch": round(epoch, 4), **metrics}

    # -- files -----------------------------------------------------------------------------------------

    def _plain(self, model: nn.Module, d: distributed.Dist) -> nn.Module:
        """The model as an ordinary CPU module (FSDP shards gathered): for saving and for the result."""
        if distributed.is_sharded(model):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
            clone = build_model(model.config)
            clone.load_state_dict({k: v.cpu() for k, v in state.items()})
            return clone
        if d.device.type != "cpu":
            clone = build_model(model.config)
            clone.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
            return clone
        return model

    def _model_meta(self, **extra) -> dict[str, Any]:
        return {**self.meta, "labels": self.data.labels, "task": self.task.name, **extra}

    def _save_best(self, model: nn.Module, d: distributed.Dist, record: dict) -> None:
        plain = self._plain(model, d)
        if d.main:
            save_model(
                plain,
                self.out_dir / "best",
                tokenizer=self.tokenizer,
                meta=self._model_meta(stage="best", step=record["step"], validation=record),
            )
        d.barrier()

    def _save_checkpoint(self, model, optimizer, d: distributed.Dist, state: TrainState) -> Path:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        optim_state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
        rng = {}
        for key, tensor in ckpt.local_rng_tensors().items():
            for r, t in enumerate(d.gather(tensor)):
                rng[f"{key}.rank{r}"] = t
        plain = self._plain(model, d)
        path = self.out_dir / "checkpoints" / f"step-{state.step}"
        if d.main:
            path = ckpt.save_checkpoint(
                self.out_dir / "checkpoints",
                plain,
                state,
                run_id=self.run_id,
                world_size=d.world_size,
                train_config=self.config.model_dump(mode="json"),
                optimizer=ckpt.flatten_optimizer(optim_state),
                rng=(rng, ckpt.host_rng_json()),
                tokenizer=self.tokenizer,
                meta=self._model_meta(stage="checkpoint", step=state.step),
                keep_last=self.config.keep_last,
            )
        d.barrier()
        return path

    def _open_run(self, d: distributed.Dist) -> str:
        """This run's id: on resume the folder's run (once shown to be this one), else a new run's."""
        spec = run_folder.identity(self.config, model=self.model.config.model_dump(mode="json"), **self.run_spec)
        if self.resume:
            return run_folder.resumed_run(self.out_dir, spec)
        if d.main:
            run_folder.start_run(self.out_dir, spec)
        d.barrier()
        return run_folder.read_run(self.out_dir)["run_id"]

    def _check_position(self, state: TrainState, restored: ckpt.Checkpoint) -> None:
        """A damaged data position would skip (or loop over) batches for ever: every epoch takes a step."""
        if state.batch > self.n_batches or state.epoch > state.step:
            raise SoraError(
                f"{restored.folder}/{ckpt.TRAINER}: epoch {state.epoch}, batch {state.batch} cannot follow "
                f"step {state.step} with {self.n_batches} batches an epoch; the checkpoint is damaged"
            )

    def _load_checkpoint(self, model: nn.Module, d: distributed.Dist) -> ckpt.Checkpoint | None:
        """The run's newest checkpoint, its weights loaded into ``model`` (None before its first)."""
        folder = ckpt.latest_checkpoint(self.out_dir / "checkpoints", self.run_id)
        if folder is None:
            if d.main and not self.config.quiet:
                print(
                    f"resume: run {self.run_id} has no checkpoint in {self.out_dir / 'checkpoints'} yet; "
                    f"starting it from step 0"
                )
            return None
        restored = ckpt.read_checkpoint(folder)
        if restored.world_size != d.world_size:
            raise SoraError(
                f"{folder}: written by {restored.world_size} processes; resume with the same "
                f"number (torchrun --nproc_per_node={restored.world_size}), now {d.world_size}"
            )
        ckpt.load_weights(model, folder, str(d.device))
        state = restored.state
        if d.main and not self.config.quiet:
            print(f"resume: {folder} (step {state.step}, epoch {state.epoch}, batch {state.batch})")
        return restored

    def _restore_optimizer(self, model, optimizer, flat, folder: Path) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        try:
            state = ckpt.unflatten_optimizer(*flat)
            set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
            raise SoraError(
                f"{folder}: its optimizer state (optimizer.safetensors, optimizer.json) does not match "
                f"this model/optimizer ({ckpt.one_line(e)})"
            ) from None

    def _final_model(self, model: nn.Module, d: distributed.Dist, state: TrainState) -> nn.Module:
        if state.best is not None and (self.out_dir / "best").is_dir():
            return load_model(self.out_dir / "best")
        return self._plain(model, d).eval()

    # -- Ctrl-C: finish the step, write a checkpoint, stop -------------------------------------------

    def _catch_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            if self.dist.main:
                print("\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort)", flush=True)

        return signal.signal(signal.SIGINT, handler)

    def _restore_sigint(self, previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _seed_all(seed: int) -> None:
    """Seed torch, Python and NumPy: the same run draws the same numbers."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
