"""Notebook 05 (high-level circuits): the exercise checks accept the references, reject the
common mistakes with a message that names them, and ``receiver_gradients`` assembles EAP and
EAP-IG exactly as the library's scoring functions do."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.circuits import (Graph, eap_ig_scores, eap_scores, receiver_gradients,
                                     sender_activations)
from tutorial_utils.course.checks import nb05
from tutorial_utils.tasks import make_greater_than


pytestmark = pytest.mark.usefixtures("lenient_checks")


def test_checks_pass_references():
    assert nb05.check_eap_all_edges.judge(nb05.reference_eap_all_edges).passed
    assert nb05.check_ig_gradient.judge(nb05.reference_ig_gradient).passed
    assert nb05.check_top_n_edges.judge(nb05.reference_top_n_edges).passed
    assert nb05.check_faithfulness_curve.judge(nb05.reference_faithfulness_curve).passed


def test_eap_check_names_mistakes():
    ref = nb05.reference_eap_all_edges
    res = nb05.check_eap_all_edges.judge(lambda a, b, g, r: ref(b, a, g, r))
    assert not res.passed and "sign" in res.message
    res = nb05.check_eap_all_edges.judge(lambda a, b, g, r: torch.einsum("btsd,btrd->sr", b - a, g))
    assert not res.passed and "not edges" in res.message
    res = nb05.check_eap_all_edges.judge(lambda a, b, g, r: ref(a, b, g, r) / a.shape[0])
    assert not res.passed and "averaged" in res.message
    res = nb05.check_eap_all_edges.judge(lambda a, b, g, r: torch.einsum("btsd,btrd->bsr", b - a, g))
    assert not res.passed and "shape" in res.message
    assert "not implemented" in nb05.check_eap_all_edges.judge(
        lambda *a: (_ for _ in ()).throw(NotImplementedError())).message


def test_ig_check_names_mistakes():
    def left(grad_fn, x, x0, m):
        return sum(grad_fn(x0 + k / m * (x - x0)) for k in range(m)) / m

    def summed(grad_fn, x, x0, m):
        return sum(grad_fn(x0 + k / m * (x - x0)) for k in range(1, m + 1))

    def at_clean(grad_fn, x, x0, m):
        return sum(grad_fn(x) for _ in range(m)) / m

    res = nb05.check_ig_gradient.judge(left)
    assert not res.passed and "clean input" in res.message   # steps=1 lands on the corrupted input
    res = nb05.check_ig_gradient.judge(summed)
    assert not res.passed and "divide" in res.message
    res = nb05.check_ig_gradient.judge(at_clean)
    assert not res.passed and "1.5, 2, 2.5, 3" in res.message


def test_top_n_and_curve_checks_name_mistakes():
    ref = nb05.reference_top_n_edges
    res = nb05.check_top_n_edges.judge(lambda s, r, n: ref(s, torch.ones_like(r), n))
    assert not res.passed and "not an edge" in res.message
    res = nb05.check_top_n_edges.judge(lambda s, r, n: ref(s.clamp(min=0) + 1e-9 * s, r, n))
    assert not res.passed and "|score|" in res.message
    curve = nb05.reference_faithfulness_curve
    res = nb05.check_faithfulness_curve.judge(lambda *a: 1 - curve(*a))
    assert not res.passed and "loses" in res.message
    res = nb05.check_faithfulness_curve.judge(
        lambda ev, s, r, grid, mc, mx: curve(ev, s, r, grid, mc, mx) * (mc - mx) + mx)
    assert not res.passed and "raw metrics" in res.message
    res = nb05.check_faithfulness_curve.judge(lambda ev, s, r, grid, mc, mx: curve(ev, s.clamp(min=0), r, grid, mc, mx))
    assert not res.passed and "|score|" in res.message


@pytest.fixture(scope="module")
def parts(hooked_model):
    ds = make_greater_than(hooked_model, n=6, seed=3)
    graph = Graph.from_model(hooked_model)
    clean = sender_activations(hooked_model, graph, ds.clean_tokens)
    corr = sender_activations(hooked_model, graph, ds.corrupted_tokens)
    return ds, graph, clean, corr


def test_receiver_gradients_assemble_eap(hooked_model, parts):
    ds, graph, clean, corr = parts
    grads = receiver_gradients(hooked_model, graph, ds)
    assert grads.shape == (len(ds), ds.clean_tokens.shape[1], graph.n_backward, hooked_model.cfg.d_model)
    mine = nb05.reference_eap_all_edges(clean, corr, grads, graph.real_edges)
    torch.testing.assert_close(mine, eap_scores(hooked_model, graph, ds), atol=1e-5, rtol=1e-4)


def test_receiver_gradients_riemann_sum_is_eap_ig(hooked_model, parts):
    ds, graph, clean, corr = parts
    ig = nb05.reference_ig_gradient(lambda x: receiver_gradients(hooked_model, graph, ds, embed=x),
                                    clean[:, :, 0], corr[:, :, 0], 3)
    mine = nb05.reference_eap_all_edges(clean, corr, ig, graph.real_edges)
    torch.testing.assert_close(mine, eap_ig_scores(hooked_model, graph, ds, steps=3),
                               atol=1e-5, rtol=1e-4)


def test_receiver_gradients_one_entry_by_hand(hooked_model, parts):
    """An independent gradient: the metric's derivative at MLP 1's input by a plain hook."""
    ds, graph, _, _ = parts
    grads = receiver_gradients(hooked_model, graph, ds)
    r = graph.backward_names.index("m1")
    held = {}

    def keep(x, hook):
        x = x.clone().requires_grad_(True)
        held["x"] = x
        return x

    with torch.enable_grad():
        logits = hooked_model.run_with_hooks(ds.clean_tokens,
                                             fwd_hooks=[(graph.node("m1").in_hooks["mlp"], keep)])
        (g,) = torch.autograd.grad(ds.metric(logits), [held["x"]])
    torch.testing.assert_close(grads[:, :, r], g, atol=1e-6, rtol=1e-4)


def test_receiver_gradients_refuse_a_wrong_embedding(hooked_model, parts):
    from tutorial_utils.errors import TutorialError

    ds, graph, _, _ = parts
    with pytest.raises(TutorialError, match="embed must be"):
        receiver_gradients(hooked_model, graph, ds, embed=torch.zeros(1, 2, 3))
