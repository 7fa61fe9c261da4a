"""Particle analysis: take a trained model apart, measure every particle, and show it.

- tracing: activation caches and hooks by hook-point name (``layers.1.attn.hook_z``)
- ablation: remove any particle by name (zero, dataset mean, resampled from another input)
- importance: head importance (Michel et al. 2019), neuron Taylor scores, measured ablation, agreement
- attention: per-head statistics and head types; position: position-vector similarity
- rankings/checks/curve_stats: every head and neuron ranking (gradient, Fisher, iterative, ablation ...)
  checked against random and reverse order, with bootstrap intervals; the one to prune by
- reconstruct: mask tuning by per-layer output reconstruction (Kwon et al. 2022)
- pruning: the pruning curve of one ranking (importance vs random vs reverse order)
- examples: a few inputs drawn per modality: attention over the image (overlays), along the spectrogram,
  cross-attention as word alignment (alignment)
- stage/report: ``analyze_model`` writes analysis.json and a self-contained report.html

How a model runs on a batch and what its loss and [0, 1] metric are is the task's (sora.tasks, one
layer below): ``run_model``, ``score``, ``loss_and_metric`` and ``infer_task`` are re-exported here.
"""

from sora.analyze.ablation import ablate, activation_means
from sora.analyze.attention import attention_statistics, head_type
from sora.analyze.config import AnalyzeConfig
from sora.analyze.importance import ablation_scores, agreement, gradient_scores, spearman
from sora.analyze.position import position_analysis
from sora.analyze.pruning import gates_off, pruning_curves
from sora.analyze.stage import analyze_model
from sora.analyze.tracing import ActivationCache, caching, hook_points, hooks, run_with_cache, select_hooks
from sora.tasks import infer_task, loss_and_metric, run_model, score

__all__ = [
    "ActivationCache",
    "AnalyzeConfig",
    "ablate",
    "ablation_scores",
    "activation_means",
    "agreement",
    "analyze_model",
    "attention_statistics",
    "caching",
    "gates_off",
    "gradient_scores",
    "head_type",
    "hook_points",
    "hooks",
    "infer_task",
    "loss_and_metric",
    "position_analysis",
    "pruning_curves",
    "run_model",
    "run_with_cache",
    "score",
    "select_hooks",
    "spearman",
]
