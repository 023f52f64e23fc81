"""Notebook 03 (low-level circuits): the exercise checks accept correct answers, reject the
common mistakes with a message that names them, and the SVA check rejects a circuit below its
faithfulness target."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import patching as P
from tutorial_utils.course.checks import nb03
from tutorial_utils.faithfulness import all_nodes, circuit_faithfulness
from tutorial_utils.graph import Graph
from tutorial_utils.tasks import make_greater_than, make_sva


pytestmark = pytest.mark.usefixtures("lenient_checks")


@pytest.fixture(scope="module")
def ds(hooked_model):
    return make_greater_than(hooked_model, n=8, seed=2)


# -- correct solutions, written as a student would (the notebook's solutions) ----------------

def patch_heads_of_layer(model, ds, layer, denoise=False):
    name = f"blocks.{layer}.attn.hook_z"
    base, source = (ds.corrupted_tokens, ds.clean_tokens) if denoise else (ds.clean_tokens, ds.corrupted_tokens)
    _, src = P.get_activations(model, source, [name])
    out = []
    for h in range(model.cfg.n_heads):
        def hook(z, hook, h=h):
            z = z.clone()
            z[:, :, h] = src[name][:, :, h]
            return z
        out.append(ds.metric(model.run_with_hooks(base, fwd_hooks=[(name, hook)])))
    return torch.stack(out)


def patch_edge(model, ds, sender, receiver, sign=1.0):
    graph = Graph.from_model(model)
    s = graph.node(sender)
    outs = []
    for tokens in (ds.corrupted_tokens, ds.clean_tokens):
        _, a = P.get_activations(model, tokens, [s.out_hook])
        outs.append(a[s.out_hook] if s.head is None else a[s.out_hook][:, :, s.head])
    delta = sign * (outs[0] - outs[1])
    head_name, which = receiver.rsplit(".", 1)
    r = graph.node(head_name)

    def hook(x, hook):
        x = x.clone()
        x[:, :, r.head] += delta
        return x
    return float(ds.metric(model.run_with_hooks(ds.clean_tokens, fwd_hooks=[(r.in_hooks[which], hook)])))


def node_faithfulness(model, ds, nodes, invert=False):
    graph = Graph.from_model(model)
    keep = set(nodes)
    outside = [n for n in all_nodes(model) if (n in keep) == invert]
    names = sorted({graph.node(n).out_hook for n in outside})
    _, corr = P.get_activations(model, ds.corrupted_tokens, names)
    hooks = []
    for n in outside:
        node = graph.node(n)

        def hook(x, hook, name=node.out_hook, head=node.head):
            x = x.clone()
            if head is None:
                x[:] = corr[name]
            else:
                x[:, :, head] = corr[name][:, :, head]
            return x
        hooks.append((node.out_hook, hook))
    m_clean = float(ds.metric(model(ds.clean_tokens)))
    m_corr = float(ds.metric(model(ds.corrupted_tokens)))
    m = float(ds.metric(model.run_with_hooks(ds.clean_tokens, fwd_hooks=hooks)))
    return (m - m_corr) / (m_clean - m_corr)


# -- tensor exercises ------------------------------------------------------------------------

def test_ablate_head_check():
    assert nb03.check_ablate_head.judge(nb03.reference_ablate_head).passed

    def inplace(z, head, method, ref=None):
        z[:, :, head] = 0
        return z
    res = nb03.check_ablate_head.judge(inplace)
    assert not res.passed and "in place" in res.message

    def mean_over_pos(z, head, method, ref=None):
        if method == "mean":
            out = z.clone()
            out[:, :, head] = ref[:, :, head].mean((0, 1))
            return out
        return nb03.reference_ablate_head(z, head, method, ref)
    res = nb03.check_ablate_head.judge(mean_over_pos)
    assert not res.passed and "positions" in res.message

    def corrupted_is_mean(z, head, method, ref=None):
        return nb03.reference_ablate_head(z, head, "mean" if method == "corrupted" else method, ref)
    res = nb03.check_ablate_head.judge(corrupted_is_mean)
    assert not res.passed and "own" in res.message


def test_upweight_score_check():
    assert nb03.check_upweight_score.judge(nb03.reference_upweight_score).passed

    def _weights(W, yy):
        above = (torch.arange(W.shape[1])[None] > yy[:, None]).float()
        return above / above.sum(1, keepdim=True) - (1 - above) / (1 - above).sum(1, keepdim=True)

    def no_centring(c, s, W, yy):
        return (((c / s) @ W) * _weights(W, yy)).sum(-1)
    res = nb03.check_upweight_score.judge(no_centring)
    assert not res.passed and "mean of c" in res.message


# -- model exercises -------------------------------------------------------------------------

def test_head_sweep_check(hooked_model, ds):
    assert nb03.check_head_sweep.judge(patch_heads_of_layer, hooked_model, ds, layer=0).passed
    res = nb03.check_head_sweep.judge(lambda m, d, l: patch_heads_of_layer(m, d, l, denoise=True),
                                hooked_model, ds, layer=0)
    assert not res.passed and "denoising" in res.message


def test_patch_edge_check(hooked_model, ds):
    edges = [("embed", "a0.h0.v"), ("a0.h1", "a1.h2.k"), ("m0", "a1.h0.q")]
    assert nb03.check_patch_edge.judge(patch_edge, hooked_model, ds, edges).passed
    res = nb03.check_patch_edge.judge(lambda *a: patch_edge(*a, sign=-1.0), hooked_model, ds, edges)
    assert not res.passed and "sign" in res.message


def test_patch_edge_check_rejects_patching_every_head(hooked_model, ds):
    """Adding the change to every head of the layer can pass on edges where the other heads do
    not matter (the notebook's own edges: within 3e-3); the sibling-head edge catches it."""
    def every_head(model, ds, sender, receiver):
        return nb03._edge_by_hand(model, ds, sender, receiver, all_heads=True)

    edges = [("embed", "a0.h0.v"), ("embed", "a0.h0.q"), ("a0.h3", "a1.h0.k")]
    res = nb03.check_patch_edge.judge(every_head, hooked_model, ds, edges)
    assert not res.passed and "every head" in res.message
    res = nb03.check_patch_edge.judge(patch_edge, hooked_model, ds, edges)
    assert res.passed and "sibling" in res.message, res.message


def test_node_faithfulness_check(hooked_model, ds):
    circuit = ["embed", "a0.h0", "m0", "m3"]
    res = nb03.check_node_faithfulness.judge(node_faithfulness, hooked_model, ds, circuit)
    assert res.passed, res.message
    res = nb03.check_node_faithfulness.judge(lambda m, d, n: node_faithfulness(m, d, n, invert=True),
                                       hooked_model, ds, circuit)
    assert not res.passed and "score 1" in res.message
    res = nb03.check_node_faithfulness.judge(
        lambda m, d, n: node_faithfulness(m, d, [x for x in n if x != "embed"])
        if len(n) < len(all_nodes(m)) else 1.0, hooked_model, ds, circuit)
    assert not res.passed
    # a plausible wrong value: the message names the ablation the library used
    res = nb03.check_node_faithfulness.judge(
        lambda m, d, n: 0.0 if not n else 1.0 if len(n) == len(all_nodes(m)) else 0.123,
        hooked_model, ds, circuit)
    assert not res.passed and "(corrupted ablation)" in res.message, res.message


def test_sva_check_rejects_a_circuit_below_its_target(hooked_model):
    sva = make_sva(hooked_model, n=8, seed=0)
    small = ["embed", "m0"]
    f_small = circuit_faithfulness(hooked_model, sva, small).faithfulness
    assert f_small < 0.8
    res = nb03.check_sva_faithfulness.judge(hooked_model, sva, small, f_small, target=0.8)
    assert not res.passed and "short of the 0.8 target" in res.message
    assert f"{0.8 - f_small:.3f}" in res.message
    reference, f_ref = nb03.solutions.sva_circuit(hooked_model, sva)
    assert len(reference) <= nb03.SVA_MAX_NODES
    res = nb03.check_sva_faithfulness.judge(hooked_model, sva, reference, f_ref, target=0.8)
    assert res.passed, res.message
    res = nb03.check_sva_faithfulness.judge(hooked_model, sva, reference, 0.5, target=0.8)
    assert not res.passed and "library measures" in res.message
    assert not nb03.check_sva_faithfulness.judge(hooked_model, sva, [], 0.0).passed


def test_sva_check_rejects_the_whole_model_and_oversized_circuits(hooked_model):
    """"As few nodes as you can": every node scores 1.0 trivially and must fail, as must any
    circuit above the stated size, even when its faithfulness is reported exactly."""
    sva = make_sva(hooked_model, n=8, seed=0)
    every = all_nodes(hooked_model)
    res = nb03.check_sva_faithfulness.judge(hooked_model, sva, every, 1.0, target=0.8)
    assert not res.passed and "whole model" in res.message and "at most 8" in res.message
    nine = every[:nb03.SVA_MAX_NODES + 1]
    f9 = circuit_faithfulness(hooked_model, sva, nine).faithfulness
    res = nb03.check_sva_faithfulness.judge(hooked_model, sva, nine, f9, target=0.0)
    assert not res.passed and "9 nodes" in res.message


@pytest.mark.parametrize("circuit, faithfulness, words", [
    (["embed", "m0"], None, "is None"),
    (["embed", "m0"], "0.9", "a str"),
    (["embed", "m0"], float("nan"), "NaN"),
    ("embed m0", 0.5, "list of node names"),
    (None, 0.5, "list of node names"),
    (["embed", "a9.h9"], 0.5, "not node names"),
])
def test_sva_check_judges_unusable_answers(hooked_model, circuit, faithfulness, words):
    sva = make_sva(hooked_model, n=8, seed=0)
    res = nb03.check_sva_faithfulness.judge(hooked_model, sva, circuit, faithfulness)
    assert not res.passed and words in res.message, res.message
