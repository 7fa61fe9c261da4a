"""Training: optimizers and schedules, the loop, validation, checkpoints and exact resume,
logging, data parallelism, and the per-task losses and metrics other stages reuse.

    from sora.train import TrainConfig, Trainer, evaluate, train_recipe
    run = train_recipe(load_recipe("recipes/sentiment.yaml"), "runs/sentiment")
    metrics = evaluate(model, data.loader("test", 64), "classification")

Layout: ``config`` (the ``train:`` section), ``optim`` (optimizers, schedules), ``tasks`` (loss and
metrics per task, ``evaluate``), ``metrics`` (additive statistics), ``trainer`` (the loop),
``checkpoint`` (atomic, pickle-free, exact resume), ``distributed`` (torchrun: DDP, FSDP2),
``logbook`` (TensorBoard, JSONL, progress bar), ``baseline`` (TF-IDF + logistic regression),
``generate`` (text from a model folder), ``job`` (a recipe end to end).
"""

from sora.train.config import EarlyStopping, TrainConfig
from sora.train.job import TrainedRun, complete_model_config, evaluate_folder, prepare_recipe_data, train_and_test, train_recipe
from sora.train.tasks import Task, evaluate, make_task, task_for
from sora.train.trainer import Trainer, TrainResult

__all__ = [
    "EarlyStopping", "Task", "TrainConfig", "TrainResult", "TrainedRun", "Trainer", "complete_model_config",
    "evaluate", "evaluate_folder", "make_task", "prepare_recipe_data", "task_for", "train_and_test", "train_recipe",
]
