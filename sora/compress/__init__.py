"""Compression on evidence: structural, vocabulary and unstructured pruning, int8 quantization, LoRA.

A compressed model is an ordinary model folder: ``sora.models.load_model`` reloads a pruned or int8
one without this package (the int8 modules are particles, ``sora.particles.int8``).
"""

from sora.compress.config import CompressConfig, FinetuneConfig, LoRAConfig, PruneConfig, QuantizeConfig
from sora.compress.lora import add_lora, load_adapter, merge, save_adapter, trainable_parameters
from sora.compress.plan import PrunePlan, plan_from_names, plan_from_scores
from sora.compress.quantize import is_quantized, quantize_model, save_quantized
from sora.compress.scores import magnitude_scores, read_scores
from sora.compress.structural import mask_model, prune_model
from sora.compress.unstructured import magnitude_prune, sparsity_report
from sora.compress.vocabulary import prune_vocabulary

__all__ = [
    "CompressConfig",
    "FinetuneConfig",
    "LoRAConfig",
    "PruneConfig",
    "PrunePlan",
    "QuantizeConfig",
    "add_lora",
    "is_quantized",
    "load_adapter",
    "magnitude_prune",
    "magnitude_scores",
    "mask_model",
    "merge",
    "plan_from_names",
    "plan_from_scores",
    "prune_model",
    "prune_vocabulary",
    "quantize_model",
    "read_scores",
    "save_adapter",
    "save_quantized",
    "sparsity_report",
    "trainable_parameters",
]
