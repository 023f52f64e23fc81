"""Exercise checks for notebook 02 (context mixing). Each returns a
:class:`~tutorial_utils.checks.CheckResult`; wrap it in :func:`~tutorial_utils.checks.report`."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..checks import CheckResult, compare_to_reference
from ..context_mixing import rollout as _rollout
from ..context_mixing.value_zeroing import _cosine_distance, value_zeroed_outputs


def _stochastic(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g).mul(2).softmax(-1)


def check_rollout(student_fn: Callable[[torch.Tensor, bool], torch.Tensor]) -> CheckResult:
    """``student_fn(per_layer [L, T, T], add_residual) -> [L, T, T]`` (attention rollout)."""

    def inputs(g: torch.Generator) -> tuple:
        L, T = 2 + int(torch.randint(3, (1,), generator=g)), 3 + int(torch.randint(5, (1,), generator=g))
        return _stochastic(g, L, T, T), bool(g.initial_seed() % 2 == 0)

    return compare_to_reference("rollout", student_fn, lambda a, r: _rollout(a, add_residual=r),
                                inputs, n_trials=4)


def _ref_attention_norm(pattern: torch.Tensor, values: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    f = torch.einsum("jhk,hkd->hjd", values, W_O)
    return torch.einsum("hij,hjd->ijd", pattern, f).norm(dim=-1)


def check_attention_norm(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """``student_fn(pattern [H, T, T], values [T, H, d_head], W_O [H, d_head, d]) -> [T, T]``:
    ``||sum_h alpha^h_ij v^h_j W_O^h||`` (not normalised)."""

    def inputs(g: torch.Generator) -> tuple:
        H, T, dh, d = 3, 5, 4, 8
        return (_stochastic(g, H, T, T), torch.randn(T, H, dh, generator=g),
                torch.randn(H, dh, d, generator=g))

    return compare_to_reference("attention_norm", student_fn, _ref_attention_norm, inputs)


def check_value_zeroing_one_token(student_fn: Callable[..., torch.Tensor], model: Any,
                                  tokens: torch.Tensor) -> CheckResult:
    """``student_fn(model, tokens [1, T], layer, j) -> [T]``: ``1 - cos`` between each token's
    output of layer ``layer`` with token ``j``'s whole value vector (``b_V`` included) zeroed in
    every head and the original output, both computed from the layer's clean input with the
    original (unfolded) weights, as Mohebbi et al. 2023 define it."""
    T, L = tokens.shape[-1], model.cfg.n_layers

    def inputs(g: torch.Generator) -> tuple:
        s = g.initial_seed()
        return model, tokens, s % L, 1 + s % (T - 1)

    def reference(m: Any, toks: torch.Tensor, layer: int, j: int) -> torch.Tensor:
        out = value_zeroed_outputs(m, toks, [(0, layer, j), (0, layer, -1)])
        return _cosine_distance(out[0], out[1])

    return compare_to_reference("value_zeroing_one_token", student_fn, reference, inputs,
                                n_trials=3, atol=1e-5, rtol=1e-3)


def _ref_share(maps: torch.Tensor, query: torch.Tensor, cue: torch.Tensor,
               distractor: torch.Tensor) -> float:
    b = torch.arange(maps.shape[0])
    return float((maps[b, query, cue] > maps[b, query, distractor]).float().mean())


def check_cue_share(student_fn: Callable[..., float]) -> CheckResult:
    """``student_fn(maps [B, T, T], query [B], cue [B], distractor [B]) -> float``: the share
    of examples where the cue's entry in the query row beats the distractor's."""

    def inputs(g: torch.Generator) -> tuple:
        B, T = 12, 7
        maps = _stochastic(g, B, T, T)
        return (maps, torch.randint(T, (B,), generator=g), torch.randint(T, (B,), generator=g),
                torch.randint(T, (B,), generator=g))

    return compare_to_reference("cue_share", student_fn, _ref_share, inputs, n_trials=4)
