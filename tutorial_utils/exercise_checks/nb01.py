"""Checks for the exercises of ``notebooks/01_model_agnostic_baselines.ipynb``.

Each check runs the student's function and the reference from :mod:`tutorial_utils.input_attribution`
(or an exact optimum, for the probe) on fresh prompts and targets, and reports one line.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .. import input_attribution as A
from ..grading import CheckResult, compare_to_reference, report

__all__ = ["binary_probe_loss", "check_gradient_x_input", "check_integrated_gradients",
           "check_occlusion", "check_train_probe", "optimal_binary_probe_loss", "PROMPTS"]

PROMPTS = (
    "When Mary and John went to the store, John gave a drink to",
    "The keys on the cabinet",
    "The war lasted from the year 1741 to the year 17",
    "The doctor near the windows",
    "After Kate and Tom arrived at the park, Tom handed the ball to",
)


def _make_prompt_inputs(model: Any, gen: torch.Generator) -> tuple[torch.Tensor, A.TargetFn]:
    prompt = PROMPTS[int(torch.randint(len(PROMPTS), (1,), generator=gen))]
    tokens = model.to_tokens(prompt)
    ids = torch.randint(model.cfg.d_vocab, (2,), generator=gen)
    return tokens, A.contrastive_target(int(ids[0]), int(ids[1]))


def check_gradient_x_input(student_fn: Callable, model: Any) -> CheckResult:
    """``student_fn(model, tokens, target_fn) -> [B, T]`` against
    :func:`tutorial_utils.input_attribution.gradient_x_input`."""

    def make_inputs(gen: torch.Generator):
        tokens, target = _make_prompt_inputs(model, gen)
        return (model, tokens, target)

    return report(compare_to_reference("gradient_x_input", student_fn, A.gradient_x_input,
                                       make_inputs, atol=1e-5, rtol=1e-4))


def _reference_ig_midpoint(model: Any, tokens: torch.Tensor, target_fn: A.TargetFn,
                           baseline_embeds: torch.Tensor, n_steps: int) -> torch.Tensor:
    return A.integrated_gradients(model, tokens, target_fn, baseline=baseline_embeds,
                                  n_steps=n_steps, rule="riemann_middle",
                                  keep_first_token=False)


def check_integrated_gradients(student_fn: Callable, model: Any) -> CheckResult:
    """``student_fn(model, tokens, target_fn, baseline_embeds, n_steps) -> [B, T]``: the
    midpoint Riemann sum, against the library's ``riemann_middle`` rule."""

    def make_inputs(gen: torch.Generator):
        tokens, target = _make_prompt_inputs(model, gen)
        x = A.token_embeddings(model, tokens)
        base = 0.1 * torch.randn(x.shape, generator=gen)
        base[:, 0] = x[:, 0]
        n_steps = int(torch.randint(4, 17, (1,), generator=gen))
        return (model, tokens, target, base, n_steps)

    return report(compare_to_reference("integrated_gradients", student_fn,
                                       _reference_ig_midpoint, make_inputs, atol=1e-4,
                                       rtol=1e-3))


def _reference_occlusion(model: Any, tokens: torch.Tensor, target_fn: A.TargetFn,
                         replacement_id: int) -> torch.Tensor:
    return A.occlusion(model, tokens, target_fn, replacement=replacement_id)


def check_occlusion(student_fn: Callable, model: Any) -> CheckResult:
    """``student_fn(model, tokens, target_fn, replacement_id) -> [B, T]`` (position 0 not
    occluded, score 0) against :func:`tutorial_utils.input_attribution.occlusion`."""

    def make_inputs(gen: torch.Generator):
        tokens, target = _make_prompt_inputs(model, gen)
        rep = int(torch.randint(model.cfg.d_vocab, (1,), generator=gen))
        return (model, tokens, target, rep)

    return report(compare_to_reference("occlusion", student_fn, _reference_occlusion,
                                       make_inputs, atol=1e-4, rtol=1e-4))


def binary_probe_loss(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                      weight_decay: float) -> torch.Tensor:
    """``mean_n BCE(sigmoid(X w + b), y) + weight_decay / 2 * ||w||^2``."""
    z = X.double() @ w.double() + b.double()
    return (torch.nn.functional.binary_cross_entropy_with_logits(z, y.double())
            + 0.5 * weight_decay * (w.double() ** 2).sum())


def optimal_binary_probe_loss(X: torch.Tensor, y: torch.Tensor, weight_decay: float) -> float:
    """The minimum of :func:`binary_probe_loss` (convex), by L-BFGS in float64."""
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = binary_probe_loss(X, y, w, b, weight_decay)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(binary_probe_loss(X, y, w.detach(), b.detach(), weight_decay))


def check_train_probe(student_fn: Callable, weight_decay: float = 1e-2,
                      tolerance: float = 1e-3) -> CheckResult:
    """``student_fn(X [N, d], y [N] in {0, 1}, weight_decay) -> (w [d], b [])`` must reach the
    optimum of the regularised logistic loss within ``tolerance`` on fresh synthetic data."""
    name = "train_probe"
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        X = torch.randn(200, 16, generator=gen)
        y = ((X @ torch.randn(16, generator=gen) + 0.5 * torch.randn(200, generator=gen)) > 0)
        y = y.long()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                w, b = student_fn(X.clone(), y.clone(), weight_decay)
        except NotImplementedError:
            return report(CheckResult(name, False, "not implemented yet: fill in the exercise "
                                      "cell, run it, then re-run this check"))
        except Exception as error:  # noqa: BLE001
            return report(CheckResult(name, False, f"your function raised "
                                      f"{type(error).__name__}: {error}"))
        w, b = torch.as_tensor(w).detach().reshape(-1), torch.as_tensor(b).detach().reshape(())
        if w.shape != (16,):
            return report(CheckResult(name, False, f"w has shape {tuple(w.shape)}, expected "
                                      "(16,)"))
        got = float(binary_probe_loss(X, y, w, b, weight_decay))
        best = optimal_binary_probe_loss(X, y, weight_decay)
        if not got <= best + tolerance:
            return report(CheckResult(name, False, f"your probe's regularised loss {got:.4f} is "
                                      f"above the optimum {best:.4f} by more than {tolerance:g}"
                                      f" (seed {seed}): train longer or check the gradient"))
    return report(CheckResult(name, True, f"reaches the optimal loss within {tolerance:g} on "
                              "3 synthetic data sets"))
