"""Checks for the exercises of ``notebooks/05_circuits_high_level.ipynb``.

Each check first runs the student's function on a synthetic case whose answer is known by
construction and, when it is wrong, names the likely conceptual mistake; then it compares the
function with a reference on random inputs. Each check is an
:class:`~tutorial_utils.course.answers.ExerciseCheck`: ``top_n_edges =
nb05.check_top_n_edges(top_n_edges)`` prints the verdict and returns the function later cells
use; ``check_top_n_edges.judge(...)`` returns the
:class:`~tutorial_utils.course.grading.CheckResult` only.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..answers import exercise
from ..grading import CheckResult, as_mask, as_tensor, close, compare_to_reference
from ..solutions import nb05 as solutions

__all__ = ["check_eap_all_edges", "check_faithfulness_curve", "check_ig_gradient",
           "check_top_n_edges", "reference_eap_all_edges", "reference_faithfulness_curve",
           "reference_ig_gradient", "reference_top_n_edges"]


# --------------------------------------------------------------------------------------------
# EAP over all edges as one einsum
# --------------------------------------------------------------------------------------------

#: The references (kept under their former names).
reference_eap_all_edges = solutions.eap_all_edges
reference_ig_gradient = solutions.ig_gradient
reference_top_n_edges = solutions.top_n_edges
reference_faithfulness_curve = solutions.faithfulness_by_size


@exercise("3.1", reference=solutions.eap_all_edges)
def check_eap_all_edges(fn: Callable) -> CheckResult:
    """``fn(act_clean [B,T,S,D], act_corrupted [B,T,S,D], grads [B,T,R,D], real_edges [S,R])
    -> [S,R]``."""
    name = "eap_all_edges"
    B, T, S, R = 2, 3, 3, 4
    # synthetic: sender s changes by (s+1) along direction s; every receiver's gradient is all
    # ones, so the score of every real edge s->r is B*T*(s+1)
    clean = torch.zeros(B, T, S, S)
    corr = torch.zeros(B, T, S, S)
    for s in range(S):
        corr[:, :, s, s] = s + 1.0
    grads = torch.ones(B, T, R, S)
    real = torch.ones(S, R, dtype=torch.bool).triu()
    expected = reference_eap_all_edges(clean, corr, grads, real)
    got = fn(clean, corr, grads, real)
    got = as_tensor(got, "your scores [sender, receiver]", torch.float32)
    if tuple(got.shape) != (S, R):
        shape = tuple(got.shape)
        return CheckResult(name, False, f"return one score per (sender, receiver): shape {(S, R)}, "
                                        f"got {shape}. Sum over batch, positions and d_model in "
                                        f"one einsum, e.g. 'btsd,btrd->sr'")
    if close(got, -expected):
        return CheckResult(name, False, "every score has the wrong sign: Δ is out(corrupted) - "
                                        "out(clean) (what the edge carries when it is corrupted)")
    if close(got.masked_fill(~real, 0.0), expected) and not close(got, expected):
        return CheckResult(name, False, "entries that are not edges (a receiver reading a later "
                                        "sender) must be 0: mask them with real_edges")
    if close(got, expected / B) or close(got, expected / (B * T)):
        return CheckResult(name, False, "your scores are averaged over examples/positions: the "
                                        "gradient is already that of the *mean* metric, so sum "
                                        "over examples and positions")
    if not close(got, expected):
        return CheckResult(name, False, f"sender s moves by s+1 along direction s and every "
                                        f"gradient is 1, so edge s->r must score {B}*{T}*(s+1) = "
                                        f"{expected[0, 0]:.0f}, {expected[1, 1]:.0f}, "
                                        f"{expected[2, 2]:.0f} for s = 0, 1, 2; got "
                                        f"{got[0, 0]:.3g}, {got[1, 1]:.3g}, {got[2, 2]:.3g}")

    def make(g: torch.Generator):
        B_, T_, S_, R_, D_ = (int(x) for x in torch.randint(2, 6, (5,), generator=g))
        return (torch.randn(B_, T_, S_, D_, generator=g), torch.randn(B_, T_, S_, D_, generator=g),
                torch.randn(B_, T_, R_, D_, generator=g), torch.rand(S_, R_, generator=g) < 0.6)

    return compare_to_reference(name, fn, reference_eap_all_edges, make, atol=1e-4)


# --------------------------------------------------------------------------------------------
# EAP-IG: the Riemann sum of gradients along the path
# --------------------------------------------------------------------------------------------

@exercise("4.1", reference=solutions.ig_gradient)
def check_ig_gradient(fn: Callable) -> CheckResult:
    """``fn(grad_fn, x_clean, x_corrupted, steps) -> averaged gradient`` (right Riemann sum)."""
    name = "ig_gradient"
    x_corr, x_clean = torch.full((2, 3), 1.0), torch.full((2, 3), 3.0)
    calls: list[Tensor] = []

    def square(x: Tensor) -> Tensor:  # the gradient of x^3 / 3: non-linear, so points matter
        calls.append(x.detach().clone())
        return x ** 2

    got = fn(square, x_clean, x_corr, 4)
    n_calls = len(calls)
    calls.clear()
    got1 = fn(square, x_clean, x_corr, 1)
    points = torch.tensor([1.5, 2.0, 2.5, 3.0])
    value = float((points ** 2).mean())
    got = as_tensor(got, "your averaged gradient", torch.float32)
    got1 = as_tensor(got1, "your averaged gradient", torch.float32)
    if got.shape != x_clean.shape:
        return CheckResult(name, False, "return the averaged gradient, shaped like the input")
    got_v = float(got.mean())
    if n_calls != 4:
        return CheckResult(name, False, f"with steps=4 the gradient must be taken at 4 points "
                                        f"(k = 1..4), you called grad_fn {n_calls} times")
    if close(got1, x_clean ** 2) is False:
        hint = (" You evaluated it at the corrupted input: the points are x' + (k/m)(x - x') "
                "for k = 1..m, so the last one is the clean input." if close(got1, x_corr ** 2)
                else "")
        return CheckResult(name, False, "with steps=1 EAP-IG is EAP: one gradient, at the clean "
                                        "input." + hint)
    if abs(got_v - value * 4) < 1e-4:
        return CheckResult(name, False, "you summed the gradients: divide by the number of "
                                        "steps (a Riemann sum is an average)")
    if abs(got_v - float((torch.tensor([1.0, 1.5, 2.0, 2.5]) ** 2).mean())) < 1e-4:
        return CheckResult(name, False, "your points are k = 0..m-1 (a left Riemann sum, which "
                                        "includes the corrupted input and misses the clean one); "
                                        "use k = 1..m")
    if abs(got_v - value) > 1e-4:
        return CheckResult(name, False, f"from x' = 1 to x = 3 in 4 steps the points are 1.5, 2, "
                                        f"2.5, 3 and the mean of x^2 there is {value:.4f}; got "
                                        f"{got_v:.4f}")

    W = torch.randn(4, 4, generator=torch.Generator().manual_seed(7))

    def make(g: torch.Generator):
        return (lambda x: torch.tanh(x @ W) @ W.T, torch.randn(3, 4, generator=g),
                torch.randn(3, 4, generator=g), int(torch.randint(1, 8, (1,), generator=g)))

    return compare_to_reference(name, fn, reference_ig_gradient, make, atol=1e-5)


# --------------------------------------------------------------------------------------------
# top-n selection
# --------------------------------------------------------------------------------------------

@exercise("6.1", reference=solutions.top_n_edges)
def check_top_n_edges(fn: Callable) -> CheckResult:
    """``fn(scores [S,R], real_edges bool [S,R], n) -> bool [S,R]``: a synthetic case, then
    random scores (some non-edges carry large scores, which must be ignored)."""
    name = "top_n_edges"
    scores = torch.tensor([[-5.0, 3.0], [10.0, 0.5]])
    real = torch.tensor([[True, True], [False, True]])
    got = fn(scores, real, 2)
    got = as_mask(got, "your mask", shape=tuple(scores.shape))
    if bool(got[1, 0]):
        return CheckResult(name, False, "you chose an entry that is not an edge (score 10 where "
                                        "real_edges is False): exclude non-edges before ranking")
    if not bool(got[0, 0]):
        return CheckResult(name, False, "the edge with score -5 matters more than the one with 3: "
                                        "rank by |score| (a negative score means the edge helps)")
    if int(got.sum()) != 2:
        return CheckResult(name, False, f"n=2 must select exactly 2 edges, got {int(got.sum())}")

    def make(g: torch.Generator):
        S, R = (int(x) for x in torch.randint(4, 12, (2,), generator=g))
        real_ = torch.rand(S, R, generator=g) < 0.6
        real_[0, 0] = True
        sc = torch.randn(S, R, generator=g) * 3
        n = int(torch.randint(1, int(real_.sum()) + 1, (1,), generator=g))
        return (sc, real_, n)

    return compare_to_reference(name, fn, reference_top_n_edges, make)


# --------------------------------------------------------------------------------------------
# a faithfulness curve
# --------------------------------------------------------------------------------------------

def _toy_evaluate(importance: Tensor, m_clean: float, m_corr: float) -> Callable[[Tensor], Tensor]:
    """A fake circuit evaluation: the metric moves from corrupted to clean in proportion to the
    |importance| the circuit keeps (so faithfulness = kept share of the importance)."""
    total = importance.abs().sum()

    def evaluate(masks: Tensor) -> Tensor:
        if masks.ndim == 2:
            masks = masks[None]
        kept = (importance.abs()[None] * masks.float()).flatten(1).sum(1) / total
        return m_corr + (m_clean - m_corr) * kept

    return evaluate


@exercise("6.2", reference=solutions.faithfulness_by_size)
def check_faithfulness_curve(fn: Callable) -> CheckResult:
    """``fn(evaluate, scores, real_edges, grid, m_clean, m_corrupted) -> [len(grid)]`` where
    ``evaluate(masks [K,S,R]) -> metrics [K]``."""
    name = "faithfulness_curve"
    importance = torch.tensor([[4.0, -3.0, 0.0], [0.0, 2.0, 1.0]])
    real = torch.tensor([[True, True, False], [False, True, True]])
    m_clean, m_corr = 0.9, 0.5
    grid = [0, 1, 2, 4]
    expected = torch.tensor([0.0, 0.4, 0.7, 1.0])
    got = fn(_toy_evaluate(importance, m_clean, m_corr), importance.clone(), real, grid,
             m_clean, m_corr)
    got = as_tensor(got, "your curve", torch.float32).flatten()
    if got.shape != expected.shape:
        return CheckResult(name, False, f"return one faithfulness per grid point ({len(grid)}), "
                                        f"got {tuple(got.shape)}")
    if torch.allclose(got, 1 - expected, atol=1e-4):
        return CheckResult(name, False, "you measured the part of the gap the circuit *loses*: "
                                        "F = (M(circuit) - M(corrupted)) / (M(clean) - M(corrupted))")
    if torch.allclose(got, expected * (m_clean - m_corr) + m_corr, atol=1e-4):
        return CheckResult(name, False, "these are the raw metrics: normalise them so that the "
                                        "corrupted run gives 0 and the clean run 1")
    if not torch.allclose(got, expected, atol=1e-4):
        return CheckResult(name, False, f"edges of importance 4, -3, 2, 1: the top 1, 2 and 4 "
                                        f"by |score| keep 0.4, 0.7 and 1.0 of it, so the curve is "
                                        f"{expected.tolist()}; got {[round(x, 3) for x in got.tolist()]}"
                                        f" (rank by |score|? empty circuit first?)")

    def make(g: torch.Generator):
        S, R = (int(x) for x in torch.randint(3, 7, (2,), generator=g))
        real_ = torch.rand(S, R, generator=g) < 0.7
        real_[0, 0] = True
        imp = torch.randn(S, R, generator=g)
        sc = imp + 0.3 * torch.randn(S, R, generator=g)
        n_real = int(real_.sum())
        grid_ = sorted({0, n_real, *torch.randint(0, n_real + 1, (3,), generator=g).tolist()})
        mc, mx = float(torch.rand(1, generator=g)) + 0.5, float(torch.rand(1, generator=g)) - 0.5
        return (_toy_evaluate(imp * real_, mc, mx), sc, real_, grid_, mc, mx)

    return compare_to_reference(name, fn, reference_faithfulness_curve, make, atol=1e-4)
