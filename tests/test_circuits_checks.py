"""The notebook 05 (high-level circuits) exercise checks accept the references and reject wrong answers."""

from __future__ import annotations

import torch

from tutorial_utils.exercise_checks import nb05


def test_checks_pass_references(monkeypatch):
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)
    assert nb05.check_edge_score(nb05.reference_edge_score).passed
    assert nb05.check_top_n_edges(nb05.reference_top_n_edges).passed
    assert nb05.check_interchange_input(nb05.reference_interchange_input).passed
    assert nb05.check_smallest_circuit(nb05.reference_smallest_circuit).passed


def test_checks_reject_common_mistakes(monkeypatch):
    monkeypatch.delenv("TUTORIAL_CHECKS_STRICT", raising=False)
    # mean instead of sum over positions
    assert not nb05.check_edge_score(lambda d, g: (d * g).sum(-1).mean()).passed
    # signed instead of absolute scores, and forgetting the non-edges
    assert not nb05.check_top_n_edges(
        lambda s, r, n: nb05.reference_top_n_edges(s.clamp(min=0) + 1e-9 * s, r, n)).passed
    assert not nb05.check_top_n_edges(
        lambda s, r, n: nb05.reference_top_n_edges(s, torch.ones_like(r), n)).passed
    # adding the differences of the edges *in* the circuit
    assert not nb05.check_interchange_input(
        lambda x, d, c: nb05.reference_interchange_input(x, d, ~c)).passed
    # taking the first point that reaches the target in list order, not the fewest edges
    def first(n, f, t):
        ok = (f >= t).nonzero()
        return int(n[ok[0, 0]]) if len(ok) else None
    assert not nb05.check_smallest_circuit(first).passed
    assert nb05.check_circuit_metric(0.5, 0.5).passed
    assert not nb05.check_circuit_metric(0.4, 0.5).passed
