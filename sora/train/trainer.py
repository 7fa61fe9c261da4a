"""The training loop: steps, validation, best model, early stopping, checkpoints, exact resume.

One optimizer step takes ``grad_accum`` micro-batches. Each micro-batch's loss is a *sum* over
its targets, divided by the number of targets in the whole step on every process, so
accumulation and data parallelism reproduce one large batch exactly. Validation runs after
every epoch (and every ``validate_every_steps``); the best model by the chosen metric is kept in
``OUT/best``; a checkpoint follows every validation and every stop decision, and ``resume`` restores
model, optimizer, schedule position, random generators, the data position, the best-model record
and the stop decision, so a run killed at any moment and resumed ends bit-identical to one that
never stopped. ``OUT/run.json`` names the run that owns the folder (sora.train.run_folder): only its
checkpoints are rotated and resumed.

``data`` is a prepared dataset (sora.data): ``loader(split, batch_size, ...)``,
``num_batches(split, batch_size, world_size)``, ``task``, ``labels``, ``tokenizer``.
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
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from sora.errors import ConfigError, SoraError
from sora.models import build_model, load_model, save_model
from sora.particles import MultiHeadAttention
from sora.train import checkpoint as ckpt
from sora.train import distributed, run_folder
from sora.train.config import TrainConfig
from sora.train.device import autocast, check_precision, to_device
from sora.train.killpoints import kill_point
from sora.train.logbook import RunLog, format_metrics
from sora.train.optim import build_optimizer, lr_factor, set_lr
from sora.train.tasks import Task, evaluate, task_for

STATE_VERSION = 1


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


def has_split(data, split: str) -> bool:
    splits = getattr(data, "splits", None)
    if splits is not None and split not in splits:
        return False
    try:
        return data.num_batches(split, 1) > 0
    except (SoraError, KeyError, ValueError):
        return False


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        data,
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
        self.task = task or task_for(data, model, decode_examples=config.decode_examples,
                                     max_new_tokens=config.decode_max_tokens)
        self.resume = resume
        self.run_spec = dict(run_spec or {})
        self.meta = dict(meta or {})
        self.tokenizer = getattr(data, "tokenizer", None)
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
        cfg, data = self.config, self.data
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        check_precision(cfg.precision, d.device)
        if cfg.batch_size % d.world_size:
            raise ConfigError(f"train.batch_size: {cfg.batch_size} does not split evenly over {d.world_size} processes")
        self.local_bs = cfg.batch_size // d.world_size
        self.eval_bs = max(1, (cfg.eval_batch_size or 2 * cfg.batch_size) // d.world_size)
        n_batches = data.num_batches("train", self.local_bs, world_size=d.world_size)
        if n_batches <= 0:
            raise SoraError("the training split is empty")
        steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        total = cfg.max_steps
        if cfg.epochs is not None:
            by_epochs = math.ceil(cfg.epochs * steps_per_epoch)
            total = min(total, by_epochs) if total else by_epochs
        self.validates = has_split(data, "validation")

        torch.manual_seed(cfg.seed + d.rank)
        random.seed(cfg.seed + d.rank)
        np.random.seed(cfg.seed + d.rank)
        model = self.model.to(d.device)
        self.run_id = self._open_run(d)
        state = {"step": 0, "epoch": 0, "batch": 0, "elapsed_s": 0.0, "best": None, "bad_validations": 0,
                 "stopped": None, "history": [], "examples": 0, "tokens": 0}
        restored = self._load_checkpoint(model, d) if self.resume else None
        if restored is not None:
            state.update(restored["trainer"])
        wrapped = distributed.wrap(model, d, cfg.strategy)
        optimizer = build_optimizer(model, cfg)
        scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        if restored is not None:
            self._restore_optimizer(model, optimizer, restored["optimizer"], restored["folder"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        train_fn = torch.compile(wrapped) if cfg.compile else wrapped
        spans = [m.adaptive_span for m in model.modules() if isinstance(m, MultiHeadAttention) and m.adaptive_span]
        span_coef = model.config.adaptive_span.penalty if spans else 0.0

        metric, mode = cfg.selection(self.task.monitor)
        min_delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
        log = self.log = RunLog(self.out_dir, enabled=d.main, quiet=cfg.quiet, total=total, initial=state["step"])
        step, epoch, batch = state["step"], state["epoch"], state["batch"]
        t0, before = time.monotonic(), state["elapsed_s"]
        window = {"loss": 0.0, "count": 0.0, "examples": 0.0, "tokens": 0.0, "t": time.monotonic(), "steps": 0}
        last_ckpt: Path | None = None
        previous_handler = self._catch_sigint()
        stopped = self._decided_stop(state, total)
        pending_rng = restored["rng"] if restored is not None else None
        try:
            while stopped is None:
                if pending_rng is not None and batch == 0:  # a fresh epoch: its loader comes after the saved state
                    ckpt.restore_rng(*pending_rng, d.rank)
                    pending_rng = None
                loader = data.loader("train", self.local_bs, shuffle=True, seed=cfg.seed, epoch=epoch,
                                     start_batch=batch, rank=d.rank, world_size=d.world_size,
                                     num_workers=cfg.num_workers)
                batches = iter(loader)
                if pending_rng is not None:  # mid-epoch: the loader was made before the saved state
                    ckpt.restore_rng(*pending_rng, d.rank)
                    pending_rng = None
                while stopped is None and batch < n_batches:
                    group = list(islice(batches, min(cfg.grad_accum, n_batches - batch)))
                    if not group:
                        break
                    elapsed = before + time.monotonic() - t0
                    progress = elapsed / (cfg.max_minutes * 60) if cfg.max_minutes else None
                    lr = cfg.lr * lr_factor(step, total, cfg, progress)
                    set_lr(optimizer, lr)
                    out = self._step(model, wrapped, train_fn, optimizer, scaler, group, spans, span_coef)
                    step, batch = step + 1, batch + len(group)
                    for key in ("loss", "count", "examples", "tokens"):
                        window[key] += out[key]
                    window["steps"] += 1
                    state["examples"] += out["examples"] * d.world_size
                    state["tokens"] += out["tokens"] * d.world_size
                    log.advance(1)
                    kill_point("step", step)
                    if step % cfg.log_every == 0 or step == total:
                        self._log_train(window, step, lr, out["grad_norm"], epoch + batch / n_batches)
                    end_of_epoch = batch >= n_batches
                    if end_of_epoch:
                        epoch, batch = epoch + 1, 0
                    elapsed = before + time.monotonic() - t0
                    stopped = self._end_of_steps(step, total)
                    time_up, halt = self._agree(bool(cfg.max_minutes) and elapsed >= cfg.max_minutes * 60,
                                                self._stop_requested or step == stop_after_steps)
                    if stopped is None and time_up:
                        stopped = "max_minutes"
                    if stopped is None and halt:
                        stopped = "interrupted"
                    # scheduled validations run even when interrupted, so a resumed run's history matches
                    validate = self.validates and (
                        end_of_epoch or stopped not in (None, "interrupted")
                        or (cfg.validate_every_steps is not None and step % cfg.validate_every_steps == 0))
                    if validate:
                        record = self._validate(model, step, epoch + batch / n_batches)
                        state["history"].append(record)
                        if metric not in record:
                            raise ConfigError(
                                f"train.best_metric / train.early_stopping.metric: {metric!r} is not a validation "
                                f"metric of the {self.task.name} task (has: {', '.join(k for k in record if k not in ('step', 'epoch'))})")
                        value = record[metric]
                        best = state["best"]
                        better = best is None or (value < best["value"] - min_delta if mode == "min"
                                                  else value > best["value"] + min_delta)
                        if better:
                            state["best"] = {"metric": metric, "mode": mode, "value": value, "step": step}
                            state["bad_validations"] = 0
                            self._save_best(model, d, record)
                        else:
                            state["bad_validations"] += 1
                            if cfg.early_stopping and state["bad_validations"] >= cfg.early_stopping.patience:
                                stopped = stopped or "early_stopping"
                                log.say(f"early stopping: no {metric} improvement in {cfg.early_stopping.patience} "
                                        f"validations (best {best['value']:.4g} at step {best['step']})")
                        kill_point("validated", step)
                    checkpoint_now = validate or stopped is not None or (
                        cfg.checkpoint_every_steps is not None and step % cfg.checkpoint_every_steps == 0)
                    if checkpoint_now:
                        state.update(step=step, epoch=epoch, batch=batch, elapsed_s=before + time.monotonic() - t0,
                                     stopped=None if stopped == "interrupted" else stopped)
                        if scaler is not None:
                            state["scaler"] = scaler.state_dict()
                        last_ckpt = self._save_checkpoint(model, optimizer, d, state)
                        kill_point("checkpointed", step)
                    if end_of_epoch:
                        break
        finally:
            self._restore_sigint(previous_handler)
            log.close()
        elapsed = before + time.monotonic() - t0
        if stopped == "interrupted":
            log.say(f"stopped at step {step}: checkpoint {last_ckpt}; continue with --resume")
        final = self._final_model(model, d, state)
        return TrainResult(
            model=final, step=step, epoch=epoch + batch / n_batches, stopped=stopped, best=state["best"],
            history=state["history"], elapsed_s=elapsed, checkpoint=last_ckpt,
            throughput={"examples_per_s": state["examples"] / max(elapsed, 1e-9),
                        "tokens_per_s": state["tokens"] / max(elapsed, 1e-9)},
        )

    def _decided_stop(self, state: dict, total: int | None) -> str | None:
        """Why a run at ``state`` is already over (None: it is not): an early stop decided before a
        checkpoint stays decided, and the run's length may have been changed for the resume."""
        if state["stopped"] == "early_stopping":
            return "early_stopping"
        reached = self._end_of_steps(state["step"], total)
        minutes = self.config.max_minutes
        if reached is None and minutes and state["elapsed_s"] >= minutes * 60:
            return "max_minutes"
        return reached

    def _end_of_steps(self, step: int, total: int | None) -> str | None:
        """"max_steps" or "epochs" once ``step`` reaches the run's length."""
        if total is None or step < total:
            return None
        return "max_steps" if self.config.max_steps == total else "epochs"

    def _agree(self, *flags: bool) -> list[bool]:
        """Each flag True on every process when it is True on any: processes stop together."""
        sums = self.dist.sum(torch.tensor([float(f) for f in flags], dtype=torch.float64))
        return [bool(v > 0) for v in sums.tolist()]

    def _step(self, model, wrapped, train_fn, optimizer, scaler, group, spans, span_coef) -> dict[str, Any]:
        """One optimizer step over ``group`` (the micro-batches of one accumulation)."""
        cfg, d, task = self.config, self.dist, self.task
        model.train()
        local = sum(task.targets(b) for b in group)
        total = float(d.sum(torch.tensor([float(local)], dtype=torch.float64)).item())
        scale = d.world_size / max(total, 1.0)  # DDP averages over processes: undo that, divide by all targets
        loss_sum, examples, tokens = 0.0, 0, 0
        for i, raw in enumerate(group):
            batch = to_device(raw, d.device)
            with distributed.grad_sync(wrapped, i == len(group) - 1), autocast(d.device, cfg.precision):
                try:
                    loss = task.loss(train_fn, batch, cfg.label_smoothing)
                except ValueError as e:
                    if "max_len" in str(e):
                        raise ConfigError(f"model.max_len: {e}") from None
                    raise
                objective = loss * scale
                if spans:
                    objective = objective + span_coef * sum(s.penalty() for s in spans) / len(spans) / len(group)
                (scaler.scale(objective) if scaler is not None else objective).backward()
            loss_sum += float(loss.detach())
            examples += task.examples(raw)
            tokens += task.tokens(raw)
        if not math.isfinite(loss_sum):
            raise SoraError(f"training loss became {loss_sum} (try a lower train.lr, train.clip_grad_norm, or fp32)")
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm or float("inf"))
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for s in spans:
            s.clamp_()
        return {"loss": loss_sum, "count": float(local), "examples": examples, "tokens": tokens, "grad_norm": grad_norm}

    # -- reporting -----------------------------------------------------------------------------------

    def _log_train(self, window: dict, step: int, lr: float, grad_norm: Tensor, epoch: float) -> None:
        d = self.dist
        sums = d.sum(torch.tensor([window["loss"], window["count"], window["examples"], window["tokens"]],
                                  dtype=torch.float64)).tolist()
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a sharded norm
            grad_norm = grad_norm.full_tensor()
        seconds = max(time.monotonic() - window["t"], 1e-9)
        values = {"loss": sums[0] / max(sums[1], 1), "lr": lr, "grad_norm": float(grad_norm),
                  "examples_per_s": sums[2] / seconds, "tokens_per_s": sums[3] / seconds,
                  "steps_per_s": window["steps"] / seconds}
        self.log.scalars("train", values, step)
        self.log.event("train", step, epoch=round(epoch, 4), **values)
        self.log.advance(0, loss=values["loss"], lr=lr, **{"ex/s": round(values["examples_per_s"], 1)})
        window.update(loss=0.0, count=0.0, examples=0.0, tokens=0.0, t=time.monotonic(), steps=0)

    def _validate(self, model: nn.Module, step: int, epoch: float) -> dict[str, Any]:
        cfg, d = self.config, self.dist
        loader = self.data.loader("validation", self.eval_bs, shuffle=False, rank=d.rank, world_size=d.world_size,
                                  num_workers=cfg.num_workers)
        with distributed.gathered(model):
            metrics = evaluate(model, loader, self.task, device=d.device, precision=cfg.precision,
                               max_batches=cfg.eval_max_batches,
                               decode_examples=math.ceil(cfg.decode_examples / d.world_size),
                               reduce=d.sum if d.enabled else None)
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
        return {**self.meta, "labels": getattr(self.data, "labels", None), "task": self.task.name, **extra}

    def _save_best(self, model: nn.Module, d: distributed.Dist, record: dict) -> None:
        plain = self._plain(model, d)
        if d.main:
            save_model(plain, self.out_dir / "best", tokenizer=self.tokenizer,
                       meta=self._model_meta(stage="best", step=record["step"], validation=record))
        d.barrier()

    def _save_checkpoint(self, model, optimizer, d: distributed.Dist, state: dict) -> Path:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        optim_state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True))
        rng = {}
        for key, tensor in ckpt.local_rng_tensors().items():
            for r, t in enumerate(d.gather(tensor)):
                rng[f"{key}.rank{r}"] = t
        plain = self._plain(model, d)
        path = self.out_dir / "checkpoints" / f"step-{state['step']}"
        if d.main:
            trainer = {**state, "version": STATE_VERSION, "run_id": self.run_id, "world_size": d.world_size,
                       "train_config": self.config.model_dump(mode="json")}
            path = ckpt.save_checkpoint(
                self.out_dir / "checkpoints", state["step"], plain, optimizer=ckpt.flatten_optimizer(optim_state),
                rng=(rng, ckpt.host_rng_json()), trainer=trainer, tokenizer=self.tokenizer,
                meta=self._model_meta(stage="checkpoint", step=state["step"]), keep_last=self.config.keep_last)
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

    def _load_checkpoint(self, model: nn.Module, d: distributed.Dist) -> dict | None:
        from safetensors.torch import load_model as load_weights

        folder = ckpt.latest_checkpoint(self.out_dir / "checkpoints", self.run_id)
        if folder is None:
            if d.main and not self.config.quiet:
                print(f"resume: run {self.run_id} has no checkpoint in {self.out_dir / 'checkpoints'} yet; "
                      f"starting it from step 0")
            return None
        restored = ckpt.read_checkpoint(folder)
        trainer = restored["trainer"]
        if trainer.get("world_size", 1) != d.world_size:
            raise SoraError(f"{folder}: written by {trainer.get('world_size')} processes; resume with the same "
                            f"number (torchrun --nproc_per_node={trainer.get('world_size')}), now {d.world_size}")
        weights = folder / "model.safetensors"
        try:
            missing, unexpected = load_weights(model, str(weights), strict=False, device=str(d.device))
        except FileNotFoundError:
            raise SoraError(f"{weights}: missing (an incomplete checkpoint)") from None
        except SafetensorError as e:
            raise SoraError(f"{weights}: damaged ({ckpt.one_line(e)})") from None
        except (RuntimeError, OSError) as e:
            raise SoraError(f"{weights}: does not match this model ({ckpt.one_line(e)})") from None
        if missing or unexpected:
            raise SoraError(f"{weights}: does not match this model "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        keep = {"step", "epoch", "batch", "elapsed_s", "best", "bad_validations", "stopped", "history", "examples",
                "tokens", "scaler"}
        restored["trainer"] = {k: v for k, v in trainer.items() if k in keep}
        restored["folder"] = folder
        if d.main and not self.config.quiet:
            print(f"resume: {folder} (step {trainer['step']}, epoch {trainer['epoch']}, batch {trainer['batch']})")
        return restored

    def _restore_optimizer(self, model, optimizer, flat, folder: Path) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        try:
            state = ckpt.unflatten_optimizer(*flat)
            set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
            raise SoraError(f"{folder}: its optimizer state (optimizer.safetensors, optimizer.json) does not match "
                            f"this model/optimizer ({ckpt.one_line(e)})") from None

    def _final_model(self, model: nn.Module, d: distributed.Dist, state: dict) -> nn.Module:
        best = state["best"]
        if best is not None and (self.out_dir / "best").is_dir():
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
