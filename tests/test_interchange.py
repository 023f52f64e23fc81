"""The one engine (tutorial_utils.interchange) and the one node table (tutorial_utils.graph).

Independent references: tutorial_utils.patching.ablate (masked-set hooks at the node's output
hook, one forward per run) and the unmodified model's clean/corrupted runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tutorial_utils import patching as P
from tutorial_utils.circuits import eap_ig_scores, evaluate_graph
from tutorial_utils.graph import Graph
from tutorial_utils.interchange import interchange_logits, run_variants, source_activations
from tutorial_utils.metrics import normalize
from tutorial_utils.tasks import make_task

ATOL = 2e-5


@pytest.fixture(scope="module")
def gt(hooked_model):
    return make_task("greater_than", hooked_model, n=4, seed=3)


@pytest.fixture(scope="module")
def graph(hooked_model):
    return Graph.from_model(hooked_model)


@pytest.fixture(scope="module")
def runs(hooked_model, gt):
    with torch.no_grad():
        return (float(gt.metric(hooked_model(gt.clean_tokens))),
                float(gt.metric(hooked_model(gt.corrupted_tokens))))


def test_every_node_carries_its_hooks_and_patching_agrees(graph, hooked_model):
    """The node table is the only hook table: patching's node components use the same hooks,
    and every hook exists on a hooks=True model."""
    for node in graph.nodes[:-1]:
        assert P.Component.parse(node.name).hook_name == node.out_hook
    assert graph.node("a1.h2").in_hooks == {c: f"blocks.1.hook_{c}_input" for c in "qkv"}
    assert graph.node("logits").in_hooks["logits"].endswith("hook_resid_post")
    graph.check_model(hooked_model)
    hooks = graph.receiver_hooks()
    assert sum(h.index.stop - h.index.start for h in hooks) == graph.n_backward
    assert sum(h.index.stop - h.index.start for h in graph.sender_hooks()) == graph.n_forward


@pytest.mark.parametrize("node", ["embed", "a0.h2", "a3.h1", "m1"])
@pytest.mark.parametrize("source,method", [("corrupted", "resample"), ("mean", "mean"),
                                           ("zero", "zero")])
def test_node_patching_equals_independent_ablation(hooked_model, gt, graph, node, source, method):
    got = run_variants(hooked_model, graph, gt, patched=graph.node_mask([node]), source=source)
    logits = P.ablate(hooked_model, gt.clean_tokens, [node], method,
                      corrupted_tokens=gt.corrupted_tokens, reference_tokens=gt.corrupted_tokens)
    assert abs(float(got[0]) - float(gt.metric(logits))) < ATOL


def test_node_and_out_edge_masks_agree_and_stack(hooked_model, gt, graph):
    """Patching a node = removing every edge out of it; variants stacked in one forward equal
    the same variants run one by one."""
    nodes = ["a0.h1", "m2", "a2.h3"]
    patched = torch.stack([graph.node_mask([n]) for n in nodes])
    removed = torch.zeros(len(nodes), graph.n_forward, graph.n_backward, dtype=torch.bool)
    for i, n in enumerate(nodes):
        removed[i, graph.fwd_index(n)] = graph.real_edges[graph.fwd_index(n)]
    a = run_variants(hooked_model, graph, gt, patched=patched)
    b = run_variants(hooked_model, graph, gt, removed)
    c = torch.cat([run_variants(hooked_model, graph, gt, removed[i:i + 1], max_sequences=4)
                   for i in range(len(nodes))])
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    torch.testing.assert_close(b, c, atol=ATOL, rtol=0)


def test_end_points_noising_and_denoising(hooked_model, gt, graph, runs):
    clean, corrupted = runs
    assert abs(clean - corrupted) > 1e-3
    every_node = graph.node_mask(graph.senders)
    none = torch.zeros_like(every_node)
    noise = run_variants(hooked_model, graph, gt, patched=torch.stack([every_node, none]))
    denoise = run_variants(hooked_model, graph, gt, patched=torch.stack([every_node, none]),
                           direction="denoise")
    assert abs(float(noise[0]) - corrupted) < ATOL and abs(float(noise[1]) - clean) < ATOL
    assert abs(float(denoise[0]) - clean) < ATOL and abs(float(denoise[1]) - corrupted) < ATOL
    # batching over examples gives the same means
    split = run_variants(hooked_model, graph, gt, graph.real_edges, batch_size=3)
    assert abs(float(split[0]) - corrupted) < ATOL


def test_interchange_logits_shapes_and_errors(hooked_model, gt, graph):
    src = source_activations(hooked_model, graph, "zero", gt.corrupted_tokens)
    assert src.shape == (1, gt.seq_len, graph.n_forward, hooked_model.cfg.d_model)
    logits = interchange_logits(hooked_model, graph, gt.clean_tokens, src,
                                patched=torch.zeros(3, graph.n_forward, dtype=torch.bool))
    assert logits.shape[0] == 3 * len(gt)
    with pytest.raises(ValueError, match="removed must be"):
        interchange_logits(hooked_model, graph, gt.clean_tokens, src, removed=torch.ones(2, 3))
    with pytest.raises(ValueError, match="source must be one of"):
        run_variants(hooked_model, graph, gt, graph.real_edges, source="median")
    with pytest.raises(ValueError, match="direction"):
        run_variants(hooked_model, graph, gt, graph.real_edges, direction="sideways")


def test_eap_ig_chunked_steps_equal_stacked_steps(hooked_model, gt, graph):
    """One running sum of gradients over chunks of IG steps = all steps in one forward."""
    one = eap_ig_scores(hooked_model, graph, gt, steps=4, max_batch=len(gt))  # a step per forward
    two = eap_ig_scores(hooked_model, graph, gt, steps=4, max_batch=2 * len(gt))
    allin = eap_ig_scores(hooked_model, graph, gt, steps=4, max_batch=4 * len(gt))
    assert float(allin.abs().max()) > 1e-4
    torch.testing.assert_close(one, allin, atol=1e-5, rtol=0)
    torch.testing.assert_close(two, allin, atol=1e-5, rtol=0)


def test_legacy_json_names_are_translated(tmp_path, graph):
    data = {"format": "tutorial_utils.circuits.Graph/1", "n_layers": graph.n_layers,
            "n_heads": graph.n_heads, "meta": {},
            "edges": {"input->a0.h1<v>": 0.5, "a0.h2->a2.h3<q>": -1.0, "m1->logits": 0.25}}
    (tmp_path / "old.json").write_text(json.dumps(data))
    g = Graph.from_json(tmp_path / "old.json")
    assert sorted(g.edge_names()) == ["a0.h2->a2.h3.q", "embed->a0.h1.v", "m1->logits"]
    assert g.score("embed->a0.h1.v") == 0.5
    g.to_json(tmp_path / "new.json")
    assert Graph.from_json(tmp_path / "new.json").edge_names() == g.edge_names()


def test_one_degenerate_policy_everywhere(hooked_model, gt, graph):
    """clean == corrupted: every normalisation in the package gives NaN (never a division by
    ~0, never a different rule)."""
    from tutorial_utils.faithfulness import circuit_faithfulness, normalized_faithfulness
    from tutorial_utils.path_patching import edge_patching_sweep
    from tutorial_utils.tasks import TaskDataset

    assert math.isnan(normalize(1.0, 0.3, 0.3 + 5e-7))
    assert math.isnan(normalized_faithfulness(1.0, 0.3, 0.3))
    same = TaskDataset.from_tokens(gt.clean_tokens, gt.clean_tokens,
                                   lambda lg, ds: gt.metric(lg).reshape(-1))
    res = P.patching_sweep(hooked_model, same, "z", ("layer", "head"), progress=False)
    assert torch.isnan(res.normalized()).all()
    sweep = edge_patching_sweep(hooked_model, same, [("a0.h0", "logits")])
    assert torch.isnan(sweep.normalized_effect()).all()
    f = circuit_faithfulness(hooked_model, same, ["a0.h0"])
    assert math.isnan(f.faithfulness)
    with pytest.raises(ValueError, match="undefined"):
        normalize(1.0, 0.3, 0.3, on_degenerate="raise")
    full = evaluate_graph(hooked_model, graph, same, graph.real_edges)
    assert full.shape == (1,)


def test_exact_scores_built_in_blocks_equal_one_block(hooked_model, gt, graph, monkeypatch):
    """exact_scores builds its one-hot masks a block of edges at a time (memory); the block
    size changes nothing."""
    import tutorial_utils.circuits.edge_attribution as E
    from tutorial_utils.circuits import exact_scores

    edges = torch.zeros_like(graph.real_edges)
    for name in ["embed->a0.h1.v", "a0.h2->a2.h3.q", "m0->a1.h1.k", "a1.h0->m1", "m2->logits"]:
        edges[graph.edge_index(name)] = True
    one = exact_scores(hooked_model, graph, gt, edges=edges)
    monkeypatch.setattr(E, "EXACT_BLOCK", 2)
    blocks = exact_scores(hooked_model, graph, gt, edges=edges)
    assert float(one.abs().max()) > 1e-4
    torch.testing.assert_close(one, blocks, atol=1e-6, rtol=0)


def test_hook_names_are_written_once(hooked_model):
    """Every site's hook exists on a hooks=True bridge; patching's sites are the same table."""
    from tutorial_utils.hook_names import SITES, hook_name

    for site, (template, _) in SITES.items():
        name = hook_name(site, 0) if "{layer}" in template else hook_name(site)
        assert name in hooked_model.hook_dict, name
        if site in P.SITES:
            assert P.SITES[site] == SITES[site]
    with pytest.raises(ValueError, match="unknown site"):
        hook_name("resid")
    with pytest.raises(ValueError, match="pass a layer"):
        hook_name("z")
