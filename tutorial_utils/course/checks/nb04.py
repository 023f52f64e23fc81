"""Exercise checks for notebook 04 (composition: induction and IOI).

Each check runs the student's function on synthetic cases whose answer is known (and on random
inputs against a reference), and says *why* a wrong answer is wrong where a common mistake
can be recognised. Each check is an :class:`~tutorial_utils.course.answers.ExerciseCheck`:
``head_dla = nb04.check_head_dla(head_dla)`` prints the verdict and returns the function later
cells use; ``check_head_dla.judge(...)`` returns the
:class:`~tutorial_utils.course.grading.CheckResult` only.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..answers import exercise
from ..grading import CheckResult, as_number, as_tensor, check_value, compare_to_reference, raised
from ..solutions import nb04 as solutions

__all__ = ["check_composition_score", "check_k_composition", "check_copying_score", "check_patch_key_input",
           "check_head_dla", "check_faithfulness"]


def _ref_k_composition(W_QK: torch.Tensor, W_OV: torch.Tensor) -> torch.Tensor:
    return solutions.composition_score(W_QK, W_OV, "k")


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
    zero = fn(qk, ov)
    aligned = fn(qk, torch.randn(d, 4, generator=g) @ b.T)
    zero, aligned = as_number(zero, "your score"), as_number(aligned, "your score")
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
    result = compare_to_reference(name, fn, _ref_k_composition,
                                  lambda g: (torch.randn(6, 6, generator=g),
                                             torch.randn(6, 6, generator=g)))
    if not result.passed:
        g = torch.Generator().manual_seed(5)
        qk, ov = torch.randn(6, 6, generator=g), torch.randn(6, 6, generator=g)
        prod = (qk @ ov.T).norm()
        variants = {"the un-normalised norm ||W_QK W_OV^T||_F: divide by both matrices' norms":
                    prod,
                    "the product divided by ||W_QK||_F only: divide by ||W_OV||_F too":
                    prod / qk.norm(),
                    "the product divided by ||W_OV||_F only: divide by ||W_QK||_F too":
                    prod / ov.norm()}
        result = _diagnose(result, fn, (qk, ov), variants)
    return result


_ref_composition_score = solutions.composition_score


@exercise("1.1", reference=solutions.composition_score)
def check_composition_score(fn: Callable) -> CheckResult:
    """``fn(W_later [d, d], W_OV_earlier [d, d], kind) -> scalar``: Elhage et al.'s Q-, K- or
    V-composition (``W_later`` is the later head's W_QK for "q"/"k", its W_OV for "v")."""
    name = "composition_score"
    result = check_k_composition(lambda qk, ov: fn(qk, ov, "k"))
    if not result.passed:
        return CheckResult(name, False, f"kind 'k': {result.message}", not_done=result.not_done)
    d = 8
    g = torch.Generator().manual_seed(3)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    a, b = basis[:, :4], basis[:, 4:]
    ov = torch.randn(d, 4, generator=g) @ a.T  # the earlier head writes only into span(a)
    reads_b = b @ torch.randn(4, d, generator=g)  # a later matrix that reads only span(b)
    reads_a = a @ torch.randn(4, d, generator=g)
    for kind, what in (("q", "query"), ("v", "value")):
        try:
            zero = fn(reads_b, ov, kind)
            aligned = fn(reads_a, ov, kind)
        except Exception as e:  # noqa: BLE001
            failed = raised(name, e)
            failed.message = f"kind {kind!r}: {failed.message}"
            return failed
        zero, aligned = as_number(zero, "your score"), as_number(aligned, "your score")
        if abs(zero) > 1e-5:
            k_form = float((reads_b @ ov.T).norm() / (reads_b.norm() * ov.norm()))
            hint = (" You used the K-composition product for it: the earlier head's output "
                    f"x @ W_OV enters the {what} side as x @ W_OV @ W_later."
                    if abs(zero - k_form) < 1e-4 else
                    f" The earlier head's output x @ W_OV is what the later head's {what} reads: "
                    "W_OV @ W_later.")
            return CheckResult(name, False, f"kind {kind!r}: a later head whose {what} reads only "
                                            f"where the earlier head never writes must score 0, "
                                            f"got {zero:.4f}.{hint}")
        if not 0 < aligned <= 1 + 1e-6:
            return CheckResult(name, False, f"kind {kind!r}: a normalised score lies in (0, 1] "
                                            f"when the spaces overlap, got {aligned:.4f}: divide "
                                            f"by both norms")
    for kind in ("q", "k", "v"):
        r = compare_to_reference(name, lambda x, y, k=kind: fn(x, y, k),
                                 lambda x, y, k=kind: _ref_composition_score(x, y, k),
                                 lambda g: (torch.randn(6, 6, generator=g),
                                            torch.randn(6, 6, generator=g)))
        if not r.passed:
            return CheckResult(name, False, f"kind {kind!r}: {r.message}")
    return CheckResult(name, True, "Q, K and V match the reference on synthetic and random inputs")


def _diagnose(result: CheckResult, fn: Callable, args: tuple, variants: dict[str, Any]
              ) -> CheckResult:
    """If ``fn(*args)`` equals one of the ``variants`` (description -> value of a known wrong
    formula), add that description to a failed result's message."""
    try:
        got = fn(*args)
        got_t = torch.as_tensor(got, dtype=torch.float32)
    except Exception:  # noqa: BLE001
        return result
    for why, value in variants.items():
        value = torch.as_tensor(value, dtype=torch.float32)
        if got_t.shape == value.shape and torch.allclose(got_t, value, atol=1e-5, rtol=1e-4):
            return CheckResult(result.name, False, f"{result.message}. Your output equals "
                                                   f"{why.strip()}.")
    return result


_ref_copying_score = solutions.copying_score


@exercise("1.3", reference=solutions.copying_score)
def check_copying_score(fn: Callable) -> CheckResult:
    """``fn(emb [n, d], W_OV [d, d], W_U [d, V], ids [n], k) -> float``: the fraction of tokens
    whose own logit is among the top ``k`` of the whole vocabulary under ``emb @ W_OV @ W_U``."""
    name = "copying_score"
    d, n = 16, 10
    g = torch.Generator().manual_seed(1)
    E = torch.linalg.qr(torch.randn(d, d, generator=g))[0][:n]
    W_U = torch.cat([torch.zeros(d, 3), E.T], dim=1)  # tokens 3..12 are the rows of E
    ids = torch.arange(3, 3 + n)
    # a circuit that maps token i to 2 * token i+1 + 1 * token i: its own logit comes second
    shift = torch.roll(torch.eye(n), 1, dims=1)  # row i -> token i+1
    second = E.T @ (torch.eye(n) + 2 * shift) @ E  # [d, d]
    answers = [fn(E, torch.eye(d), W_U, ids, 1), fn(E, -torch.eye(d), W_U, ids, 1),
               fn(E, second, W_U, ids, 1), fn(E, second, W_U, ids, 2)]
    ident, neg, top1, top2 = (as_number(a, "your copying score") for a in answers)
    if abs(ident - 1.0) > 1e-6:
        hint = (" Did you compare with positions 0..n-1 instead of the tokens' ids, or count a "
                "token as beating itself (count only *strictly* larger logits)?"
                if abs(ident) < 1e-6 else "")
        return CheckResult(name, False, f"an identity OV circuit copies every token, so the score "
                                        f"must be 1.0; got {ident:.3f}.{hint}")
    if neg > 1e-6:
        hint = (" It scored 1.0 as with the identity: did you leave W_OV out of the product?"
                if abs(neg - 1.0) < 1e-6 else "")
        return CheckResult(name, False, f"OV = -identity pushes each token *down*; it must score "
                                        f"0, got {neg:.3f}.{hint}")
    if abs(top1) > 1e-6 or abs(top2 - 1) > 1e-6:
        return CheckResult(name, False, f"a circuit that puts each token's own logit second must "
                                        f"score 0 with k=1 and 1 with k=2; got {top1:.2f} and "
                                        f"{top2:.2f}: the token is copied when fewer than k tokens "
                                        f"beat its own logit")
    result = compare_to_reference(
        name, fn, _ref_copying_score,
        lambda g: (torch.randn(12, 8, generator=g), torch.randn(8, 8, generator=g),
                   torch.randn(8, 30, generator=g), torch.randint(0, 30, (12,), generator=g),
                   int(torch.randint(1, 6, (1,), generator=g))))
    if not result.passed:
        g = torch.Generator().manual_seed(6)
        emb, ov = torch.randn(40, 8, generator=g), torch.randn(8, 8, generator=g)
        W_U, ids = torch.randn(8, 60, generator=g), torch.randperm(60, generator=g)[:40]
        logits = emb @ ov @ W_U
        among_ids = logits[:, ids]
        own = among_ids.diagonal()[:, None]
        names_only = ((among_ids > own).sum(-1) < 3).float().mean()
        result = _diagnose(result, fn, (emb, ov, W_U, ids, 3), {
            "the score over the listed tokens only: rank the own logit among the whole "
            "vocabulary (every column of W_U)": names_only})
    return result


_ref_patch_key_input = solutions.patch_key_input


@exercise("1.2", reference=solutions.patch_key_input)
def check_patch_key_input(fn: Callable) -> CheckResult:
    """``fn(k_input [B, T, H, d], out_current [B, T, d], out_source [B, T, d], head)``: one
    receiving head's key input with the sender's current output swapped for its source output."""
    name = "patch_key_input"
    g = torch.Generator().manual_seed(2)
    k = torch.randn(2, 5, 3, 4, generator=g)
    cur, src = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    before = k.clone()
    out = fn(k, cur, src, 1)
    if not torch.equal(k, before):
        return CheckResult(name, False, "the input was modified in place: clone it first (the "
                                        "hook's tensor is shared with the rest of the forward)")
    out = as_tensor(out, "your key input", torch.float32)
    if out.shape != k.shape:
        return CheckResult(name, False, f"return a tensor of the input's shape {tuple(k.shape)}")
    if not torch.allclose(out[:, :, [0, 2]], k[:, :, [0, 2]]):
        return CheckResult(name, False, "only the receiving head's key input may change; the "
                                        "other heads must keep reading the clean stream")
    if torch.allclose(out[:, :, 1], k[:, :, 1] + (cur - src), atol=1e-6):
        return CheckResult(name, False, "sign error: the patched input is input - current + "
                                        "source (you added current - source)")
    if torch.allclose(out[:, :, 1], k[:, :, 1] + src, atol=1e-6):
        return CheckResult(name, False, "you added the source output without removing the "
                                        "sender's current output: the input then holds both")
    if torch.allclose(out[:, :, 1], src, atol=1e-6):
        return CheckResult(name, False, "you replaced the whole input by the sender's output; the "
                                        "input is a *sum* of every sender's output, so swap only "
                                        "this sender's term")
    return compare_to_reference(name, fn, _ref_patch_key_input,
                                lambda g: (torch.randn(3, 4, 2, 5, generator=g),
                                           torch.randn(3, 4, 5, generator=g),
                                           torch.randn(3, 4, 5, generator=g),
                                           int(torch.randint(0, 2, (1,), generator=g))))


@exercise("3.1", reference=solutions.faithfulness)
def check_faithfulness(fn: Callable, m_circuit: float, m_full: float, m_corrupted: float,
                       library_value: float) -> CheckResult:
    """``fn(m_circuit, m_full, m_corrupted) -> float``; also compared with the library's value
    for the circuit the notebook found."""
    name = "faithfulness"
    answers = [fn(3.0, 3.0, 1.0), fn(1.0, 3.0, 1.0), fn(m_circuit, m_full, m_corrupted)]
    perfect, empty, got = (as_number(a, "your faithfulness") for a in answers)
    if abs(perfect - 1) > 1e-6 or abs(empty) > 1e-6:
        if abs(perfect) < 1e-6 and abs(empty - 1) < 1e-6:
            why = ("you computed the share *lost* (1 - faithfulness): subtract the corrupted "
                   "score from the circuit's, not the circuit's from the full model's")
        elif abs(perfect - 1) < 1e-6 and abs(empty - 1 / 3) < 1e-6:
            why = ("that is the unnormalised F(C) / F(M): it is 0 only if the corrupted run "
                   "scores 0, which ours does not; measure both from the corrupted score")
        else:
            why = "normalise by (full - corrupted) after subtracting the corrupted score"
        return CheckResult(name, False, f"a circuit that scores like the full model must give 1 "
                                        f"and one that scores like the corrupted run 0; got "
                                        f"{perfect:.3f} and {empty:.3f}: {why}")
    return check_value(name, got, library_value, atol=1e-4)


_ref_head_dla = solutions.head_dla


@exercise("2.1", reference=solutions.head_dla)
def check_head_dla(fn: Callable) -> CheckResult:
    """``fn(result [B, H, d], scale [B, 1], W_U [d, V], io_ids [B], s_ids [B]) -> [H]``: each
    head's direct logit attribution to logit(IO) - logit(S), averaged over prompts."""
    name = "head_dla"
    W_U = torch.cat([torch.eye(4), torch.zeros(4, 1)], dim=1)  # token t < 4 reads coordinate t
    io_ids, s_ids = torch.tensor([0, 1]), torch.tensor([2, 3])
    scale = torch.tensor([[2.0], [0.5]])
    direction = (W_U[:, io_ids] - W_U[:, s_ids]).T  # [2, 4], each of squared norm 2
    # head 0 writes exactly scale * direction (its DLA is |direction|^2 = 2 on both prompts);
    # head 1 writes nothing
    result = torch.stack([scale * direction, torch.zeros(2, 4)], dim=1)  # [B=2, H=2, d=4]
    got = fn(result.clone(), scale.clone(), W_U.clone(), io_ids, s_ids)
    got = as_tensor(got, "your DLA [head]", torch.float32)
    if got.shape != (2,):
        hint = (" Average over the prompts (dimension 0)." if got.shape == (2, 2) else "")
        return CheckResult(name, False, f"return one number per head, shape [H] = (2,); got "
                                        f"{tuple(got.shape)}.{hint}")
    if abs(float(got[1])) > 1e-5:
        return CheckResult(name, False, f"a head that writes nothing must score 0, got "
                                        f"{float(got[1]):.3f}")
    h0 = float(got[0])
    known = {-2.0: "the sign is reversed: project on W_U[IO] - W_U[S], not S - IO",
             2.5: "the final LayerNorm divides the residual by its scale before W_U: divide "
                  "each output by `scale` (the logits never see the raw output)",
             4.25: "divide by the final LayerNorm's scale, do not multiply",
             4.0: "average over the prompts, do not sum"}
    if abs(h0 - 2.0) > 1e-4:
        why = next((m for v, m in known.items() if abs(h0 - v) < 1e-4),
                   "project each head's output, divided by the scale, on W_U[:, IO] - W_U[:, S]")
        return CheckResult(name, False, f"a head writing exactly scale * (W_U[IO] - W_U[S]) must "
                                        f"score |W_U[IO] - W_U[S]|^2 = 2, got {h0:.3f}: {why}")

    def inputs(g: torch.Generator) -> tuple:
        B, H, d, V = 5, 3, 6, 11
        return (torch.randn(B, H, d, generator=g), torch.rand(B, 1, generator=g) + 0.5,
                torch.randn(d, V, generator=g), torch.randint(0, V, (B,), generator=g),
                torch.randint(0, V, (B,), generator=g))

    return compare_to_reference(name, fn, _ref_head_dla, inputs)
