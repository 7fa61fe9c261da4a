"""Pruning by plan: the one step ``sora prune`` takes once and the compress stage takes every round.

``prune`` is the whole of ``sora prune`` (a step, then magnitude sparsity and the vocabulary); the
compress stage (sora.compress.stage) runs ``prune_by_plan`` in rounds with fine-tuning between them.

A step chooses what goes on the model as it is (particles by name, and the least important heads,
neurons or blocks by importance scores and a budget), gathers it into one ``PrunePlan`` and applies
it (``prune_model``). It returns the smaller model with the plan and its counts, both numbered as in
the model before the step, which is what a report records and what ``renamed`` maps forward.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from tokenizers import Tokenizer
from torch import nn

from sora.compress.config import PruneConfig
from sora.compress.plan import PrunePlan, plan_from_names, plan_from_scores
from sora.compress.scores import magnitude_scores, read_choice, read_scores
from sora.compress.structural import prune_model
from sora.compress.unstructured import magnitude_prune
from sora.compress.vocabulary import prune_vocabulary
from sora.models.anatomy import summary


@dataclass
class PruneStep:
    model: nn.Module  # the pruned model: a new one, the input is untouched
    plan: PrunePlan  # what went, numbered as in the model before the step
    counts: dict  # PrunePlan.summary: heads and neurons removed of their totals, the blocks dropped

    def record(self) -> dict:
        """What a report keeps of the step: the names removed, then the counts."""
        return {"removed": self.plan.names(), **self.counts}


def prune_by_plan(
    model: nn.Module,
    *,
    remove: list[str] | tuple[str, ...] = (),
    where: str = "plan",
    scores: dict[str, float] | None = None,
    source: str = "scores",
    heads: float | None = None,
    neurons: float | None = None,
    layers: int | None = None,
    scope: str = "global",
    normalize: bool = True,
) -> PruneStep:
    """Remove the particles named in ``remove`` (unknown names fail naming ``where``) and the least
    important ``heads`` and ``neurons`` fractions and ``layers`` blocks by ``scores`` (from ``source``),
    all chosen on ``model`` as it is: a unit both named and chosen by score goes once."""
    plan = plan_from_names(model, list(remove), where=where)
    if heads or neurons or layers:
        plan.add(
            plan_from_scores(
                model,
                scores or {},
                heads=heads,
                neurons=neurons,
                layers=layers,
                scope=scope,
                normalize=normalize,
                source=source,
            )
        )
    return PruneStep(prune_model(model, plan), plan, plan.summary(model))


def prune(
    model: nn.Module,
    config: PruneConfig,
    *,
    where: str = "plan",
    tokenizer: Tokenizer | None = None,
    data=None,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, Tokenizer | None, dict]:
    """``sora prune``: one prune step by ``config``, then its magnitude sparsity, then (with ``data``, prepared)
    only the tokens its training texts use. Returns the pruned model (the input is untouched), its
    tokenizer and the record for meta.json.

    Without ``config.scores`` the budgets rank units by weight magnitude (no data is at hand)."""
    info: dict = {"config": config.model_dump(mode="json")}
    pruned = model
    if config.structural:
        scores, source = _scores(model, config, log) if config.heads or config.neurons else (None, "scores")
        checked = bool(read_choice(config.scores)) if config.scores and scores is not None else False
        step = prune_by_plan(
            model,
            remove=config.remove,
            where=where,
            scores=scores,
            source=str(source),
            heads=config.heads,
            neurons=config.neurons,
            scope=config.scope,
            normalize=config.normalize if "normalize" in config.model_fields_set or not checked else False,
        )  # an analysis' checked ranking is an order across layers already
        pruned = step.model
        info.update(step.record())
    if config.sparsity is not None:
        pruned = pruned if pruned is not model else copy.deepcopy(model)  # magnitude_prune zeroes in place
        info["sparsity"] = magnitude_prune(pruned, config.sparsity, scope=config.sparsity_scope)
    if data is not None:
        vocabulary = prune_vocabulary(pruned, data.tokenizer, data.texts("train"))
        pruned, tokenizer, info["vocabulary"] = vocabulary.model, vocabulary.rebuild(tokenizer), vocabulary.report
        log(
            f"vocabulary {vocabulary.report['vocabulary_before']:,} -> {vocabulary.report['vocabulary_after']:,} "
            f"tokens (used by {len(data.texts('train')):,} training texts, plus single characters)"
        )
    info["before"], info["after"] = summary(model), summary(pruned)
    return pruned, tokenizer, info


def _scores(model: nn.Module, config: PruneConfig, log) -> tuple[dict[str, float], str]:
    if config.scores:
        return read_scores(config.scores), config.scores
    log("scores: weight magnitudes (no --scores given; `sora analyze` measures importance on data)")
    return magnitude_scores(model), "weight magnitudes"
