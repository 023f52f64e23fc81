"""Bad and edge-case inputs to the engine, the graph methods and the tasks, by class (issue "No
silent wrong answers"): each case asserts the clear TutorialError it must raise (naming the
argument) or the correct handled result, never only "does not crash"."""

from __future__ import annotations

import math

import pytest
import torch

from tutorial_utils import composition as C
from tutorial_utils import patching as P
from tutorial_utils.circuits import (draw_circuit, eap_ig_scores, exact_scores, greedy, threshold,
                                     top_n)
from tutorial_utils.errors import TutorialError
from tutorial_utils.faithfulness import circuit_faithfulness, subset_minimality
from tutorial_utils.graph import Graph
from tutorial_utils.names import head_name, hook_name, parse_component, parse_head
from tutorial_utils.path_patching import edge_patching, wang_path_patching
from tutorial_utils.stats import rank_correlation, spearman
from tutorial_utils.tasks import TaskDataset, make_ioi, make_task


@pytest.fixture(scope="module")
def gt(hooked_model):
    return make_task("greater_than", hooked_model, n=4, seed=11)


@pytest.fixture(scope="module")
def graph(hooked_model):
    return Graph.from_model(hooked_model)


# --- silent wrong answers: now refused or right ---------------------------------------------
def test_a_metric_cannot_mix_variants_and_examples(hooked_model, gt):
    """The engine hands the metric one run [B, T, V], so a (B, n) reshape has nothing to mix:
    the result equals the task metric's."""
    def reshaped(logits, ds):  # a user who believed in stacked [n*B] logits
        return ds.metric(logits, per_example=True).reshape(len(ds), -1).mean(1)

    a = P.patch_heads(hooked_model, gt, progress=False).values
    b = P.patch_heads(hooked_model, gt, metric=reshaped, progress=False).values
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_nan_threshold_and_nan_scores_are_refused(graph):
    s = torch.randn(graph.n_forward, graph.n_backward)
    with pytest.raises(TutorialError, match="tau must be a finite number"):
        threshold(graph, s, float("nan"))
    bad = s.clone()
    bad[graph.real_edges.nonzero()[0, 0], graph.real_edges.nonzero()[0, 1]] = float("nan")
    with pytest.raises(TutorialError, match="NaN"):
        top_n(graph, bad, 3)
    with pytest.raises(TutorialError, match="NaN"):
        draw_circuit(graph, graph.real_edges, bad)


def test_rank_correlation_refuses_nan_and_ties_are_averaged():
    with pytest.raises(TutorialError, match="NaN"):
        rank_correlation(torch.tensor([1.0, float("nan"), 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert rank_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == -1.0
    # a plain computation with average ranks: ranks of [1, 1, 2] are [0.5, 0.5, 2]
    ra, rb = (torch.tensor([0.5, 0.5, 2.0], dtype=torch.float64),
              torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    want = float((ra * rb).sum() / (ra.norm() * rb.norm()))
    got = rank_correlation(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([5.0, 6.0, 7.0]))
    assert abs(got - want) < 1e-12
    with pytest.raises(TutorialError, match="shape"):
        spearman(torch.zeros(2, 3), torch.zeros(3, 2))


def test_fractional_token_ids_and_negative_layers_are_refused(hooked_model):
    with pytest.raises(TutorialError, match="integer token ids"):
        C.copying_scores(hooked_model, [3.7])
    with pytest.raises(TutorialError, match=">= 0"):
        hook_name("z", -1)
    with pytest.raises(TutorialError, match="not a head name"):
        parse_head("L3H0")
    with pytest.raises(TutorialError, match="two integers"):
        head_name(1.5, 0)  # type: ignore[arg-type]


# --- silent NaN -------------------------------------------------------------------------------
def test_a_nan_metric_is_refused_before_any_result(hooked_model, gt, graph):
    nan_metric = lambda logits, ds: ds.metric(logits) * float("nan")  # noqa: E731
    with pytest.raises(TutorialError, match="non-finite"):
        P.patch_heads(hooked_model, gt, metric=nan_metric, progress=False)
    with pytest.raises(TutorialError, match="non-finite"):
        eap_ig_scores(hooked_model, graph, gt, steps=2, metric=nan_metric)


# --- obscure errors -> clear ones -------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [({"n": 2.5}, "positive integer"), ({"n": "8"}, "positive integer"),
                                          ({"n": 0}, "positive integer"), ({"n": True}, "positive integer")])
def test_task_sizes_are_checked(hooked_model, kwargs, match):
    with pytest.raises(TutorialError, match=match):
        make_ioi(hooked_model, **kwargs)
    with pytest.raises(TutorialError, match=match):
        make_task("greater_than", hooked_model, **kwargs)


def test_a_task_needs_a_model_or_tokenizer():
    with pytest.raises(TutorialError, match="load_model"):
        make_task("ioi", None)
    with pytest.raises(TutorialError, match="load_model"):
        make_task("ioi", "gpt2")


def test_subset_indices_are_checked(gt):
    with pytest.raises(TutorialError, match="index 99"):
        gt.subset([99])
    with pytest.raises(TutorialError, match="index 1.5"):
        gt.subset([1.5])
    assert gt.subset([-1]).clean_prompts == gt.clean_prompts[-1:]


def test_circuit_and_component_specs_are_checked(hooked_model, gt):
    with pytest.raises(TutorialError, match="list of nodes"):
        circuit_faithfulness(hooked_model, gt, None)
    with pytest.raises(TutorialError, match="list of nodes"):
        circuit_faithfulness(hooked_model, gt, "a0.h0")
    with pytest.raises(TutorialError, match="unknown node"):
        circuit_faithfulness(hooked_model, gt, ["a0.h9"])
    with pytest.raises(TutorialError, match="position after '@'"):
        P.ablate(hooked_model, gt.clean_tokens, ["a0.h0@x"], "zero")
    with pytest.raises(TutorialError, match="cannot parse"):
        parse_component("attention 3")
    with pytest.raises(TutorialError, match="single edge"):
        edge_patching(hooked_model, gt, ("a0.h0", "logits"))
    with pytest.raises(TutorialError, match="receivers is empty"):
        wang_path_patching(hooked_model, gt, ["a0.h0"], [])
    with pytest.raises(TutorialError, match="'embed' is not one"):
        wang_path_patching(hooked_model, gt, ["embed", "a0.h0"], ["logits"])
    with pytest.raises(TutorialError, match="greedy"):
        subset_minimality(hooked_model, gt, ["a0.h0"], search="random")


def test_metrics_that_cannot_be_called_as_the_contract_says(hooked_model, gt, graph):
    with pytest.raises(TutorialError, match=r"metric\(logits, dataset\)"):
        P.patch_heads(hooked_model, gt, metric=lambda logits: logits.mean(), progress=False)
    with pytest.raises(TutorialError, match="must be a function"):
        P.patch_heads(hooked_model, gt, metric="logit_diff", progress=False)
    with pytest.raises(TutorialError, match="gradient"):  # a float has no gradient
        eap_ig_scores(hooked_model, graph, gt, steps=1,
                      metric=lambda lg, ds: float(ds.metric(lg)))
    with pytest.raises(TutorialError, match="no task metric"):
        TaskDataset.from_tokens(gt.clean_tokens, gt.corrupted_tokens, None)


def test_selection_sizes_are_integers(graph):
    s = torch.randn(graph.n_forward, graph.n_backward)
    with pytest.raises(TutorialError, match="integer"):
        top_n(graph, s, 10.5)
    with pytest.raises(TutorialError, match="integer"):
        greedy(graph, s, -1)
    assert int(top_n(graph, s, 10).sum()) == 10


# --- unbounded runs ---------------------------------------------------------------------------
def test_ig_steps_are_bounded(hooked_model, gt, graph):
    with pytest.raises(TutorialError, match=r"steps must be an integer in \[1, 1000\]"):
        eap_ig_scores(hooked_model, graph, gt, steps=10 ** 6)
    with pytest.raises(TutorialError, match="steps"):
        eap_ig_scores(hooked_model, graph, gt, steps=2.5)


# --- correct answers that must be accepted ---------------------------------------------------
def test_heads_as_names_or_pairs_and_exact_scores_on_a_subset(hooked_model, gt, graph):
    assert parse_head("a3.h1") == parse_head((3, 1)) == (3, 1)
    edges = graph.edge_mask(["m2->logits"])
    s = exact_scores(hooked_model, graph, gt, edges=edges)
    assert int((s != 0).sum()) <= 1 and math.isfinite(float(s.abs().max()))
