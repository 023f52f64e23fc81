"""Exercise checks for notebook 04 (composition: induction and IOI).

Each check runs the student's function on synthetic cases whose answer is known (and on random
inputs against a reference), and says *why* a wrong answer is wrong where a common mistake
can be recognised.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..checks import CheckResult, check_value, compare_to_reference
from ..composition import copying_fraction

__all__ = ["check_k_composition", "check_copying_score", "check_patch_key_input",
           "check_faithfulness", "check_receivers_above"]


def _ref_k_composition(W_QK: torch.Tensor, W_OV: torch.Tensor) -> torch.Tensor:
    return (W_QK @ W_OV.T).norm() / (W_QK.norm() * W_OV.norm())


def check_k_composition(fn: Callable) -> CheckResult:
    """``fn(W_QK_later [d, d], W_OV_earlier [d, d]) -> scalar``: Elhage et al.'s K-composition."""
    name = "k_composition"
    d = 8
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    a, b = basis[:, :4], basis[:, 4:]
    # keys read only the span of b, the earlier head writes only into the span of a: no composition
    qk = torch.randn(d, 4, generator=g) @ b.T
    ov = torch.randn(d, 4, generator=g) @ a.T
    try:
        zero = float(fn(qk, ov))
        aligned = float(fn(qk, torch.randn(d, 4, generator=g) @ b.T))
    except Exception as e:  # noqa: BLE001
        return CheckResult(name, False, f"your function raised {type(e).__name__}: {e}")
    if abs(zero) > 1e-5:
        q_comp = float((ov @ qk).norm() / (ov.norm() * qk.norm()))
        hint = (" That is the Q-composition formula: the key side reads the earlier head's "
                "*output*, so multiply W_QK by W_OV transposed." if abs(zero - q_comp) < 1e-4 else
                " Check which side of W_QK the earlier head's output enters.")
        return CheckResult(name, False, f"a head that writes only where the keys never read must "
                                        f"score 0, got {zero:.4f}.{hint}")
    if not 0 < aligned <= 1 + 1e-6:
        return CheckResult(name, False, f"a normalised score lies in (0, 1] when the spaces "
                                        f"overlap, got {aligned:.4f}: divide by both norms")
    return compare_to_reference(name, fn, _ref_k_composition,
                                lambda g: (torch.randn(6, 6, generator=g),
                                           torch.randn(6, 6, generator=g)))


def check_copying_score(fn: Callable) -> CheckResult:
    """``fn(emb [n, d], W_OV [d, d], W_U [d, V], ids [n]) -> float``."""
    name = "copying_score"
    d, n = 16, 10
    g = torch.Generator().manual_seed(1)
    E = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:n]
    W_U = torch.cat([torch.zeros(d, 3), E.T], dim=1)  # tokens 3..12 are the rows of E
    ids = torch.arange(3, 3 + n)
    try:
        ident = float(fn(E, torch.eye(d), W_U, ids))
        neg = float(fn(E, -torch.eye(d), W_U, ids))
    except Exception as e:  # noqa: BLE001
        return CheckResult(name, False, f"your function raised {type(e).__name__}: {e}")
    if abs(ident - 1.0) > 1e-6:
        hint = (" Did you compare the argmax with 0..n-1 instead of the tokens' ids?"
                if abs(ident) < 1e-6 else "")
        return CheckResult(name, False, f"an identity OV circuit copies every token, so the score "
                                        f"must be 1.0; got {ident:.3f}.{hint}")
    if neg > 1e-6:
        return CheckResult(name, False, f"OV = -identity pushes each token *down*; it must score "
                                        f"0, got {neg:.3f}")
    return compare_to_reference(
        name, fn, copying_fraction,
        lambda g: (torch.randn(12, 8, generator=g), torch.randn(8, 8, generator=g),
                   torch.randn(8, 30, generator=g), torch.randint(0, 30, (12,), generator=g)))


def _ref_patch_key_input(k_input: torch.Tensor, out_current: torch.Tensor,
                         out_source: torch.Tensor, head: int) -> torch.Tensor:
    new = k_input.clone()
    new[:, :, head] = new[:, :, head] + (out_source - out_current)
    return new


def check_patch_key_input(fn: Callable) -> CheckResult:
    """``fn(k_input [B, T, H, d], out_current [B, T, d], out_source [B, T, d], head)``: one
    receiving head's key input with the sender's current output swapped for its source output."""
    name = "patch_key_input"
    g = torch.Generator().manual_seed(2)
    k = torch.randn(2, 5, 3, 4, generator=g)
    cur, src = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    try:
        before = k.clone()
        out = fn(k, cur, src, 1)
    except Exception as e:  # noqa: BLE001
        return CheckResult(name, False, f"your function raised {type(e).__name__}: {e}")
    if not torch.equal(k, before):
        return CheckResult(name, False, "the input was modified in place: clone it first (the "
                                        "hook's tensor is shared with the rest of the forward)")
    if not isinstance(out, torch.Tensor) or out.shape != k.shape:
        return CheckResult(name, False, f"return a tensor of the input's shape {tuple(k.shape)}")
    if not torch.allclose(out[:, :, [0, 2]], k[:, :, [0, 2]]):
        return CheckResult(name, False, "only the receiving head's key input may change; the "
                                        "other heads must keep reading the clean stream")
    if torch.allclose(out[:, :, 1], k[:, :, 1] + (cur - src), atol=1e-6):
        return CheckResult(name, False, "sign error: the patched input is input - current + "
                                        "source (you added current - source)")
    if torch.allclose(out[:, :, 1], src, atol=1e-6):
        return CheckResult(name, False, "you replaced the whole input by the sender's output; the "
                                        "input is a *sum* of every sender's output, so swap only "
                                        "this sender's term")
    return compare_to_reference(name, fn, _ref_patch_key_input,
                                lambda g: (torch.randn(3, 4, 2, 5, generator=g),
                                           torch.randn(3, 4, 5, generator=g),
                                           torch.randn(3, 4, 5, generator=g),
                                           int(torch.randint(0, 2, (1,), generator=g))))


def check_faithfulness(fn: Callable, m_circuit: float, m_full: float, m_corrupted: float,
                       library_value: float) -> CheckResult:
    """``fn(m_circuit, m_full, m_corrupted) -> float``; also compared with the library's value
    for the circuit the notebook found."""
    name = "faithfulness"
    try:
        perfect = float(fn(3.0, 3.0, 1.0))
        empty = float(fn(1.0, 3.0, 1.0))
        got = float(fn(m_circuit, m_full, m_corrupted))
    except Exception as e:  # noqa: BLE001
        return CheckResult(name, False, f"your function raised {type(e).__name__}: {e}")
    if abs(perfect - 1) > 1e-6 or abs(empty) > 1e-6:
        return CheckResult(name, False, f"a circuit that scores like the full model must give 1 "
                                        f"and one that scores like the corrupted run 0; got "
                                        f"{perfect:.3f} and {empty:.3f}: normalise by "
                                        f"(full - corrupted) after subtracting the corrupted score")
    return check_value(name, got, library_value, atol=1e-4)


def check_receivers_above(fn: Callable, scores: dict[str, float], threshold: float,
                          expected: list[str]) -> CheckResult:
    """``fn(scores {head: effect}, threshold) -> sorted list`` of heads with |effect| >= threshold."""
    name = "receivers_above"
    try:
        got = fn(dict(scores), threshold)
        neg = fn({"a0.h0": -0.5, "a0.h1": 0.01}, 0.1)
    except Exception as e:  # noqa: BLE001
        return CheckResult(name, False, f"your function raised {type(e).__name__}: {e}")
    if list(neg) != ["a0.h0"]:
        return CheckResult(name, False, "a head whose patching moves the metric by -0.5 matters as "
                                        "much as one at +0.5: compare the absolute effect")
    return check_value(name, sorted(got), sorted(expected))
