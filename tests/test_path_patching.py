"""Invariants of edge / path patching (tutorial_utils.path_patching).

The independent references are hand-written hooks that add a fixed difference of cached
activations to one receiver input, and node patching (tutorial_utils.patching.ablate)."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import patching as P
from tutorial_utils import path_patching as PP
from tutorial_utils.tasks import make_task

ATOL = 2e-5


@pytest.fixture(scope="module")
def gt(hooked_model):
    return make_task("greater_than", hooked_model, n=4, seed=1)


@pytest.fixture(scope="module")
def graph(hooked_model):
    return PP.Graph.from_model(hooked_model)


@pytest.fixture(scope="module")
def metrics(hooked_model, gt):
    with torch.no_grad():
        return (float(gt.metric(hooked_model(gt.clean_tokens))),
                float(gt.metric(hooked_model(gt.corrupted_tokens))))


def test_graph_counts_every_upstream_edge(graph, hooked_model):
    L, H = hooked_model.cfg.n_layers, hooked_model.cfg.n_heads
    # receivers of layer l read embed + l*(H+1) senders (q/k/v) or embed + l*(H+1) + H (mlp)
    expected = sum(3 * H * (1 + l * (H + 1)) + (1 + l * (H + 1) + H) for l in range(L))
    expected += 1 + L * (H + 1)  # logits
    assert len(graph.edges) == expected
    assert graph.is_edge("a0.h1", "m0") and not graph.is_edge("m0", "a0.h1.q")
    assert not graph.is_edge("a1.h0", "a1.h2.k")


@pytest.mark.parametrize("node", ["embed", "a0.h2", "m1", "a2.h0"])
@pytest.mark.parametrize("source", ["corrupted", "mean", "zero"])
def test_all_edges_out_of_a_node_equal_patching_the_node(hooked_model, gt, graph, node, source):
    out_edges = [e for e in graph.edges if e[0] == node]
    got = PP.edge_patching(hooked_model, gt, [out_edges], ablation=source,
                           reference_tokens=gt.corrupted_tokens if source == "mean" else None)
    logits = P.ablate(hooked_model, gt.clean_tokens, [node], source,
                      corrupted_tokens=gt.corrupted_tokens, reference_tokens=gt.corrupted_tokens)
    assert abs(float(got[0]) - float(gt.metric(logits))) < ATOL


def test_all_edges_give_the_corrupted_run_and_none_the_clean_run(hooked_model, gt, graph, metrics):
    m_clean, m_corr = metrics
    got = PP.edge_patching(hooked_model, gt, [graph.edges, []])
    assert abs(float(got[0]) - m_corr) < ATOL
    assert abs(float(got[1]) - m_clean) < ATOL
    assert abs(m_clean - m_corr) > 1e-3  # else the test is vacuous


def _hand_edge(model, gt, sender_layer, sender_head, hook_name, recv_head):
    """Independent single-edge patch: add (corrupted - clean) head output to one receiver."""
    _, clean = P.get_activations(model, gt.clean_tokens, [f"blocks.{sender_layer}.attn.hook_result"])
    _, corr = P.get_activations(model, gt.corrupted_tokens, [f"blocks.{sender_layer}.attn.hook_result"])
    name = f"blocks.{sender_layer}.attn.hook_result"
    delta = corr[name][:, :, sender_head] - clean[name][:, :, sender_head]

    def hook(act, hook=None):
        act = act.clone()
        if recv_head is None:
            return act + delta
        act[:, :, recv_head] += delta
        return act

    with torch.no_grad():
        return float(gt.metric(model.run_with_hooks(gt.clean_tokens, fwd_hooks=[(hook_name, hook)])))


@pytest.mark.parametrize("edge,hook,recv_head", [
    (("a0.h1", "a2.h3.v"), "blocks.2.hook_v_input", 3),
    (("a1.h0", "a3.h2.q"), "blocks.3.hook_q_input", 2),
    (("a0.h3", "a1.h1.k"), "blocks.1.hook_k_input", 1),
    (("a1.h2", "m1"), "blocks.1.hook_mlp_in", None),
    (("a2.h1", "logits"), "blocks.3.hook_resid_post", None),
])
def test_single_edge_equals_a_hand_written_hook(hooked_model, gt, edge, hook, recv_head):
    layer, head = int(edge[0][1]), int(edge[0][-1])
    ref = _hand_edge(hooked_model, gt, layer, head, hook, recv_head)
    scores = PP.edge_patching_sweep(hooked_model, gt, [edge])
    assert abs(float(scores.values[0]) - ref) < ATOL


def test_path_patching_to_logits_is_the_direct_effect(hooked_model, gt, graph):
    senders = ["a0.h0", "a3.h1", "m2"]
    res = PP.path_patching(hooked_model, gt, senders, ["logits"])
    single = PP.edge_patching_sweep(hooked_model, gt, [(s, "logits") for s in senders])
    torch.testing.assert_close(res.values, single.values, atol=ATOL, rtol=0)
    # a sender through two receivers differs from the sum over... but equals the variant engine
    two = PP.path_patching(hooked_model, gt, ["a0.h2"], ["a2.h1.v", "m3"])
    eng = PP.edge_patching(hooked_model, gt, [[("a0.h2", "a2.h1.v"), ("a0.h2", "m3")]])
    assert abs(float(two.values[0]) - float(eng[0])) < ATOL
    assert two.edges == [("a0.h2", "a2.h1.v+m3")]


def test_denoising_all_edges_gives_the_clean_run(hooked_model, gt, graph, metrics):
    got = PP.edge_patching(hooked_model, gt, [graph.edges], direction="denoise")
    assert abs(float(got[0]) - metrics[0]) < ATOL


def test_iterative_path_patching_keeps_edges_above_threshold(hooked_model, gt):
    kept, steps = PP.iterative_path_patching(hooked_model, gt, threshold=0.2, max_nodes=2)
    assert steps[0].receiver == "logits"
    eff = steps[0].scores.normalized_effect()
    n_above = int((eff.abs() >= 0.2).sum())
    assert len(steps[0].kept) == n_above
    assert all(abs(x) >= 0.2 for _, x in kept)


def test_bad_edges_get_clear_errors(hooked_model, gt):
    with pytest.raises(ValueError, match="not an edge"):
        PP.edge_patching(hooked_model, gt, [[("m2", "a1.h0.q")]])
    with pytest.raises(ValueError, match="unknown sender"):
        PP.edge_patching(hooked_model, gt, [[("a9.h0", "logits")]])
    with pytest.raises(ValueError, match="unknown receiver"):
        PP.edge_patching(hooked_model, gt, [[("a0.h0", "a2.h1.z")]])
    with pytest.raises(ValueError, match="ablation must be"):
        PP.edge_patching(hooked_model, gt, [[("a0.h0", "logits")]], ablation="median")


def test_variant_blocks_change_nothing(hooked_model, gt, graph, monkeypatch):
    """edge_patching builds its masks a block of variants at a time (memory)."""
    edges = [("a0.h1", "a2.h3.v"), ("m1", "logits"), ("embed", "a1.h0.k"), ("a2.h1", "m3")]
    one = PP.edge_patching(hooked_model, gt, [[e] for e in edges])
    monkeypatch.setattr(PP, "VARIANT_BLOCK", 3)
    blocks = PP.edge_patching(hooked_model, gt, [[e] for e in edges])
    torch.testing.assert_close(one, blocks, atol=ATOL, rtol=0)
