"""Faithfulness: the normalisation, and circuit invariants (full graph = 1, empty graph = 0,
node and edge circuits agree, completeness and minimality bookkeeping)."""

from __future__ import annotations

import math

import pytest
import torch

from tutorial_utils import path_patching as PP
from tutorial_utils.faithfulness import (all_nodes, circuit_faithfulness, completeness_check,
                                         minimality_scores, normalized_faithfulness)
from tutorial_utils.tasks import make_task

ATOL = 2e-5


def test_normalized_faithfulness_formula_and_policy():
    assert normalized_faithfulness(1.0, 2.0, 0.0) == pytest.approx(0.5)
    assert normalized_faithfulness(2.0, 2.0, 0.0) == pytest.approx(1.0)
    assert normalized_faithfulness(0.0, 2.0, 0.0) == pytest.approx(0.0)
    assert normalized_faithfulness(-1.0, 1.0, 3.0) == pytest.approx(2.0)  # sign-agnostic
    out = normalized_faithfulness(torch.tensor([1.0, 3.0]), 2.0, torch.tensor(1.0))
    torch.testing.assert_close(out, torch.tensor([0.0, 2.0]))
    # the package's one degenerate policy (tutorial_utils.tasks.metrics): NaN, or raise on request
    assert math.isnan(normalized_faithfulness(1.0, 0.5, 0.5))
    with pytest.raises(ValueError, match="undefined"):
        normalized_faithfulness(1.0, 0.5, 0.5, on_degenerate="raise")
    out = normalized_faithfulness(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]), 0.0,
                                  on_degenerate="nan")
    assert out[0] == 0.5 and torch.isnan(out[1])
    with pytest.raises(ValueError, match="not finite"):
        normalized_faithfulness(float("nan"), 1.0, 0.0)
    with pytest.raises(ValueError, match="on_degenerate"):
        normalized_faithfulness(1.0, 2.0, 0.0, on_degenerate="zero")


@pytest.fixture(scope="module")
def gt(hooked_model):
    return make_task("greater_than", hooked_model, n=4, seed=2)


@pytest.mark.parametrize("method", ["corrupted", "resample", "mean", "zero"])
def test_full_graph_is_one_and_empty_graph_zero(hooked_model, gt, method):
    full = circuit_faithfulness(hooked_model, gt, all_nodes(hooked_model), ablation=method)
    empty = circuit_faithfulness(hooked_model, gt, [], ablation=method)
    assert abs(full.faithfulness - 1) < 1e-4 and abs(empty.faithfulness) < 1e-4
    assert abs(full.metric_circuit - full.metric_clean) < ATOL
    if method == "corrupted":  # everything from the paired prompt = the corrupted run
        assert abs(empty.metric_circuit - empty.metric_corrupted) < ATOL
    g = PP.Graph.from_model(hooked_model)
    full_e = circuit_faithfulness(hooked_model, gt, g.edges, ablation=method)
    assert abs(full_e.faithfulness - 1) < 1e-4


@pytest.mark.parametrize("ablation", ["corrupted", "resample"])
def test_node_and_edge_circuits_agree_under_resampling(hooked_model, gt, ablation):
    """Under interchange (the paired corrupted prompt, or Chan et al.'s resampling of another
    prompt), ablating the nodes outside C equals ablating every edge that does not join two
    nodes of C (inside nodes read only inside nodes' current outputs)."""
    nodes = ["embed", "a0.h1", "a1.h3", "m0", "m2", "a3.h0"]
    g = PP.Graph.from_model(hooked_model)
    edges = [(s, r) for s, r in g.edges if s in nodes and g.receiver_node(r) in nodes + ["logits"]]
    a = circuit_faithfulness(hooked_model, gt, nodes, ablation=ablation)
    b = circuit_faithfulness(hooked_model, gt, edges, ablation=ablation)
    assert a.ablation == b.ablation == ablation
    assert a.kind == "node" and b.kind == "edge"
    assert abs(a.metric_circuit - b.metric_circuit) < ATOL
    assert abs(a.metric_circuit - a.metric_clean) > 1e-4  # the circuit is not trivially the model


def test_completeness_and_minimality_bookkeeping(hooked_model, gt):
    every = all_nodes(hooked_model)
    res = completeness_check(hooked_model, gt, every, n_random=2)
    # the full model as "circuit" is complete: F(C \ K) == F(M \ K) for every K
    assert res.incompleteness.max() < ATOL
    nodes = ["embed", "m0", "m1", "a2.h1"]
    res = completeness_check(hooked_model, gt, nodes, subsets=[[], ["m0"]])
    f = circuit_faithfulness(hooked_model, gt, nodes)
    assert abs(float(res.metric_circuit_minus_k[0]) - f.metric_circuit) < ATOL
    assert abs(float(res.metric_model_minus_k[0]) - f.metric_clean) < ATOL
    mins = minimality_scores(hooked_model, gt, nodes)
    assert set(mins) == set(nodes)
    f2 = circuit_faithfulness(hooked_model, gt, [n for n in nodes if n != "m1"])
    assert abs(mins["m1"] - (f.metric_circuit - f2.metric_circuit)) < ATOL


def test_bad_circuits_get_clear_errors(hooked_model, gt):
    with pytest.raises(ValueError, match="unknown node"):
        circuit_faithfulness(hooked_model, gt, ["a0.h9"])
    with pytest.raises(ValueError, match="not a mix"):
        circuit_faithfulness(hooked_model, gt, ["a0.h1", ("embed", "logits")])
    with pytest.raises(ValueError, match="ablation must be"):
        circuit_faithfulness(hooked_model, gt, ["a0.h1"], ablation="median")
    with pytest.raises(ValueError, match="not an edge"):
        circuit_faithfulness(hooked_model, gt, [("m3", "a0.h0.q")])
    with pytest.raises(ValueError, match="inside the circuit"):
        completeness_check(hooked_model, gt, ["m0"], subsets=[["m1"]])


def test_subset_minimality_is_wang_et_al_definition(hooked_model, gt):
    """score(v) = max_K |F(C \\ (K u {v})) - F(C \\ K)| over subsets K of C \\ {v}, computed
    here by brute force from circuit_faithfulness's metric of each sub-circuit."""
    import itertools

    from tutorial_utils.faithfulness import minimality_scores, subset_minimality

    circuit = ["embed", "a0.h0", "m0", "m1", "m2", "m3"]
    F = {}

    def metric_without(removed):
        key = frozenset(removed)
        if key not in F:
            F[key] = circuit_faithfulness(hooked_model, gt,
                                          [n for n in circuit if n not in key]).metric_circuit
        return F[key]

    ex = subset_minimality(hooked_model, gt, circuit, search="exhaustive")
    greedy = subset_minimality(hooked_model, gt, circuit, search="greedy")
    empty = minimality_scores(hooked_model, gt, circuit)
    for v in circuit:
        rest = [u for u in circuit if u != v]
        want = max(abs(metric_without(set(k) | {v}) - metric_without(k))
                   for r in range(len(rest) + 1) for k in itertools.combinations(rest, r))
        assert abs(ex.score[v] - want) < ATOL, v
        assert greedy.score[v] <= ex.score[v] + ATOL
        assert abs(ex.score_empty_subset[v] - abs(empty[v])) < ATOL
        assert ex.score[v] >= ex.score_empty_subset[v] - ATOL


def test_batch_size_changes_no_result(hooked_model, gt):
    """batch_size (default: the logits budget) only splits the forwards: means of batch means
    weighted by size are the dataset means."""
    nodes = ["embed", "a0.h1", "m0", "m2"]
    a = circuit_faithfulness(hooked_model, gt, nodes)
    b = circuit_faithfulness(hooked_model, gt, nodes, batch_size=3)
    for x, y in ((a.metric_circuit, b.metric_circuit), (a.metric_clean, b.metric_clean),
                 (a.metric_corrupted, b.metric_corrupted), (a.metric_empty, b.metric_empty)):
        assert abs(x - y) < 1e-6
    edges = [("a0.h1", "logits"), ("m0", "a2.h1.v")]
    torch.testing.assert_close(PP.edge_patching(hooked_model, gt, [[e] for e in edges]),
                               PP.edge_patching(hooked_model, gt, [[e] for e in edges],
                                                batch_size=3), atol=1e-6, rtol=0)
    m1 = minimality_scores(hooked_model, gt, nodes)
    m3 = minimality_scores(hooked_model, gt, nodes, batch_size=3)
    assert all(abs(m1[v] - m3[v]) < 1e-6 for v in nodes)
