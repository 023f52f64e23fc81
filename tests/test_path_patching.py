"""Invariants of edge / path patching (tutorial_utils.path_patching).

The independent references are hand-written hooks that add a fixed difference of cached
activations to one receiver input, and node patching (tutorial_utils.patching.ablate)."""

from __future__ import annotations

import functools

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


# --- Wang et al.'s path patching ------------------------------------------------------------
def _wang_by_hand(model, ds, sender, receiver_hook, receiver_head, direction="noise"):
    """Wang et al.'s two runs written with plain hooks: run 1 on the base prompts (clean; the
    corrupted ones with ``direction="denoise"``) with the sender's output (a head's
    ``hook_result`` slice or an MLP's ``hook_mlp_out``) from the other run and every other head's
    output frozen at its base value (MLPs recompute), recording the receiver's input; run 2 on the
    base prompts with that input (one head's slice, or all of it for ``receiver_head=None``)
    patched in, returned as a new tensor. Returns the task metric of run 2."""
    L = model.cfg.n_layers
    res = [f"blocks.{l}.attn.hook_result" for l in range(L)]
    base_tok, src_tok = ((ds.clean_tokens, ds.corrupted_tokens) if direction == "noise"
                         else (ds.corrupted_tokens, ds.clean_tokens))
    mlp_sender = sender.startswith("m")
    s_hook = (f"blocks.{int(sender[1:])}.hook_mlp_out" if mlp_sender
              else res[int(sender[1:].split(".")[0])])
    wanted = set(res) | {s_hook}
    with torch.no_grad():
        _, base = model.run_with_cache(base_tok, names_filter=lambda n: n in wanted)
        _, src = model.run_with_cache(src_tok, names_filter=lambda n: n in wanted)
    rec = {}

    def freeze_heads(x, hook, name):
        new = base[name].clone()
        if name == s_hook:
            h = int(sender.split(".h")[1])
            new[:, :, h] = src[name][:, :, h]
        return new

    def mlp_from_source(x, hook):
        return src[s_hook].clone()

    def record(x, hook):
        rec["x"] = x.detach().clone()
        return x

    hooks = [(n, functools.partial(freeze_heads, name=n)) for n in res]
    if mlp_sender:
        hooks.append((s_hook, mlp_from_source))
    hooks.append((receiver_hook, record))

    def patch(x, hook):
        new = x.clone()
        if receiver_head is None:
            new[:] = rec["x"]
        else:
            new[:, :, receiver_head] = rec["x"][:, :, receiver_head]
        return new
    with torch.no_grad():
        model.run_with_hooks(base_tok, fwd_hooks=hooks)
        logits = model.run_with_hooks(base_tok, fwd_hooks=[(receiver_hook, patch)])
    return float(ds.metric(logits))


@pytest.mark.parametrize("senders,receiver,hook,head,direction", [
    (["a0.h1", "a1.h2"], "a2.h3.q", "blocks.2.hook_q_input", 3, "noise"),
    # an MLP receiver: on the bridge hook_mlp_in is the residual stream itself (an in-place
    # patch there leaked down the skip connection: a0.h0 -> m3 read -0.195 instead of 0.239)
    (["a0.h0", "a0.h1", "a1.h2", "a2.h3"], "m3", "blocks.3.hook_mlp_in", None, "noise"),
    (["a0.h1", "m1"], "a2.h3.v", "blocks.2.hook_v_input", 3, "noise"),
    (["a0.h2", "m0", "a1.h0"], "a2.h1.k", "blocks.2.hook_k_input", 1, "noise"),
    (["m1", "a1.h3"], "m2", "blocks.2.hook_mlp_in", None, "denoise"),
    (["a0.h1", "m1"], "a2.h3.v", "blocks.2.hook_v_input", 3, "denoise"),
])
def test_wang_path_patching_equals_its_two_runs_written_by_hand(hooked_model, gt, senders,
                                                                 receiver, hook, head, direction):
    res = PP.wang_path_patching(hooked_model, gt, senders, [receiver], direction=direction)
    assert [s for s, _ in res.edges] == senders
    for (sender, _), value in zip(res.edges, res.values):
        want = _wang_by_hand(hooked_model, gt, sender, hook, head, direction)
        assert abs(float(value) - want) < ATOL, (sender, receiver, direction)


def test_wang_and_edge_path_patching_agree_without_mlps():
    """On an attention-only model every path from a sender to a receiver is the direct one or
    runs through other heads, which Wang et al. freeze: the two definitions agree."""
    from tutorial_utils.models import load_model
    from tutorial_utils.paths import DATA_DIR

    model = load_model(str(DATA_DIR / "models" / "tiny-attn-tasks"), device="cpu", hooks=True,
                       verbose=False)
    ds = make_task("ioi", model, n=6, seed=0)
    senders = ["a0.h0", "a1.h5", "a1.h1", "a2.h3"]
    for receivers in (["a3.h6.q"], ["logits"], ["a2.h4.k", "a3.h6.v"]):
        wang = PP.wang_path_patching(model, ds, senders, receivers)
        edge = PP.path_patching(model, ds, senders, receivers)
        assert [e for e, _ in wang.edges] == [e for e, _ in edge.edges]
        # float32 rounding of two different sums on logit differences of ~8: rtol 1e-4
        torch.testing.assert_close(wang.values, edge.values, atol=ATOL, rtol=1e-4)


def test_wang_path_patching_counts_paths_through_mlps(hooked_model, gt):
    """With MLPs the two differ: a layer-0 head's effect on the logits through the MLPs is in
    Wang et al.'s value and not in the direct edge's."""
    wang = PP.wang_path_patching(hooked_model, gt, ["a0.h0"], ["logits"])
    direct = PP.path_patching(hooked_model, gt, ["a0.h0"], ["logits"])
    assert abs(float(wang.normalized_effect()[0]) - float(direct.normalized_effect()[0])) > 0.05
