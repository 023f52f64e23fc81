"""Concept erasure by iterative nullspace projection (Ravfogel et al. 2020): the defining
properties of the eraser, on synthetic data with a known concept subspace and on the model."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import concept_erasure as E
from tutorial_utils import probing as P
from tutorial_utils.errors import TutorialError


def _synthetic(n: int, d: int = 20, seed: int = 0):
    """A binary concept carried by three directions (different strengths) plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(2, (n,), generator=g)
    q, _ = torch.linalg.qr(torch.randn(d, 3, generator=torch.Generator().manual_seed(99)))
    signal = (2 * y[:, None] - 1).float() * torch.tensor([2.0, 1.0, 0.5])
    X = torch.randn(n, d, generator=g) + signal @ q.T + 3.0
    return X, y, q.T


def test_projection_is_idempotent_symmetric_and_removes_rank_k():
    X, y, _ = _synthetic(2000)
    for k in (1, 3, 6):
        er = E.inlp(X, y, k)
        Pm = er.projection
        assert er.rank == k and er.basis.shape == (k, 20)
        torch.testing.assert_close(Pm @ Pm, Pm, atol=1e-10, rtol=0)
        torch.testing.assert_close(Pm, Pm.T, atol=1e-12, rtol=0)
        assert int(torch.linalg.matrix_rank(torch.eye(20, dtype=torch.float64) - Pm)) == k
        torch.testing.assert_close(er.basis @ er.basis.T, torch.eye(k, dtype=torch.float64),
                                   atol=1e-10, rtol=0)
        # erasing twice is erasing once; the removed coordinates equal the mean's
        Xe = er(X.double())
        torch.testing.assert_close(er(Xe), Xe, atol=1e-10, rtol=0)
        torch.testing.assert_close((Xe - er.mean) @ er.basis.T,
                                   torch.zeros(len(X), k, dtype=torch.float64), atol=1e-9, rtol=0)


def test_after_erasure_a_fresh_probe_is_at_chance_on_held_out_data():
    X, y, _ = _synthetic(2000, seed=0)
    Xt, yt, _ = _synthetic(2000, seed=1)
    before = P.train_probe(X, y).accuracy(Xt, yt)
    er = E.inlp(X, y, 6)
    after = P.train_probe(er(X.double()).float(), y).accuracy(er(Xt.double()).float(), yt)
    assert before > 0.95
    assert abs(after - 0.5) < 0.05, after
    # the random control of the same rank leaves the concept readable
    rnd = E.random_eraser(20, 6, er.mean, seed=0)
    assert P.train_probe(rnd(X.double()).float(), y).accuracy(rnd(Xt.double()).float(), yt) > 0.8
    # the first iteration's probe was accurate, later ones less so
    assert er.probe_accuracies[0] > 0.95 and er.probe_accuracies[-1] < 0.6


def test_first_direction_is_the_concept_direction():
    """With isotropic noise the optimal linear reader of the planted concept is the direction
    of the class-mean difference, q_true^T [2, 1, 0.5]: INLP's first direction finds it."""
    X, y, q_true = _synthetic(20000)
    er = E.inlp(X, y, 1)
    true = torch.tensor([2.0, 1.0, 0.5]) @ q_true
    cos = float((er.basis[0].float() @ true).abs() / true.norm())
    assert cos > 0.99, cos


def test_nullspace_projection_matches_a_plain_gram_schmidt():
    g = torch.Generator().manual_seed(0)
    D = torch.randn(4, 9, generator=g, dtype=torch.float64)
    basis = []
    for v in D:
        for b in basis:
            v = v - (v @ b) * b
        basis.append(v / v.norm())
    Q = torch.stack(basis)
    torch.testing.assert_close(E.nullspace_projection(D), torch.eye(9, dtype=torch.float64) - Q.T @ Q)
    with pytest.raises(TutorialError, match="linearly dependent"):
        E.nullspace_projection(torch.stack([D[0], 2 * D[0]]))


def test_bad_inputs():
    X, y, _ = _synthetic(50)
    with pytest.raises(TutorialError, match="must be in"):
        E.inlp(X, y, 20)
    with pytest.raises(TutorialError, match="X must be"):
        E.inlp(X, y[:10], 2)
    with pytest.raises(TutorialError, match="two classes"):
        E.inlp(X, torch.zeros(50, dtype=torch.long), 2)


def test_run_with_eraser_identity_and_every_position(model):
    tokens = model.to_tokens(["The keys on the cabinet", "The key near the boxes"])
    hook = "blocks.1.hook_resid_pre"
    d = model.cfg.d_model
    with torch.no_grad():
        ref = model(tokens)
    # an eraser whose mean is the activation itself changes nothing at that position
    acts = P.collect_activations(model, tokens, hook)[hook]
    basis = E.random_eraser(d, 5, torch.zeros(d)).basis
    same = E.run_with_eraser(model, tokens[:1], hook, E.NullspaceEraser(basis, acts[0, 3].double()),
                             positions=[3])
    torch.testing.assert_close(same, ref[:1], atol=1e-4, rtol=1e-4)
    er = E.random_eraser(d, 5, torch.zeros(d), seed=1)
    out = E.run_with_eraser(model, tokens, hook, er)
    assert float((out[:, 0] - ref[:, 0]).abs().max()) > 1e-3  # position 0 erased too
    only_last = E.run_with_eraser(model, tokens, hook, er, positions=[4])
    torch.testing.assert_close(only_last[:, :4], ref[:, :4], atol=1e-4, rtol=1e-4)
    with pytest.raises(TutorialError, match="outside"):
        E.run_with_eraser(model, tokens, hook, er, positions=[9])


def test_run_with_eraser_one_eraser_per_position(model):
    """A {position: eraser} mapping applies each eraser at its own position, as a hand-written
    hook that projects each position's activation does."""
    tokens = model.to_tokens(["The keys on the cabinet", "The key near the boxes"])
    hook = "blocks.1.hook_resid_pre"
    d = model.cfg.d_model
    erasers = {2: E.random_eraser(d, 4, torch.zeros(d), seed=2),
               4: E.random_eraser(d, 6, torch.ones(d), seed=3)}

    def by_hand(act, hook):
        act = act.clone()
        for p, er in erasers.items():
            B, mu = er.basis.to(act.dtype), er.mean.to(act.dtype)
            x = act[:, p] - mu
            act[:, p] = x - (x @ B.T) @ B + mu  # remove the span of the (orthonormal) rows
        return act

    with torch.no_grad():
        want = model.run_with_hooks(tokens, fwd_hooks=[(hook, by_hand)])
    got = E.run_with_eraser(model, tokens, hook, erasers)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    with pytest.raises(TutorialError, match="not both"):
        E.run_with_eraser(model, tokens, hook, erasers, positions=[2])
    with pytest.raises(TutorialError, match="outside"):
        E.run_with_eraser(model, tokens, hook, {9: erasers[2]})
    with pytest.raises(TutorialError, match="NullspaceEraser"):
        E.run_with_eraser(model, tokens, hook, {2: "not an eraser"})
