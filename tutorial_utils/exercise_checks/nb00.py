"""Checks for the exercises of ``notebooks/00_primer.ipynb``."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..grading import CheckResult, compare_to_reference, report
from ..induction import induction_scores_from_patterns

__all__ = ["check_induction_score", "check_residual_sum", "reference_residual_sum"]


def reference_residual_sum(cache: Any, n_layers: int) -> torch.Tensor:
    """x_0 + sum_l attn_out_l + sum_l mlp_out_l, ``[batch, pos, d_model]``."""
    total = cache["hook_embed"] + cache["hook_pos_embed"]
    for layer in range(n_layers):
        total = total + cache[f"blocks.{layer}.hook_attn_out"] + cache[f"blocks.{layer}.hook_mlp_out"]
    return total


def check_residual_sum(student_fn: Callable, model: Any) -> CheckResult:
    """Compare the student's residual sum with the reference on fresh prompts, and with the
    model's real final residual stream."""
    prompts = ["The keys on the cabinet are old.", "When Mary and John went to the park,",
               "The capital of France is Paris."]

    def make_inputs(gen: torch.Generator):
        prompt = prompts[int(torch.randint(len(prompts), (1,), generator=gen))]
        with torch.no_grad():
            _, cache = model.run_with_cache(model.to_tokens(prompt))
        return (cache, model.cfg.n_layers)

    result = compare_to_reference("residual_sum", student_fn, reference_residual_sum, make_inputs,
                                  atol=1e-4)
    return report(result)


def check_induction_score(student_fn: Callable) -> CheckResult:
    """Compare the student's induction score with the reference on random attention patterns."""

    def make_inputs(gen: torch.Generator):
        seq_len = int(torch.randint(3, 9, (1,), generator=gen))
        T = 1 + 2 * seq_len
        scores = torch.rand(2, 3, T, T, generator=gen).tril()
        return (scores / scores.sum(-1, keepdim=True), seq_len)

    return report(compare_to_reference("induction_score", student_fn,
                                       induction_scores_from_patterns, make_inputs))
