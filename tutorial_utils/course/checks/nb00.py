"""Checks for the exercises of ``notebooks/00_primer.ipynb``.

Each check is an :class:`~tutorial_utils.course.answers.ExerciseCheck`: in the notebook
``residual_sum = nb00.check_residual_sum(residual_sum, model)`` prints the verdict and returns
the function later cells use; ``check_residual_sum.judge(...)`` returns the
:class:`~tutorial_utils.course.grading.CheckResult` only.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..answers import exercise
from ..grading import CheckResult, as_tensor, compare_to_reference
from ..solutions import nb00 as solutions
from ...names import SITES, hook_name

__all__ = ["check_induction_score", "check_residual_sum", "reference_residual_sum"]

#: The reference of Exercise 2.1 (kept under its former name).
reference_residual_sum = solutions.residual_sum


class _WriterCache(dict):
    """A dict of hook name -> tensor that, like TransformerLens's ``ActivationCache``, also
    accepts the short keys ``"embed"`` and ``("attn_out", layer)``."""

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, tuple) and len(key) == 2 and key[0] in SITES:
            key = hook_name(key[0], int(key[1]))
        elif isinstance(key, str) and key in SITES and "{layer}" not in SITES[key][0]:
            key = hook_name(key)
        return super().__getitem__(key)


def _synthetic_writer_cache(n_layers: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A cache holding only the writers' hooks (``hook_embed``, ``hook_pos_embed``,
    ``blocks.{l}.hook_attn_out``, ``blocks.{l}.hook_mlp_out``), each a random ``[1, 4, 8]``
    tensor: the known answer is their sum, and no ``hook_resid_*`` entry can be read back."""
    g = torch.Generator().manual_seed(seed)
    names = [hook_name("embed"), hook_name("pos_embed")] + [
        hook_name(f"{kind}_out", l) for l in range(n_layers) for kind in ("attn", "mlp")]
    return _WriterCache({name: torch.randn(1, 4, 8, generator=g) for name in names})


def _residual_mistake(out: torch.Tensor, cache: dict[str, torch.Tensor], n_layers: int) -> str:
    """Name the likely mistake when ``out`` is not the sum of the writers."""
    full = reference_residual_sum(cache, n_layers)
    attn = sum(cache[hook_name("attn_out", l)] for l in range(n_layers))
    mlp = sum(cache[hook_name("mlp_out", l)] for l in range(n_layers))
    last = n_layers - 1
    candidates = [
        (full - cache[hook_name("pos_embed")], "you left out hook_pos_embed: x_0 is the token embedding "
                                         "plus the position embedding"),
        (full - cache[hook_name("embed")], "you left out hook_embed: x_0 is the token embedding plus the "
                                     "position embedding"),
        (full - mlp, "you left out the MLP outputs: every block adds attn_out and mlp_out"),
        (full - attn, "you left out the attention outputs: every block adds attn_out and mlp_out"),
        (full - cache[hook_name("attn_out", last)] - cache[hook_name("mlp_out", last)],
         "you stopped one layer early: loop over range(n_layers), all of them"),
    ]
    for wrong, why in candidates:
        if out.shape == wrong.shape and torch.allclose(out, wrong, atol=1e-5):
            return why
    return ("on a synthetic cache of random writer outputs your result is not their sum: add "
            "hook_embed, hook_pos_embed and, for every layer, hook_attn_out and hook_mlp_out")


@exercise("2.1", reference=solutions.residual_sum)
def check_residual_sum(student_fn: Callable, model: Any) -> CheckResult:
    """Known answer first: on a synthetic cache of random writer outputs (and no
    ``hook_resid_*`` entries, so the stream cannot be read back instead of rebuilt) the result
    must be their sum, and a wrong sum names the missing term. Then the reference on fresh
    prompts run through ``model``."""
    name = "residual_sum"
    for seed in range(2):
        cache = _synthetic_writer_cache(n_layers=3, seed=seed)
        try:
            out = student_fn(cache, 3)
        except KeyError as error:
            return CheckResult(name, False, f"your function read {error} from the cache: "
                                            "rebuild the stream from the writers only "
                                            "(hook_embed, hook_pos_embed, hook_attn_out, "
                                            "hook_mlp_out), do not read it back")
        out = as_tensor(out, "your residual stream [batch, pos, d_model]", torch.float32)
        if out.shape != (1, 4, 8) or not torch.allclose(out, reference_residual_sum(cache, 3),
                                                         atol=1e-5):
            return CheckResult(name, False, _residual_mistake(out, cache, 3))

    prompts = ["The keys on the cabinet are old.", "When Mary and John went to the park,",
               "The capital of France is Paris."]

    def make_inputs(gen: torch.Generator):
        prompt = prompts[int(torch.randint(len(prompts), (1,), generator=gen))]
        with torch.no_grad():
            _, cache = model.run_with_cache(model.to_tokens(prompt))
        return (cache, model.cfg.n_layers)

    result = compare_to_reference(name, student_fn, reference_residual_sum, make_inputs,
                                  atol=1e-4)
    if result.passed:
        result.message = ("the sum of the writers on a synthetic cache, and the reference on 3 "
                          "prompts")
    return result


def _synthetic_patterns(seq_len: int, offset: int, n_heads: int = 2) -> torch.Tensor:
    """``[1, n_heads, T, T]`` patterns of ``BOS + r + r`` where every query of the second copy
    puts all its attention on key ``q - seq_len + offset`` and every other query on BOS."""
    T = 1 + 2 * seq_len
    patterns = torch.zeros(1, n_heads, T, T)
    patterns[..., 0] = 1.0
    q = torch.arange(seq_len + 1, T)
    patterns[..., q, 0] = 0.0
    patterns[..., q, q - seq_len + offset] = 1.0
    return patterns


@exercise("4.1", reference=solutions.induction_score)
def check_induction_score(student_fn: Callable) -> CheckResult:
    """Two synthetic patterns with known answers, then the reference on random patterns.

    A perfect induction head (each second-copy query attends only to ``q - seq_len + 1``, the
    token after the earlier copy of the current token) must score 1; a perfect duplicate-token
    head (attending to ``q - seq_len``, the earlier copy itself) must score 0.
    """
    name = "induction_score"
    seq_len = 5
    perfect = student_fn(_synthetic_patterns(seq_len, offset=1), seq_len)
    duplicate = student_fn(_synthetic_patterns(seq_len, offset=0), seq_len)
    # any float dtype, a numpy array or a list is fine; compare in float32
    perfect = as_tensor(perfect, "your scores [head]", torch.float32)
    duplicate = as_tensor(duplicate, "your scores [head]", torch.float32)
    if perfect.shape != (2,) or duplicate.shape != (2,):
        return CheckResult(name, False, f"expected one score per head, shape (2,), got "
                                        f"{tuple(perfect.shape)}: average over the batch "
                                        "axis and the query axis only")
    if torch.allclose(duplicate, torch.ones(2)) and not torch.allclose(perfect, torch.ones(2)):
        return CheckResult(name, False, "a perfect duplicate-token pattern scored 1 and a "
                                        "perfect induction pattern did not: you read key "
                                        "q - seq_len (the earlier copy of the current token); "
                                        "the induction head attends to the token after it, "
                                        "q - seq_len + 1")
    if not torch.allclose(perfect, torch.ones(2), atol=1e-5):
        return CheckResult(name, False, f"a perfect induction pattern (all attention on "
                                        f"q - seq_len + 1) must score 1.0, got "
                                        f"{perfect.tolist()}: check the query range "
                                        "(the second copy is q = seq_len+1 .. 2*seq_len) and "
                                        "that you average, not sum")
    if not torch.allclose(duplicate, torch.zeros(2), atol=1e-5):
        return CheckResult(name, False, f"a pattern attending only to the earlier copy of the "
                                        f"current token must score 0.0, got {duplicate.tolist()}")

    def make_inputs(gen: torch.Generator):
        seq_len = int(torch.randint(3, 9, (1,), generator=gen))
        T = 1 + 2 * seq_len
        scores = torch.rand(2, 3, T, T, generator=gen).tril()
        return (scores / scores.sum(-1, keepdim=True), seq_len)

    result = compare_to_reference(name, student_fn, solutions.induction_score, make_inputs)
    if result.passed:
        result.message = "a perfect induction pattern scores 1, a duplicate-token one 0, and " \
                         "random patterns match the reference"
    return result
