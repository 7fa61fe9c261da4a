"""Tasks: what a model's outputs mean, in the one place training, analysis, compression and deployment read.

    from sora.tasks import evaluate, task_for
    task = task_for(data, model)                        # from prepared data (sora.data.TaskData)
    metrics = evaluate(model, data.loader("test", 64), task)

A task runs a model on a batch (the data layer's batch contract), gives its training loss, its
validation metrics, a loss per example with a [0, 1] metric (analysis), and decodes (greedy CTC,
seq2seq generation). It sits on models and data and below train, so the stages above train and a
deployment can use it without the training loop.

Layout: ``base`` (the Task contract, Score), ``kinds`` (one class per task, greedy CTC), ``registry``
(tasks by name, from a model, from data), ``evaluation`` (a model over batches), ``metrics``
(additive statistics: confusion, edit distance, BLEU), ``question_answering`` (the span task), ``spans``
(best answer spans), ``squad`` (exact match and F1), ``groups`` (metrics by a column's values),
``device`` (batches to a device, autocast).
"""

from sora.tasks.base import IGNORE, Score, Task, unwrap
from sora.tasks.evaluation import evaluate, evaluation_totals, loss_and_metric, run_model, score, score_figures
from sora.tasks.groups import describe_groups, evaluate_by, group_rows
from sora.tasks.kinds import CTC, Classification, Features, LanguageModel, Seq2SeqTask, TokenClassification, greedy_ctc
from sora.tasks.question_answering import SpanTask
from sora.tasks.registry import ALIASES, TASKS, as_task, check_batch, infer_task, make_task, normalise_task, task_for

__all__ = [
    "ALIASES",
    "CTC",
    "Classification",
    "Features",
    "IGNORE",
    "LanguageModel",
    "Score",
    "Seq2SeqTask",
    "SpanTask",
    "TASKS",
    "Task",
    "TokenClassification",
    "as_task",
    "check_batch",
    "describe_groups",
    "evaluate",
    "evaluate_by",
    "evaluation_totals",
    "group_rows",
    "greedy_ctc",
    "infer_task",
    "loss_and_metric",
    "make_task",
    "normalise_task",
    "run_model",
    "score",
    "score_figures",
    "task_for",
    "unwrap",
]
