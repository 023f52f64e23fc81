"""Invariant tests of tutorial_utils.circuits on a tiny random GPT-2 (any weights must pass)."""

from __future__ import annotations

import json

import pytest
import torch

from tutorial_utils.circuits import (Graph, count_edges, draw_circuit, eap_ig_scores, eap_scores,
                                     baseline_metrics, evaluate_graph, exact_scores,
                                     faithfulness_curve, greedy, node_attribution, prune,
                                     threshold, top_n)
from tutorial_utils.interchange import sender_activations
from tutorial_utils.tasks import make_greater_than, make_sva


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, offline_tokenizer):
    """A 3-layer, 4-head random GPT-2 with the offline tokenizer, booted like the real models."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tutorial_utils.models import load_model

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(offline_tokenizer), n_positions=64, n_embd=64, n_layer=3,
                     n_head=4, initializer_range=0.15, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, bos_token_id=offline_tokenizer.bos_token_id,
                     eos_token_id=offline_tokenizer.bos_token_id)
    path = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    offline_tokenizer.save_pretrained(path)
    return load_model(str(path), device="cpu", hooks=True, verbose=False)


@pytest.fixture(scope="module")
def ds(tiny_model):
    return make_greater_than(tiny_model, n=6, seed=1)


@pytest.fixture(scope="module")
def graph(tiny_model):
    return Graph.from_model(tiny_model)


@pytest.fixture(scope="module")
def baselines(tiny_model, ds):
    return baseline_metrics(tiny_model, ds)


# ------------------------------------------------------------------------ graph


def test_gpt2_small_shape_has_known_size():
    from transformers import GPT2Config

    g = Graph.from_config(GPT2Config(n_layer=12, n_head=12, n_embd=768))
    assert g.n_edges == 32491
    assert g.n_nodes == 158
    assert count_edges(12, 12) == 32491


@pytest.mark.parametrize("L,H", [(1, 1), (2, 3), (4, 4), (6, 8)])
def test_edge_count_formula_matches_mask(L, H):
    assert Graph(L, H).n_edges == count_edges(L, H)


def test_names_round_trip(graph):
    names = graph.edge_names(graph.real_edges)
    assert len(names) == graph.n_edges == len(set(names))
    for name in names[::7]:
        s, r = graph.edge_index(name)
        assert graph.edge_name(s, r) == name
    assert "a0.h1->a2.h3.q" in names and "m2->logits" in names and "a1.h0->m1" in names
    assert "m1->m1" not in names and "a1.h0->a1.h1.q" not in names


@pytest.mark.parametrize("bad", ["a9.h0->logits", "a0.h7->m1", "m1->a0.h0.q", "x->logits",
                                 "a0.h0->a1.h0<z>", "input-logits"])
def test_bad_edge_names_raise(graph, bad):
    with pytest.raises(ValueError):
        graph.edge_index(bad)


def test_json_round_trip(tmp_path, graph):
    g = graph.copy()
    g.scores = torch.randn(g.n_forward, g.n_backward)
    g.in_graph = top_n(g, None, 25)
    g.meta["task"] = "test"
    g.to_json(tmp_path / "c.json")
    h = Graph.from_json(tmp_path / "c.json")
    assert torch.equal(h.in_graph, g.in_graph)
    assert torch.allclose(h.scores[g.in_graph], g.scores[g.in_graph])
    assert h.meta["task"] == "test"
    data = json.loads((tmp_path / "c.json").read_text())
    assert len(data["edges"]) == 25


def test_mask_with_non_edge_is_rejected(graph):
    bad = graph.real_edges.clone()
    bad[graph.fwd_index("m2"), graph.bwd_index("m0")] = True
    with pytest.raises(ValueError, match="not edges"):
        graph.with_edges(bad)


# ------------------------------------------------------------------------ evaluation


def test_full_graph_is_clean_and_empty_graph_is_corrupted(tiny_model, graph, ds, baselines):
    clean, corrupted = baselines
    assert abs(clean - corrupted) > 1e-4  # the test would be vacuous otherwise
    masks = torch.stack([graph.real_edges, torch.zeros_like(graph.real_edges)])
    full, empty = evaluate_graph(tiny_model, graph, ds, masks).tolist()
    tol = 1e-4 * abs(clean - corrupted) + 1e-6
    assert abs(full - clean) < tol
    assert abs(empty - corrupted) < tol


def test_single_removed_edge_equals_exact_patching(tiny_model, graph, ds, baselines):
    names = ["embed->a0.h1.v", "a0.h2->a2.h3.q", "m0->a1.h1.k", "a1.h0->m1", "m1->m2",
             "a2.h3->logits", "embed->logits"]
    edges = torch.zeros_like(graph.real_edges)
    masks = []
    for n in names:
        s, r = graph.edge_index(n)
        edges[s, r] = True
        m = graph.real_edges.clone()
        m[s, r] = False
        masks.append(m)
    exact = exact_scores(tiny_model, graph, ds, edges=edges, batch_size=4)  # 2 batches
    removed = evaluate_graph(tiny_model, graph, ds, torch.stack(masks))
    clean = baselines[0]
    for n, val in zip(names, removed.tolist()):
        s, r = graph.edge_index(n)
        assert val - clean == pytest.approx(float(exact[s, r]), abs=2e-6, rel=1e-3), n
    assert float(exact[~edges].abs().max()) == 0.0


def test_exact_edges_match_independent_node_patching(tiny_model, graph, ds, baselines):
    """Removing every edge into a head's value input is patching that head's values with the
    corrupted ones; removing every edge out of the last MLP is patching its output."""
    L = graph.n_layers - 1
    cache = {}

    def save(name):
        def hook(x, hook):
            cache[name] = x.detach().clone()
            return x
        return hook

    with torch.no_grad():
        tiny_model.run_with_hooks(ds.corrupted_tokens, fwd_hooks=[
            (f"blocks.{L}.attn.hook_v", save("v")), (f"blocks.{L}.hook_mlp_out", save("mlp"))])

    def patch_v(x, hook):
        x = x.clone()
        x[:, :, 1] = cache["v"][:, :, 1]
        return x

    with torch.no_grad():
        ref_v = float(ds.metric(tiny_model.run_with_hooks(
            ds.clean_tokens, fwd_hooks=[(f"blocks.{L}.attn.hook_v", patch_v)])))
        ref_mlp = float(ds.metric(tiny_model.run_with_hooks(
            ds.clean_tokens, fwd_hooks=[(f"blocks.{L}.hook_mlp_out", lambda x, hook: cache["mlp"])])))
    m_v = graph.real_edges.clone()
    m_v[:, graph.bwd_index(f"a{L}.h1.v")] = False
    m_mlp = graph.real_edges.clone()
    m_mlp[graph.fwd_index(f"m{L}")] = False
    got = evaluate_graph(tiny_model, graph, ds, torch.stack([m_v, m_mlp])).tolist()
    assert got[0] == pytest.approx(ref_v, abs=1e-6)
    assert got[1] == pytest.approx(ref_mlp, abs=1e-6)
    assert abs(ref_v - baselines[0]) > 1e-6 or abs(ref_mlp - baselines[0]) > 1e-6


# ------------------------------------------------------------------------ attribution


def test_eap_equals_finite_difference(tiny_model, graph, ds):
    """EAP(s->r) = Δ_s · ∂M/∂in_r: the derivative of M(in_r + ε Δ_s) at ε = 0."""
    eap = eap_scores(tiny_model, graph, ds, batch_size=4)
    clean = sender_activations(tiny_model, graph, ds.clean_tokens)
    corr = sender_activations(tiny_model, graph, ds.corrupted_tokens)
    hooks = [(h.index, h.name, h.per_head) for h in graph.receiver_hooks()]
    eps = 1e-2
    for edge in ["m0->m1", "a0.h1->a1.h2.q", "embed->a1.h0.k", "m1->a2.h3.v", "a2.h0->logits"]:
        s, r = graph.edge_index(edge)
        sl, name, per_head = next(h for h in hooks if h[0].start <= r < h[0].stop)
        d = (corr - clean)[:, :, s]
        vals = []
        for sign in (1, -1):
            def hook(x, hook, sign=sign):
                x = x.clone()
                if per_head:
                    x[:, :, r - sl.start] += sign * eps * d
                else:
                    x += sign * eps * d
                return x
            with torch.no_grad():
                vals.append(float(ds.metric(tiny_model.run_with_hooks(
                    ds.clean_tokens, fwd_hooks=[(name, hook)]))))
        fd = (vals[0] - vals[1]) / (2 * eps)
        assert float(eap[s, r]) == pytest.approx(fd, rel=2e-2, abs=1e-6), edge


def test_eap_ig_one_step_is_eap_and_node_scores_are_row_sums(tiny_model, graph, ds):
    eap = eap_scores(tiny_model, graph, ds, batch_size=4)
    ig1 = eap_ig_scores(tiny_model, graph, ds, steps=1, batch_size=6)
    assert torch.allclose(eap, ig1, atol=1e-7, rtol=1e-4)
    nodes = node_attribution(tiny_model, graph, ds)
    assert torch.allclose(nodes, eap.sum(1), atol=1e-7, rtol=1e-3)
    assert float(eap[~graph.real_edges].abs().max()) == 0.0


def test_eap_ig_converges_with_steps(tiny_model, graph, ds):
    """The Riemann sum of EAP-IG with many steps changes little when the steps double."""
    a = eap_ig_scores(tiny_model, graph, ds, steps=16)
    b = eap_ig_scores(tiny_model, graph, ds, steps=32)
    assert (a - b).abs().max() < 0.1 * b.abs().max()


def _ig_of_the_embedding_by_hand(model, ds, steps):
    """Integrated gradients of the task metric (mean over the dataset) w.r.t. the residual stream
    entering block 0, from the corrupted to the clean embedding, right Riemann sum (points
    ``x' + (k/m)(x - x')``, ``k = 1..m``), dotted with ``x' - x``: plain hooks, no library code."""
    name = "blocks.0.hook_resid_pre"
    with torch.no_grad():
        _, c = model.run_with_cache(ds.clean_tokens, names_filter=name)
        _, k = model.run_with_cache(ds.corrupted_tokens, names_filter=name)
    x, x_corr = c[name], k[name]
    total = 0.0
    for step in range(1, steps + 1):
        point = (x_corr + step / steps * (x - x_corr)).detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model.run_with_hooks(ds.clean_tokens, fwd_hooks=[(name, lambda a, hook: point)])
            (grad,) = torch.autograd.grad(ds.metric(logits), point)
        total += float(((x_corr - x) * grad).sum()) / steps
    return total


def test_eap_ig_embed_row_is_integrated_gradients_and_complete(hooked_model):
    """The residual stream is a sum, so the ``embed`` row of the EAP-IG scores adds up to
    ``Δx · (1/m) Σ_k ∂M/∂x`` at the interpolation points (checked at m = 3 against plain hooks:
    -0.258; a left sum ``(k-1)/m``, or the
    ends swapped, which gives the same points, reads -0.312), and IG's completeness (Sundararajan
    et al. 2017) says it tends to ``M(corrupted) - M(clean)`` as m grows (on this task: -0.017 at
    m = 1, -0.323 at 4, -0.341 at 16, -0.343 at 32, for -0.346; a left sum converges to the same
    limit, from the other side, so only the m = 3 check tells the two apart)."""
    ds = make_greater_than(hooked_model, n=4, seed=3)
    g = Graph.from_model(hooked_model)
    clean, corrupted = baseline_metrics(hooked_model, ds)
    gap = corrupted - clean
    three = eap_ig_scores(hooked_model, g, ds, steps=3)
    assert float(three[0].sum()) == pytest.approx(_ig_of_the_embedding_by_hand(hooked_model, ds, 3),
                                                  abs=1e-4)
    err = {m: abs(float(eap_ig_scores(hooked_model, g, ds, steps=m)[0].sum()) - gap)
           for m in (4, 32)}
    assert err[32] < 0.02 * abs(gap) and err[32] < err[4] / 4, err


# ------------------------------------------------------------------------ selection


def test_top_n_threshold_and_greedy(graph):
    torch.manual_seed(0)
    scores = torch.randn(graph.n_forward, graph.n_backward)
    m = top_n(graph, scores, 30)
    assert int(m.sum()) == 30 and not (m & ~graph.real_edges).any()
    key = scores.abs()[graph.real_edges]
    assert scores.abs()[m].min() >= key.sort(descending=True).values[29]
    tau = float(scores.abs()[m].min())
    assert torch.equal(threshold(graph, scores, tau), m)
    gm = greedy(graph, scores, 30)
    assert int(gm.sum()) == 30
    # every greedy edge enters the logits or a node that the circuit itself uses as a sender
    recv = graph.receiver_owner()
    senders = set(gm.nonzero()[:, 0].tolist()) | {graph.n_forward}
    assert all(int(recv[r]) in senders for r in gm.nonzero()[:, 1].tolist())
    assert gm[:, graph.bwd_index("logits")].any()
    with pytest.raises(ValueError):
        top_n(graph, scores, graph.n_edges + 1)


def test_prune_never_changes_the_metric(tiny_model, graph, ds):
    torch.manual_seed(1)
    scores = torch.randn(graph.n_forward, graph.n_backward)
    masks = [top_n(graph, scores, n) for n in (10, 40, 120)]
    pruned = [prune(graph, m) for m in masks]
    assert sum(int(p.sum()) for p in pruned) < sum(int(m.sum()) for m in masks)
    for p in pruned:
        assert torch.equal(prune(graph, p), p)  # idempotent
    vals = evaluate_graph(tiny_model, graph, ds, torch.stack(masks + pruned))
    assert torch.allclose(vals[:3], vals[3:], atol=1e-6)


def test_faithfulness_curve_end_points(tiny_model, graph, ds):
    eap = eap_scores(tiny_model, graph, ds)
    curve = faithfulness_curve(tiny_model, graph, ds, eap, [0, 20, graph.n_edges], method="eap")
    assert curve.faithfulness[0] == pytest.approx(0.0, abs=1e-3)
    assert curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-3)
    assert curve.smallest_reaching(0.999) in (20, graph.n_edges)


# ------------------------------------------------------------------------ errors and drawing


def test_bad_inputs_fail_early(tiny_model, graph, ds):
    with pytest.raises(ValueError, match="layers"):
        eap_scores(tiny_model, Graph(2, 4), ds)
    bad = ds.subset(range(4))
    bad.corrupted_tokens = bad.corrupted_tokens[:, :-1]
    with pytest.raises(ValueError, match="equal token length"):
        exact_scores(tiny_model, graph, bad)
    with pytest.raises(ValueError, match="steps"):
        eap_ig_scores(tiny_model, graph, ds, steps=0)
    from tutorial_utils.circuits import attribute
    with pytest.raises(ValueError, match="unknown attribution method"):
        attribute(tiny_model, graph, ds, method="acdc")


def test_draw_circuit_matplotlib(tmp_path, graph):
    import matplotlib

    matplotlib.use("Agg")
    g = graph.copy()
    torch.manual_seed(0)
    g.scores = torch.randn(g.n_forward, g.n_backward)
    g.in_graph = greedy(g, None, 15)
    fig = draw_circuit(g, backend="matplotlib", path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert fig.axes[0].get_title().startswith("circuit: 15 edges")


def test_rank_correlation_matches_scipy_definition():
    from tutorial_utils.circuits import rank_correlation

    a = torch.tensor([3.0, 1.0, 2.0, 2.0, 5.0])
    b = torch.tensor([30.0, 10.0, 25.0, 20.0, 40.0])
    # ranks a: [4, 1, 2.5, 2.5, 5], b: [4, 1, 3, 2, 5] -> Pearson of ranks
    ra = torch.tensor([4, 1, 2.5, 2.5, 5.0]) - 3
    rb = torch.tensor([4, 1, 3, 2, 5.0]) - 3
    expected = float(ra @ rb / (ra.norm() * rb.norm()))
    assert rank_correlation(a, b) == pytest.approx(expected)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
