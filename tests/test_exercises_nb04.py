"""Notebook 04 (composition): each exercise check accepts the notebook's solution and rejects
the common mistakes with a message that names them."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.exercise_checks import nb04


@pytest.fixture(autouse=True)
def _not_strict(monkeypatch):
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)


# -- Exercise 1.1: K-composition ---------------------------------------------------------------

def k_composition(W_QK, W_OV):
    return (W_QK @ W_OV.T).norm() / (W_QK.norm() * W_OV.norm())


def test_k_composition_accepts_the_solution():
    assert nb04.check_k_composition(k_composition).passed


@pytest.mark.parametrize("wrong, words", [
    (lambda qk, ov: (ov @ qk).norm() / (qk.norm() * ov.norm()), "Q-composition"),
    (lambda qk, ov: (qk.T @ ov).norm() / (qk.norm() * ov.norm()), "which side"),
    (lambda qk, ov: (qk @ ov.T).norm(), "divide"),
    (lambda qk, ov: (qk @ ov.T).norm() / qk.norm(), "divide"),
])
def test_k_composition_rejects_mistakes(wrong, words):
    r = nb04.check_k_composition(wrong)
    assert not r.passed and words in r.message, r.message


# -- Exercise 1.2: one path-patching step into a key --------------------------------------------

def patch_key_input(k_input, out_current, out_source, head):
    new = k_input.clone()
    new[:, :, head] = new[:, :, head] + (out_source - out_current)
    return new


def test_patch_key_input_accepts_the_solution():
    assert nb04.check_patch_key_input(patch_key_input).passed


def _in_place(k, cur, src, head):
    k[:, :, head] += src - cur
    return k


def _all_heads(k, cur, src, head):
    return k + (src - cur)[:, :, None]


def _sign(k, cur, src, head):
    new = k.clone()
    new[:, :, head] += cur - src
    return new


def _add_only(k, cur, src, head):
    new = k.clone()
    new[:, :, head] += src
    return new


def _replace(k, cur, src, head):
    new = k.clone()
    new[:, :, head] = src
    return new


@pytest.mark.parametrize("wrong, words", [
    (_in_place, "in place"), (_all_heads, "only the receiving head"), (_sign, "sign error"),
    (_add_only, "without removing"), (_replace, "*sum*"),
])
def test_patch_key_input_rejects_mistakes(wrong, words):
    r = nb04.check_patch_key_input(wrong)
    assert not r.passed and words in r.message, r.message


# -- Exercise 1.3: copying score -----------------------------------------------------------------

def copying_score(emb, W_OV, W_U, ids):
    return float(((emb @ W_OV @ W_U).argmax(-1) == ids).float().mean())


def test_copying_score_accepts_the_solution():
    assert nb04.check_copying_score(copying_score).passed


def test_copying_score_perfect_copier_scores_one():
    """The defining case: an identity OV circuit with orthonormal embeddings copies every token."""
    E = torch.eye(6)
    assert copying_score(E, torch.eye(6), E.T, torch.arange(6)) == 1.0


@pytest.mark.parametrize("wrong, words", [
    (lambda e, ov, u, ids: float(((e @ ov @ u).argmax(-1) == torch.arange(len(ids))).float().mean()),
     "ids"),
    (lambda e, ov, u, ids: float(((e @ u).argmax(-1) == ids).float().mean()), "W_OV out"),
    (lambda e, ov, u, ids: float(((e @ ov @ u).topk(5, -1).indices == ids[:, None]).any(-1)
                                 .float().mean()), "top-1"),
    (lambda e, ov, u, ids: float((ids[(e @ ov @ u)[:, ids].argmax(-1)] == ids).float().mean()),
     "whole vocabulary"),
])
def test_copying_score_rejects_mistakes(wrong, words):
    r = nb04.check_copying_score(wrong)
    assert not r.passed and words in r.message, r.message


# -- Exercise 2.1: heads above a threshold -------------------------------------------------------

SCORES = {"a0.h0": 0.71, "a0.h7": 0.12, "a1.h2": -0.3, "a2.h1": 0.01}
EXPECTED = ["a0.h0", "a0.h7", "a1.h2"]


def test_receivers_above_accepts_the_solution():
    fn = lambda s, t: sorted(h for h, x in s.items() if abs(x) >= t)  # noqa: E731
    assert nb04.check_receivers_above(fn, SCORES, 0.1, EXPECTED).passed


@pytest.mark.parametrize("wrong, words", [
    (lambda s, t: sorted(h for h, x in s.items() if x >= t), "absolute"),
    (lambda s, t: sorted(h for h, x in s.items() if abs(x) > t), ">="),
    (lambda s, t: [h for h, x in sorted(s.items(), key=lambda i: -abs(i[1])) if abs(x) >= t],
     "sorted by name"),
])
def test_receivers_above_rejects_mistakes(wrong, words):
    r = nb04.check_receivers_above(wrong, SCORES, 0.1, EXPECTED)
    assert not r.passed and words in r.message, r.message


# -- Exercise 3.1: faithfulness -------------------------------------------------------------------

def faithfulness(m_circuit, m_full, m_corrupted):
    return (m_circuit - m_corrupted) / (m_full - m_corrupted)


def test_faithfulness_accepts_the_solution():
    assert nb04.check_faithfulness(faithfulness, 0.92, 4.25, -2.38,
                                   faithfulness(0.92, 4.25, -2.38)).passed


@pytest.mark.parametrize("wrong, words", [
    (lambda c, f, k: (f - c) / (f - k), "lost"),
    (lambda c, f, k: c / f, "unnormalised"),
    (lambda c, f, k: (c - k) / f, "normalise"),
])
def test_faithfulness_rejects_mistakes(wrong, words):
    r = nb04.check_faithfulness(wrong, 0.92, 4.25, -2.38, faithfulness(0.92, 4.25, -2.38))
    assert not r.passed and words in r.message, r.message


def test_faithfulness_rejects_a_value_for_another_circuit():
    """The formula is right but applied to other numbers than the notebook's circuit."""
    r = nb04.check_faithfulness(faithfulness, 1.36, 4.25, -2.38, faithfulness(0.92, 4.25, -2.38))
    assert not r.passed
