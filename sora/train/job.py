"""A training job from a recipe: data, model, training, test evaluation, baseline, files.

``train_recipe`` is what ``sora train`` and ``sora run`` call. Its parts are separate functions so
that later stages (analysis, compression) can start from what it returns:

    data = prepare_recipe_data(recipe.data, out_dir)        # sora.data, tokenizer trained once
    config = complete_model_config(recipe.model, data)      # vocabulary, classes, special ids
    run = train_recipe(recipe, out_dir)                     # all of it -> TrainedRun

Files: ``OUT/model`` (the selected model with ``tokenizer.json`` and ``meta.json``: labels,
metrics, provenance), ``OUT/metrics.json``, ``OUT/best``, ``OUT/checkpoints/step-N``,
``OUT/logs`` (TensorBoard, ``train.jsonl``), ``OUT/run.json`` (the run that owns the folder).
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import torch
from tokenizers import Tokenizer
from torch import nn

from sora.configio import validate
from sora.data import DataConfig, prepare_data
from sora.data.duplicates import summary as duplicates_summary
from sora.data.protocol import TaskData
from sora.data.splits import unusable_split
from sora.errors import ConfigError, SoraError
from sora.models import ModelConfig, load_meta, load_model, load_tokenizer, save_model
from sora.models.adapters import merge_lora
from sora.models.build import build_within_memory
from sora.models.checks import require_fits, require_same_labels
from sora.models.folder import TOKENIZER
from sora.tasks import Task, describe_groups, evaluate, evaluate_by, task_for
from sora.train import distributed
from sora.train.adapters import save_adapter_folder, start_adapters
from sora.train.baseline import describe as describe_baseline
from sora.train.baseline import text_baseline
from sora.train.checkpoint import latest_checkpoint
from sora.train.config import TrainConfig
from sora.train.killpoints import kill_point
from sora.train.pretrain import pretrain_masked_lm, token_embedding, training_sequences
from sora.train.run_folder import identity, read_run, resumed_run, write_json
from sora.train.trainable import require_trainable
from sora.train.trainer import Trainer, TrainResult
from sora.train.word_vectors import init_token_embedding

TOKENIZER_HANDOFF = ".tokenizer.json"  # rank 0 trains the tokenizer; the other ranks read it from here


@dataclass
class TrainedRun:
    model: nn.Module  # the selected model (best by validation), eval mode, CPU
    data: TaskData  # the prepared data (sora.data.Prepared)
    task: Task
    result: TrainResult
    metrics: dict[str, Any] = field(default_factory=dict)  # what metrics.json holds
    model_dir: Path | None = None  # OUT/model (None when interrupted, or on ranks other than 0)
    main: bool = True  # rank 0 (only it should run later stages that write files)


def prepare_recipe_data(
    data_section: dict[str, Any] | Any,
    out_dir: Path,
    *,
    dist: distributed.Dist | None = None,
    resume: bool = False,
    tokenizer=None,
):
    """Prepare the recipe's data once: on resume, reuse the run's newest checkpoint's tokenizer; under
    torchrun, rank 0 trains the tokenizer and the other ranks load it."""
    cfg = _data_config(data_section)
    d = dist or distributed.Dist()
    if tokenizer is None and resume:
        tokenizer = _resumed_tokenizer(Path(out_dir))
    if not d.enabled or tokenizer is not None:
        return prepare_data(cfg, tokenizer=tokenizer)
    handoff = Path(out_dir) / TOKENIZER_HANDOFF
    data = None
    if d.main:
        data = prepare_data(cfg)
        if data.tokenizer is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            data.tokenizer.save(str(handoff))
    d.barrier()
    if not d.main:
        data = prepare_data(cfg, tokenizer=Tokenizer.from_file(str(handoff)) if handoff.exists() else None)
    d.barrier()
    if d.main and handoff.exists():
        handoff.unlink()
    return data


def complete_model_config(config: ModelConfig, data, note: Callable[[str], None] | None = None) -> ModelConfig:
    """The model config with what the data decides: input kind, vocabulary, classes, special ids.

    The data wins where they differ (a model must fit its tokenizer); each change is noted.
    """
    fields = data.model_fields()
    if data.labels and "n_classes" not in fields and data.task == "classification":
        fields["n_classes"] = len(data.labels)
    current = config.model_dump()
    if config.arch == "token_classifier" and data.task == "ctc":
        fields.pop("n_classes", None)
        if data.labels:
            fields["n_classes"] = len(data.labels)
    for key in ("image", "audio"):
        if isinstance(fields.get(key), dict) and isinstance(current.get(key), dict):
            fields[key] = {**current[key], **fields[key]}
    changed = {k: v for k, v in fields.items() if current.get(k) != v and v is not None}
    if note:
        for key, value in changed.items():
            if current.get(key) is not None and key not in ("image", "audio"):
                note(f"model.{key}: {current[key]} -> {value} (from the data)")
    try:
        return ModelConfig.model_validate({**current, **changed})
    except ValueError as e:
        raise ConfigError(f"model: does not fit the data ({e})") from None


def train_recipe(
    recipe,
    out_dir: str | Path,
    *,
    resume: bool = False,
    on_model: Callable[[nn.Module], None] | None = None,
    log: Callable[[str], None] | None = None,
    stop_after_steps: int | None = None,
) -> TrainedRun:
    """Prepare data, build the model (``on_model`` sees it first), train, test, write the files."""
    if recipe.train is None:
        raise ConfigError(f"recipe '{recipe.name}': no train section")
    if recipe.data is None:
        raise ConfigError(f"recipe '{recipe.name}': a train section needs a data section")
    cfg = recipe.train if isinstance(recipe.train, TrainConfig) else _train_config(recipe.train)
    out_dir = Path(out_dir)
    data_cfg = _data_config(recipe.data)
    run_spec = {"recipe": recipe.name, "data": data_cfg.model_dump(mode="json")}
    if resume:  # before the data is prepared: a resume with another recipe fails at once
        resumed_run(out_dir, identity(cfg, **run_spec))
    d = distributed.setup(cfg.device)
    say = (log or print) if d.main and not cfg.quiet else (lambda _msg: None)
    try:
        if d.main:
            out_dir.mkdir(parents=True, exist_ok=True)
        d.barrier()
        data = prepare_recipe_data(data_cfg, out_dir, dist=d, resume=resume)
        require_trainable(data)  # all-empty texts or one class: refused now, not after training
        torch.manual_seed(cfg.seed)  # the same initial weights on every process and every run
        config = complete_model_config(recipe.model, data, note=say)
        model = build_within_memory(config, f"recipe '{recipe.name}': model")
        if on_model is not None and d.main:
            on_model(model)
        meta = {"recipe": recipe.name}
        if cfg.adapters is not None:  # after the pretrained weights are in: they are the adapters' base
            meta["adapters"] = start_adapters(model, cfg.adapters, getattr(recipe, "init", None), say, main=d.main)
        if cfg.pretrain is not None and not resume:  # a resumed run's checkpoint holds the pretrained body
            meta["pretrain"] = pretrain(model, data, cfg, say)
        run = train_and_test(
            model,
            data,
            cfg,
            out_dir,
            dist=d,
            resume=resume,
            meta=meta,
            stop_after_steps=stop_after_steps,
            log=say,
            run_spec=run_spec,
        )
        return run
    finally:
        d.close()


def pretrain(model: nn.Module, data: TaskData, cfg: TrainConfig, say: Callable[[str], None]) -> dict:
    """``train.pretrain`` on the training split's texts: word vectors (ppmi) or masked-LM training (mlm)."""
    pre = cfg.pretrain
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if pre.objective == "ppmi":
        say(f"pretraining: word vectors of the training texts (PPMI, window {pre.window}) ...")
        return init_token_embedding(token_embedding(model), training_sequences(data), pre.window)
    say(f"pretraining: masked tokens of the training texts, {pre.epochs:g} epochs ...")
    return pretrain_masked_lm(model, data, pre, batch_size=cfg.batch_size, seed=cfg.seed, log=say)


def train_and_test(
    model: nn.Module,
    data: TaskData,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    dist: distributed.Dist | None = None,
    resume: bool = False,
    meta: dict | None = None,
    stop_after_steps: int | None = None,
    log: Callable[[str], None] = print,
    run_spec: dict[str, Any] | None = None,
) -> TrainedRun:
    """Train ``model`` on ``data``, then evaluate the selected model on the test split and save it.

    ``run_spec`` (recipe, data) joins the run's identity, which a resume must match (sora.train.run_folder)."""
    d = dist or distributed.Dist()
    quality = {k: v for k, v in getattr(data, "info", {}).items() if k in ("duplicates", "overlap")}
    if d.main:
        for line in duplicates_summary(quality):  # repeated inputs, and held-out examples also in training
            log(line)
    trainer = Trainer(model, data, cfg, out_dir, resume=resume, meta=meta, dist=d, run_spec=run_spec)
    result = trainer.fit(stop_after_steps=stop_after_steps)
    task = trainer.task
    run = TrainedRun(model=result.model, data=data, task=task, result=result, main=d.main)
    if result.interrupted:
        return run
    kill_point("trained", result.step)
    final = result.model.to(d.device)
    metrics: dict[str, Any] = {
        "recipe": (meta or {}).get("recipe"),
        "task": task.name,
        "dataset": data.name,
        "parameters": sum(p.numel() for p in final.parameters()),
    }
    if quality:
        metrics["data"] = quality
    if (meta or {}).get("pretrain"):
        metrics["pretrain"] = meta["pretrain"]
    if (meta or {}).get("adapters"):  # what trained: the adapter, its base, trainable and total parameters
        metrics["adapters"] = meta["adapters"]
    best_validation = result.best_validation()
    if best_validation is not None:
        metrics["validation"] = best_validation
    if data.has_split("test"):
        metrics.update(_test(final, data, with_beam(task, cfg.test_beam), cfg, trainer.eval_bs, d, log))
    run.model = final = final.cpu().eval()
    if d.main:
        baseline = text_baseline(data)
        if baseline is not None:
            metrics["baseline"] = baseline
            log(describe_baseline(baseline))
    metrics["train"] = {
        "steps": result.step,
        "epochs": round(result.epoch, 3),
        "stopped": result.stopped,
        "minutes": round(result.elapsed_s / 60, 2),
        "world_size": d.world_size,
        "precision": cfg.precision,
        "examples_per_s": round(result.throughput["examples_per_s"], 1),
        "tokens_per_s": round(result.throughput["tokens_per_s"], 1),
    }
    metrics["best"] = result.best
    metrics["history"] = result.history
    run.metrics = metrics
    if d.main:
        provenance = {**_provenance(data, cfg, result, d), "run_id": trainer.run_id}
        model_meta = {
            **(meta or {}),
            "task": task.name,
            "labels": data.labels,
            "preprocessing": data.preprocessing(),  # how raw images/audio become inputs (sora.data.preprocess)
            "metrics": {
                k: metrics[k] for k in ("validation", "test", "test_by", "test_extra", "baseline") if k in metrics
            },
            "provenance": provenance,
        }
        if final.config.adapter is not None and "adapters" in (meta or {}):
            adapter_dir = save_adapter_folder(
                final, out_dir / "adapter", meta["adapters"], tokenizer=data.tokenizer, meta=model_meta
            )
            metrics["adapter_dir"] = str(adapter_dir)
            run.model = final = merge_lora(final)  # OUT/model: LoRA folded into the weights
            log(f"adapter folder: {adapter_dir} (base {meta['adapters']['base']['path']})")
        run.model_dir = save_model(final, out_dir / "model", tokenizer=data.tokenizer, meta=model_meta)
        kill_point("saved", result.step)
        metrics["model_dir"] = str(run.model_dir)
        write_json(out_dir / "metrics.json", metrics)
        log(f"model folder: {run.model_dir}")
    d.barrier()
    return run


def _test(model, data, task, cfg: TrainConfig, batch_size: int, d: distributed.Dist, log) -> dict[str, Any]:
    """The test metrics, and with ``train.test_by`` the same for each value of that data column."""
    shard = {"rank": d.rank, "world_size": d.world_size, "num_workers": cfg.num_workers}
    decoded = cfg.test_decode_examples if cfg.test_decode_examples is not None else 2**31 - 1  # null: all
    options = {
        "device": d.device,
        "precision": cfg.precision,
        "decode_examples": -(-decoded // d.world_size),
        "reduce": d.sum if d.enabled else None,
    }
    out: dict[str, Any] = {}
    if cfg.test_by is None:
        out["test"] = evaluate(model, data.loader("test", batch_size, **shard), task, **options)
    else:
        out["test"], groups = evaluate_by(model, data, "test", cfg.test_by, task, batch_size, **shard, **options)
        out["test_by"] = {cfg.test_by: groups}
    log(f"test: {_short(out['test'])}")
    for line in describe_groups(cfg.test_by, groups) if cfg.test_by else []:
        log(f"test {line}")
    for split in [k for k in data.extra_splits() if data.has_split(k)]:  # out-of-domain test sets (SQuADShifts)
        out.setdefault("test_extra", {})[split] = evaluate(
            model, data.loader(split, batch_size, **shard), task, **options
        )
        log(f"test {split}: {_short(out['test_extra'][split])}")
    return out


# -- evaluation of a saved model ----------------------------------------------------------------------


def evaluate_folder(
    model_dir: str | Path,
    data: DataConfig | dict[str, Any],
    *,
    split: str = "test",
    batch_size: int = 64,
    decode_examples: int = 200,
    max_batches: int | None = None,
    beam: int = 1,
) -> dict[str, Any]:
    """Metrics of a saved model folder on a split of a dataset, tokenized with the folder's tokenizer
    (seq2seq: BLEU of the first ``decode_examples`` decodes, beam search when ``beam`` > 1).

    ``data`` is a validated DataConfig (``sora.data.read_data_config``) or a recipe's data section."""
    model = load_model(model_dir)
    cfg = data if isinstance(data, DataConfig) else validate(DataConfig, data, source="data", prefix=("data",))
    tokenizer = load_tokenizer(model_dir)
    _require_tokenizer(model, tokenizer, cfg, model_dir)
    data = prepare_data(cfg, tokenizer=tokenizer)
    if not data.has_split(split):
        raise SoraError(
            unusable_split(
                split,
                {k: len(v) for k, v in data.splits.items()},
                data.name or "the data",
                getattr(cfg.split, split, None),
            )
        )
    require_same_labels(model, load_meta(model_dir), data.labels, model_where=model_dir, data_where=data.name)
    require_fits(model.config, data, data.name)  # after: a label mismatch is named label by label
    task = with_beam(task_for(data, model, decode_examples=decode_examples), beam)
    metrics = evaluate(
        model, data.loader(split, batch_size), task, max_batches=max_batches, decode_examples=decode_examples
    )
    return {"model": str(model_dir), "dataset": data.name, "split": split, "task": task.name, "metrics": metrics}


def _require_tokenizer(model: nn.Module, tokenizer, cfg: DataConfig, model_dir: str | Path) -> None:
    """A text model reads the ids of the tokenizer it was trained with: one trained anew on the data
    would give other ids, and metrics that look plausible but mean nothing."""
    if tokenizer is None and model.config.input == "text" and cfg.tokenizer.kind != "pretrained":
        raise SoraError(
            f"{model_dir}: the folder lacks {TOKENIZER}, which a text model needs (a tokenizer trained "
            "anew would give other ids); copy it from the training run, or name one with "
            "data.tokenizer: {kind: pretrained, path: ...}"
        )


# -- helpers ------------------------------------------------------------------------------------------


def _train_config(section: dict[str, Any]) -> TrainConfig:
    return validate(TrainConfig, section, source="recipe", prefix=("train",))


def _data_config(section: dict[str, Any] | DataConfig) -> DataConfig:
    return (
        section if isinstance(section, DataConfig) else validate(DataConfig, section, source="recipe", prefix=("data",))
    )


def _resumed_tokenizer(out_dir: Path):
    """The tokenizer of the newest checkpoint of the run in ``out_dir`` (None before its first)."""
    run = read_run(out_dir)
    last = latest_checkpoint(out_dir / "checkpoints", run["run_id"]) if run is not None else None
    return load_tokenizer(last) if last is not None else None


def _provenance(data, cfg: TrainConfig, result: TrainResult, d: distributed.Dist) -> dict[str, Any]:
    try:
        sora_version = version("sora")
    except PackageNotFoundError:
        sora_version = "unknown"
    return {
        "dataset": data.name,
        "data_config": data.config.model_dump(mode="json"),
        "train_config": cfg.model_dump(mode="json"),
        "steps": result.step,
        "stopped": result.stopped,
        "best": result.best,
        "world_size": d.world_size,
        "device": str(d.device),
        "sora": sora_version,
        "torch": torch.__version__,
        "git_commit": _git_commit(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _short(metrics: dict[str, float]) -> str:
    keys = [k for k in metrics if not k.startswith("f1_")] + [k for k in metrics if k.startswith("f1_")]
    return " ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def with_beam(task: Task, beam: int) -> Task:
    """``task`` decoding with beam search of width ``beam`` (a copy), where the task decodes at all."""
    if beam == 1 or not hasattr(task, "beam"):
        return task
    beamed = copy.copy(task)
    beamed.beam = beam
    return beamed
