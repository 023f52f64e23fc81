"""The one engine (tutorial_utils.interchange), the one node table (tutorial_utils.graph) and the
one metric contract (tutorial_utils.tasks.metrics).

Independent references: hand-written hooks that replace one activation (written here with
``model.run_with_hooks`` and ``model.run_with_cache``, not with the package), and the unmodified
model's clean/corrupted runs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tutorial_utils import patching as P
from tutorial_utils.circuits import eap_ig_scores, evaluate_graph, exact_scores
from tutorial_utils.graph import Graph
from tutorial_utils.interchange import (GraphInterventions, SingleEdges, ablation_runs,
                                        resample_indices, run_stacked, run_variants)
from tutorial_utils.tasks import TaskDataset, make_task
from tutorial_utils.tasks.metrics import normalize

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


def _hand_patched(model, tokens, hook, head, value):
    """Logits of ``tokens`` with the activation at ``hook`` (head ``head`` of a per-head hook,
    or all of it) replaced by ``value``: a plain hook, nothing of the package."""
    def fn(x, hook):
        x = x.clone()
        if head is None:
            x[:] = value
        else:
            x[:, :, head] = value[:, :, head] if value.ndim == 4 else value
        return x
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook, fn)])


def _cached(model, tokens, hook):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == hook)
    return cache[hook]


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
@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero", "resample"])
def test_node_patching_equals_a_hand_written_hook(hooked_model, gt, graph, node, ablation):
    got = run_variants(hooked_model, graph, gt, patched=graph.node_mask([node]), ablation=ablation,
                       seed=5)
    spec = graph.node(node)
    head = spec.head
    if ablation == "corrupted":
        value = _cached(hooked_model, gt.corrupted_tokens, spec.out_hook)
    elif ablation == "mean":
        value = _cached(hooked_model, gt.corrupted_tokens, spec.out_hook).mean(0, keepdim=True)
    elif ablation == "zero":
        value = torch.zeros_like(_cached(hooked_model, gt.clean_tokens, spec.out_hook))
    else:  # another random clean prompt for each example, never its own
        idx = resample_indices(len(gt), len(gt), seed=5)
        assert (idx != torch.arange(len(gt))).all()
        value = _cached(hooked_model, gt.clean_tokens[idx], spec.out_hook)
    if value.shape[0] == 1:
        value = value.expand(len(gt), *value.shape[1:])
    logits = _hand_patched(hooked_model, gt.clean_tokens, spec.out_hook, head, value)
    assert abs(float(got[0]) - float(gt.metric(logits))) < ATOL


def test_patching_ablate_uses_the_same_vocabulary(hooked_model, gt):
    """patching.ablate and the graph engine agree on every ablation."""
    g = Graph.from_model(hooked_model)
    for ablation in ("corrupted", "mean", "zero", "resample"):
        a = P.ablate(hooked_model, gt.clean_tokens, ["a1.h3"], ablation,
                     corrupted_tokens=gt.corrupted_tokens,
                     reference_tokens=gt.corrupted_tokens if ablation == "mean" else None)
        b = run_variants(hooked_model, g, gt, patched=g.node_mask(["a1.h3"]), ablation=ablation)
        assert abs(float(gt.metric(a)) - float(b[0])) < ATOL, ablation
    # the same defaults: a mean over the paired corrupted prompts when no reference is given
    a = P.ablate(hooked_model, gt.clean_tokens, ["a1.h3"], "mean",
                 corrupted_tokens=gt.corrupted_tokens)
    b = run_variants(hooked_model, g, gt, patched=g.node_mask(["a1.h3"]), ablation="mean")
    assert abs(float(gt.metric(a)) - float(b[0])) < ATOL
    with pytest.raises(ValueError, match="reference_tokens or the paired"):
        P.ablate(hooked_model, gt.clean_tokens, ["a1.h3"], "mean")


def test_node_and_out_edge_masks_agree_and_stack(hooked_model, gt, graph):
    """Patching a node = removing every edge out of it; variants stacked in one forward equal
    the same variants run one by one; single-edge variants built per chunk equal dense masks."""
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
    pairs = torch.tensor([graph.edge_index(e) for e in
                          ["embed->a0.h1.v", "a0.h2->a2.h3.q", "m0->a1.h1.k", "m2->logits"]])
    dense = torch.zeros(len(pairs), graph.n_forward, graph.n_backward, dtype=torch.bool)
    dense[torch.arange(len(pairs)), pairs[:, 0], pairs[:, 1]] = True
    r = ablation_runs(gt, "corrupted")
    sparse = run_stacked(hooked_model, gt, GraphInterventions(hooked_model, graph,
                                                              SingleEdges(pairs), None,
                                                              "corrupted", r),
                         r.base, max_sequences=8)
    torch.testing.assert_close(sparse, run_variants(hooked_model, graph, gt, dense), atol=ATOL,
                               rtol=0)


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


def test_bad_engine_arguments_are_refused(hooked_model, gt, graph):
    with pytest.raises(ValueError, match="removed must be"):
        run_variants(hooked_model, graph, gt, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="ablation must be one of"):
        run_variants(hooked_model, graph, gt, graph.real_edges, ablation="median")
    with pytest.raises(ValueError, match="'corrupted'"):
        run_variants(hooked_model, graph, gt, graph.real_edges, ablation="paired")
    with pytest.raises(ValueError, match="direction"):
        run_variants(hooked_model, graph, gt, graph.real_edges, direction="sideways")
    with pytest.raises(ValueError, match="denoise"):
        run_variants(hooked_model, graph, gt, graph.real_edges, ablation="mean",
                     direction="denoise")
    with pytest.raises(ValueError, match="reference_tokens"):
        run_variants(hooked_model, graph, gt, graph.real_edges, ablation="mean",
                     reference_tokens=gt.clean_tokens[:, :3])
    with pytest.raises(ValueError, match="at least 2"):
        resample_indices(4, 1)


def test_resample_draws_other_prompts_with_a_seed():
    a, b = resample_indices(50, 50, seed=1), resample_indices(50, 50, seed=1)
    assert torch.equal(a, b) and (a != torch.arange(50)).all()
    assert not torch.equal(a, resample_indices(50, 50, seed=2))
    big = resample_indices(5, 8, seed=0)  # a reference set larger than the dataset
    assert (big != torch.arange(5)).all() and int(big.max()) < 8


def test_the_metric_sees_one_run_at_a_time(hooked_model, gt, graph):
    """The engine hands a metric one variant's [B, T, V] logits: a per-example metric and a
    mean metric give the same results as the task metric, whatever the stacking; wrong shapes,
    NaN and one-argument metrics are refused with a clear error (the contract of
    tutorial_utils.tasks.metrics)."""
    seen = []

    def per_example(logits, ds):
        seen.append(logits.shape[0])
        return ds.metric(logits, per_example=True)

    patched = torch.stack([graph.node_mask([n]) for n in ["a0.h0", "m0", "m3", "a2.h1"]])
    ref = run_variants(hooked_model, graph, gt, patched=patched)
    a = run_variants(hooked_model, graph, gt, patched=patched, metric=per_example,
                     max_sequences=len(gt) * 3)
    b = run_variants(hooked_model, graph, gt, patched=patched,
                     metric=lambda lg, ds: ds.metric(lg), batch_size=3)
    torch.testing.assert_close(a, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(b, ref, atol=1e-6, rtol=0)
    assert set(seen) == {len(gt)}  # never a stacked batch
    per = run_variants(hooked_model, graph, gt, patched=patched, metric=per_example,
                       per_example=True)
    torch.testing.assert_close(per.mean(1), ref, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="shape"):
        run_variants(hooked_model, graph, gt, patched=patched,
                     metric=lambda lg, ds: ds.metric(lg, per_example=True)[:2])
    with pytest.raises(ValueError, match="non-finite"):
        run_variants(hooked_model, graph, gt, patched=patched,
                     metric=lambda lg, ds: ds.metric(lg) * float("nan"))
    with pytest.raises(ValueError, match=r"metric\(logits, dataset\)"):
        run_variants(hooked_model, graph, gt, patched=patched, metric=lambda lg: lg.sum())
    with pytest.raises(ValueError, match="one value per"):
        run_variants(hooked_model, graph, gt, patched=patched, per_example=True,
                     metric=lambda lg, ds: ds.metric(lg))


def test_eap_ig_chunked_steps_equal_stacked_steps(hooked_model, gt, graph):
    """One running sum of gradients over chunks of IG steps = all steps in one forward."""
    one = eap_ig_scores(hooked_model, graph, gt, steps=4, max_batch=len(gt))  # a step per forward
    two = eap_ig_scores(hooked_model, graph, gt, steps=4, max_batch=2 * len(gt))
    allin = eap_ig_scores(hooked_model, graph, gt, steps=4, max_batch=4 * len(gt))
    assert float(allin.abs().max()) > 1e-4
    torch.testing.assert_close(one, allin, atol=1e-5, rtol=0)
    torch.testing.assert_close(two, allin, atol=1e-5, rtol=0)


def test_exact_scores_equal_one_removed_edge_each(hooked_model, gt, graph, runs):
    """exact_scores builds its one-hot masks per forward chunk (memory); each score is the
    metric with that one edge removed minus the clean metric."""
    edges = torch.zeros_like(graph.real_edges)
    names = ["embed->a0.h1.v", "a0.h2->a2.h3.q", "m0->a1.h1.k", "a1.h0->m1", "m2->logits"]
    for name in names:
        edges[graph.edge_index(name)] = True
    got = exact_scores(hooked_model, graph, gt, edges=edges, max_sequences=8)
    assert float(got.abs().max()) > 1e-4
    for name in names:
        one = run_variants(hooked_model, graph, gt, graph.edge_mask([name]))
        assert abs(float(got[graph.edge_index(name)]) - (float(one[0]) - runs[0])) < ATOL


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

    assert math.isnan(normalize(1.0, 0.3, 0.3 + 5e-7))
    assert math.isnan(normalized_faithfulness(1.0, 0.3, 0.3))
    same = TaskDataset.from_tokens(gt.clean_tokens, gt.clean_tokens,
                                   lambda lg, ds: gt.metric(lg, per_example=True))
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


def test_hook_names_are_written_once(hooked_model):
    """Every site's hook exists on a hooks=True bridge; patching's sites are the same table."""
    from tutorial_utils.names import SITES, hook_name

    for site, (template, _) in SITES.items():
        name = hook_name(site, 0) if "{layer}" in template else hook_name(site)
        assert name in hooked_model.hook_dict, name
        if site in P.SITES:
            assert P.SITES[site] == SITES[site]
    with pytest.raises(ValueError, match="unknown site"):
        hook_name("resid")
    with pytest.raises(ValueError, match="pass a layer"):
        hook_name("z")
    with pytest.raises(ValueError, match=">= 0"):
        hook_name("z", -1)


@pytest.mark.parametrize("site", ["hook_resid_mid", "hook_mlp_in", "hook_resid_pre"])
def test_a_replacing_hook_patches_exactly_with_and_without_gradients(hooked_model, gt, site):
    """``replace_hook`` at a stream hook (written in place: at ``hook_resid_mid`` the bridge adds
    the MLP's output to the very tensor it hooked) and at ``hook_mlp_in`` (out of place: it is
    the stream tensor itself) equals a hand-written hook on a plain forward of the patched
    block, with gradients on or off."""
    from tutorial_utils.interchange import replace_hook
    name = f"blocks.1.{site}"
    toks = gt.clean_tokens[:2]
    with torch.no_grad():
        _, cache = hooked_model.run_with_cache(gt.corrupted_tokens[:2], names_filter=[name])
    value = cache[name]
    if site == "hook_mlp_in":  # the MLP reads the corrupted input; the stream goes on unchanged
        def by_hand(x, hook):
            return value.clone()
    else:
        def by_hand(x, hook):
            x.copy_(value)
            return x
    with torch.no_grad():
        want = hooked_model.run_with_hooks(toks, fwd_hooks=[(name, by_hand)])
        got = hooked_model.run_with_hooks(toks, fwd_hooks=[(name, replace_hook(value, name))])
    torch.testing.assert_close(got, want)
    with torch.enable_grad():
        got_grad = hooked_model.run_with_hooks(toks, fwd_hooks=[(name, replace_hook(value, name))])
    torch.testing.assert_close(got_grad.detach(), want)
