"""Training: optimizers and schedules, the loop, validation, checkpoints and exact resume,
logging and data parallelism. The per-task losses and metrics it trains and validates with live in
sora.tasks (one layer below), which the stages above reuse; ``Task``, ``evaluate``, ``make_task`` and
``task_for`` are re-exported here.

    from sora.train import TrainConfig, Trainer, evaluate, train_recipe
    run = train_recipe(load_recipe("recipes/sentiment.yaml"), "runs/sentiment")
    metrics = evaluate(model, data.loader("test", 64), "classification")

Layout: ``config`` (the ``train:`` section), ``optim`` (optimizers, schedules), ``trainer`` (the loop),
``checkpoint`` (atomic, pickle-free, exact resume), ``distributed`` (torchrun: DDP, FSDP2),
``logbook`` (TensorBoard, JSONL, progress bar), ``baseline`` (TF-IDF + logistic regression),
``job`` (a recipe end to end). Text from a model folder (``generate_text``) lives in sora.models.generate,
where deployment can use it too.
"""

from sora.tasks import Task, evaluate, make_task, task_for
from sora.train.config import EarlyStopping, TrainConfig
from sora.train.job import (
    TrainedRun,
    complete_model_config,
    evaluate_folder,
    prepare_recipe_data,
    train_and_test,
    train_recipe,
)
from sora.train.trainer import Trainer, TrainResult

__all__ = [
    "EarlyStopping",
    "Task",
    "TrainConfig",
    "TrainResult",
    "TrainedRun",
    "Trainer",
    "complete_model_config",
    "evaluate",
    "evaluate_folder",
    "make_task",
    "prepare_recipe_data",
    "task_for",
    "train_and_test",
    "train_recipe",
]
