"""Notebook 04 (composition): each exercise check accepts the notebook's solution and rejects
the common mistakes with a message that names them."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.course.checks import nb04


pytestmark = pytest.mark.usefixtures("lenient_checks")


# -- Exercise 1.1: K-composition ---------------------------------------------------------------

def k_composition(W_QK, W_OV):
    return (W_QK @ W_OV.T).norm() / (W_QK.norm() * W_OV.norm())


def test_k_composition_accepts_the_solution():
    assert nb04.check_k_composition(k_composition).passed


def composition_score(W_later, W_OV, kind):
    if kind == "k":
        product = W_later @ W_OV.T
    else:
        product = W_OV @ W_later
    return product.norm() / (W_later.norm() * W_OV.norm())


def test_composition_score_accepts_the_solution():
    r = nb04.check_composition_score.judge(composition_score)
    assert r.passed, r.message


def test_composition_score_is_zero_for_orthogonal_spaces_and_one_for_a_shared_direction():
    """The defining invariants: a head that writes where the later head never reads scores 0;
    two rank-1 matrices through one shared unit direction score 1 (the bound is attained)."""
    e = torch.eye(4)
    ov = e[:, :1] @ e[:1]                 # writes along e0 only
    assert float(composition_score(e[:, 1:2] @ e[1:2], ov, "q")) == 0.0
    assert abs(float(composition_score(e[:, :1] @ e[:1], ov, "q")) - 1.0) < 1e-6


@pytest.mark.parametrize("wrong, words", [
    (lambda w, ov, kind: (w @ ov.T).norm() / (w.norm() * ov.norm()), "K-composition product"),
    (lambda w, ov, kind: composition_score(w, ov, "q"), "Q-composition"),
    (lambda w, ov, kind: (ov @ w).norm() / (w.norm() * ov.norm()) if kind != "v"
     else (w @ ov).norm() / (w.norm() * ov.norm()), "kind 'k'"),
    (lambda w, ov, kind: (w @ ov).norm() / (w.norm() * ov.norm()) if kind == "v"
     else composition_score(w, ov, kind), "W_OV @ W_later"),
])
def test_composition_score_rejects_mistakes(wrong, words):
    r = nb04.check_composition_score.judge(wrong)
    assert not r.passed and words in r.message, r.message


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
    assert nb04.check_patch_key_input.judge(patch_key_input).passed


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
    r = nb04.check_patch_key_input.judge(wrong)
    assert not r.passed and words in r.message, r.message


# -- Exercise 1.3: copying score (top-k over the whole vocabulary) -------------------------------

def copying_score(emb, W_OV, W_U, ids, k=1):
    logits = emb @ W_OV @ W_U
    beaten_by = (logits > logits.gather(1, ids[:, None])).sum(-1)
    return float((beaten_by < k).float().mean())


def test_copying_score_accepts_the_solution():
    r = nb04.check_copying_score.judge(copying_score)
    assert r.passed, r.message


def test_copying_score_perfect_copier_scores_one_and_top1_is_the_argmax():
    """The defining case (an identity OV circuit with orthonormal embeddings copies every token),
    and k = 1 equals the plain argmax test of tutorial_utils.composition.copying_fraction."""
    from tutorial_utils.composition import copying_fraction

    E = torch.eye(6)
    assert copying_score(E, torch.eye(6), E.T, torch.arange(6)) == 1.0
    g = torch.Generator().manual_seed(0)
    emb, ov, W_U = torch.randn(50, 8, generator=g), torch.randn(8, 8, generator=g), \
        torch.randn(8, 40, generator=g)
    ids = torch.randint(0, 40, (50,), generator=g)
    assert copying_score(emb, ov, W_U, ids, 1) == copying_fraction(emb, ov, W_U, ids)


def _argmax_positions(e, ov, u, ids, k=1):
    return float(((e @ ov @ u).argmax(-1) == torch.arange(len(ids))).float().mean())


def _counts_itself(e, ov, u, ids, k=1):
    logits = e @ ov @ u
    return float(((logits >= logits.gather(1, ids[:, None])).sum(-1) < k).float().mean())


def _no_ov(e, ov, u, ids, k=1):
    return copying_score(e, torch.eye(e.shape[1]), u, ids, k)


def _top1_always(e, ov, u, ids, k=1):
    return copying_score(e, ov, u, ids, 1)


def _names_only(e, ov, u, ids, k=1):
    among = (e @ ov @ u)[:, ids]
    return float(((among > among.diagonal()[:, None]).sum(-1) < k).float().mean())


@pytest.mark.parametrize("wrong, words", [
    (_argmax_positions, "instead of the tokens' ids"), (_counts_itself, "strictly"),
    (_no_ov, "W_OV out"), (_top1_always, "fewer than k"), (_names_only, "whole vocabulary"),
])
def test_copying_score_rejects_mistakes(wrong, words):
    r = nb04.check_copying_score.judge(wrong)
    assert not r.passed and words in r.message, r.message


# -- Exercise 2.1: direct logit attribution per head --------------------------------------------

def head_dla(result, scale, W_U, io_ids, s_ids):
    direction = (W_U[:, io_ids] - W_U[:, s_ids]).T
    normalised = result / scale[:, :, None]
    return (normalised * direction[:, None]).sum(-1).mean(0)


def test_head_dla_accepts_the_solution():
    assert nb04.check_head_dla.judge(head_dla).passed


def test_head_dla_matches_the_library_on_a_model(hooked_model):
    """Independent path: tutorial_utils.dla on the offline model, per head, IO - S. A head's
    output is hook_result plus its value bias b_V W_O, which compatibility mode folded into b_O
    (the notebook adds it the same way)."""
    from tutorial_utils.dla import (direct_logit_attribution, head_value_bias_outputs,
                                    logit_diff_attribution)
    from tutorial_utils.tasks import make_ioi

    m = hooked_model
    ioi = make_ioi(m, n=6, seed=0)
    _, cache = m.run_with_cache(ioi.clean_tokens)
    b, end = torch.arange(len(ioi)), ioi.answer_pos
    io, s = ioi.candidate_ids[:, 0], ioi.candidate_ids[:, 1]
    scale = cache["ln_final.hook_scale"][b, end]
    vb = head_value_bias_outputs(m)
    mine = torch.stack([head_dla(cache[f"blocks.{l}.attn.hook_result"][b, end] + vb[l], scale,
                                 m.W_U, io, s) for l in range(m.cfg.n_layers)])
    lib = direct_logit_attribution(m, ioi.clean_tokens, end, ioi.candidate_ids[:, :2], cache=cache)
    ld = logit_diff_attribution(lib, io, s)
    ref = torch.stack([torch.stack([ld[lib.labels.index(f"a{l}.h{h}")].mean()
                                    for h in range(m.cfg.n_heads)]) for l in range(m.cfg.n_layers)])
    assert torch.allclose(mine, ref, atol=1e-4)


@pytest.mark.parametrize("wrong, words", [
    (lambda r, sc, u, io, s: head_dla(r, sc, u, s, io), "sign is reversed"),
    (lambda r, sc, u, io, s: (r * (u[:, io] - u[:, s]).T[:, None]).sum(-1).mean(0),
     "divide each output"),
    (lambda r, sc, u, io, s: head_dla(r * sc[:, :, None] ** 2, sc, u, io, s), "do not multiply"),
    (lambda r, sc, u, io, s: head_dla(r, sc, u, io, s) * r.shape[0], "do not sum"),
    (lambda r, sc, u, io, s: ((r / sc[:, :, None]) * (u[:, io] - u[:, s]).T[:, None]).sum(-1),
     "Average over the prompts"),
])
def test_head_dla_rejects_mistakes(wrong, words):
    r = nb04.check_head_dla.judge(wrong)
    assert not r.passed and words in r.message, r.message


# -- Exercise 3.1: faithfulness -------------------------------------------------------------------

def faithfulness(m_circuit, m_full, m_corrupted):
    return (m_circuit - m_corrupted) / (m_full - m_corrupted)


def test_faithfulness_accepts_the_solution():
    assert nb04.check_faithfulness.judge(faithfulness, 0.92, 4.25, -2.38,
                                   faithfulness(0.92, 4.25, -2.38)).passed


@pytest.mark.parametrize("wrong, words", [
    (lambda c, f, k: (f - c) / (f - k), "lost"),
    (lambda c, f, k: c / f, "unnormalised"),
    (lambda c, f, k: (c - k) / f, "normalise"),
])
def test_faithfulness_rejects_mistakes(wrong, words):
    r = nb04.check_faithfulness.judge(wrong, 0.92, 4.25, -2.38, faithfulness(0.92, 4.25, -2.38))
    assert not r.passed and words in r.message, r.message


def test_faithfulness_rejects_a_value_for_another_circuit():
    """The formula is right but applied to other numbers than the notebook's circuit."""
    r = nb04.check_faithfulness.judge(faithfulness, 1.36, 4.25, -2.38, faithfulness(0.92, 4.25, -2.38))
    assert not r.passed
