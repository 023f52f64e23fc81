"""Attribution graphs: completeness, one edge against an independent computation from the raw
Hugging Face weights under frozen attention and normalisation, pruning by influence, and
interventions compared with the graph's predictions."""

from __future__ import annotations

import pytest
import torch
import transformers

from tutorial_utils.errors import TutorialError
from tutorial_utils.features.attribution import (AttributionGraph, _attn_transpose, _ov,
                                                 build_graph, completeness_residual)
from tutorial_utils.features.dictionary import DictionaryConfig, SparseDictionary, load_dictionary
from tutorial_utils.features.interventions import (check_interventions, graph_prediction,
                                                   model_deltas)
from tutorial_utils.features.pruning import influence, normalized_adjacency, prune_graph
from tutorial_utils.features.replacement import ReplacementModel
from tutorial_utils.features.unfolded import UnfoldedGPT2
from tutorial_utils.paths import DATA_DIR
from tutorial_utils.tasks import make_task

MODEL_DIR = DATA_DIR / "models" / "tiny-gpt2-tasks"
DICT_DIR = DATA_DIR / "dictionaries"


@pytest.fixture(scope="module")
def lm():
    return UnfoldedGPT2.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def hf():
    return transformers.GPT2LMHeadModel.from_pretrained(str(MODEL_DIR),
                                                       attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def random_rm(lm):
    """Random TopK transcoders with random biases: the graph's algebra does not depend on
    training, and these make every kind of edge nonzero."""
    tcs = {}
    for l in range(lm.w.n_layers):
        d = SparseDictionary(DictionaryConfig("transcoder", 128, 128, 64, "topk", k=6, layer=l,
                                              site_in="ln2_out", site_out="mlp_out"), seed=l)
        with torch.no_grad():
            g = torch.Generator().manual_seed(100 + l)
            d.b_dec.normal_(generator=g)
            d.b_enc.normal_(generator=g)
        tcs[l] = d
    return ReplacementModel(lm, tcs)


@pytest.fixture(scope="module")
def shipped_rm(lm):
    return ReplacementModel(lm, {l: load_dictionary(DICT_DIR / f"transcoder_m{l}")
                                 for l in range(lm.w.n_layers)})


@pytest.fixture(scope="module")
def gt_prompt(lm):
    ds = make_task("greater_than", lm.tokenizer, n=1, frames_split="heldout", seed=5)
    return ds.clean_tokens[0, : int(ds.answer_pos[0]) + 1]


@pytest.fixture(scope="module")
def sva_prompt(lm):
    ds = make_task("sva", lm.tokenizer, n=1, frames_split="heldout", seed=5)
    return ds.clean_tokens[0, : int(ds.answer_pos[0]) + 1]


@pytest.fixture(scope="module")
def random_graph(random_rm, gt_prompt):
    return build_graph(random_rm, gt_prompt)


# --- completeness -----------------------------------------------------------------------------
def _check_complete(graph: AttributionGraph) -> None:
    res = completeness_residual(graph)
    scale = float(graph.adjacency.abs().sum(1).max())
    assert res.abs().max() < 1e-4 * scale, float(res.abs().max())
    # the check can fail: drop one edge and the residual appears
    broken = graph.adjacency.clone()
    t = int(graph.adjacency.abs().sum(1).argmax())
    s = int(graph.adjacency[t].abs().argmax())
    broken[t, s] = 0.0
    g2 = AttributionGraph(**{**graph.__dict__, "adjacency": broken})
    assert completeness_residual(g2).abs().max() > 100 * res.abs().max()


def test_graph_is_complete_random_transcoders(random_graph):
    _check_complete(random_graph)


def test_graph_is_complete_shipped_transcoders(shipped_rm, gt_prompt, sva_prompt):
    for prompt in (gt_prompt, sva_prompt):
        _check_complete(build_graph(shipped_rm, prompt))


def test_frozen_transpose_is_the_adjoint_of_the_frozen_attention(random_rm, random_graph):
    """<G, M x> = <M^T G, x> for the frozen attention map M of layer 1 (computed forward with
    the unfolded model's frozen run: the attention output's dependence on the residual)."""
    lm, fz = random_rm.lm, random_graph.frozen
    T, d = random_graph.n_tokens, lm.w.d_model
    g = torch.Generator().manual_seed(0)
    x, G = torch.randn(1, T, d, generator=g), torch.randn(1, T, d, generator=g)
    w = lm.w
    c = x - x.mean(-1, keepdim=True)
    h = c / fz.ln1_sigma[1] * w.ln1_w[1]
    v = torch.einsum("btd,hde->bthe", h, w.W_V[1])
    Mx = torch.einsum("bqhe,hed->bqd", torch.einsum("bhqk,bkhe->bqhe", fz.patterns[1], v), w.W_O[1])
    MtG = _attn_transpose(G, fz.patterns[1, 0], fz.ln1_sigma[1, 0], _ov(random_rm, 1))
    assert float((G * Mx).sum()) == pytest.approx(float((MtG * x).sum()), rel=1e-4)


# --- one edge, independently, from the raw Hugging Face weights ----------------------------------
def _hf_frozen_target(hf, tokens, target, mlp_const, embed_scale):
    """A frozen forward written from the Hugging Face modules: attention patterns and LayerNorm
    denominators from the HF model's own clean run, every MLP output replaced by the constant
    ``mlp_const[l]``. Returns the target's input: ``("feature", layer, pos, w_enc, b_enc)`` ->
    ``w_enc . ln_2(x_mid)[pos] + b_enc``; ``("logit", v)`` -> demeaned logit of token v at the
    last position. ``embed_scale[p]`` scales the token embedding at position p."""
    tr = hf.transformer
    with torch.no_grad():
        ln_in, pats = {}, []
        hooks = [m.register_forward_pre_hook(lambda mod, a, key=key: ln_in.__setitem__(key, a[0]))
                 for key, m in [(f"ln1.{l}", b.ln_1) for l, b in enumerate(tr.h)]
                 + [(f"ln2.{l}", b.ln_2) for l, b in enumerate(tr.h)] + [("lnf", tr.ln_f)]]
        try:
            out = hf(tokens[None], output_attentions=True)
        finally:
            for h in hooks:
                h.remove()
        pats = out.attentions
        eps = hf.config.layer_norm_epsilon
        sigma = {k: (v - v.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(eps).sqrt()
                 for k, v in ln_in.items()}

        def ln(x, mod, s):
            return (x - x.mean(-1, keepdim=True)) / s * mod.weight + mod.bias

        T = tokens.shape[0]
        H, d = hf.config.n_head, hf.config.n_embd
        x = tr.wte(tokens[None]) * embed_scale[None, :, None] + tr.wpe(torch.arange(T))[None]
        for l, b in enumerate(tr.h):
            h = ln(x, b.ln_1, sigma[f"ln1.{l}"])
            v = b.attn.c_attn(h)[..., 2 * d:].reshape(1, T, H, d // H).transpose(1, 2)
            z = (pats[l] @ v).transpose(1, 2).reshape(1, T, d)
            x = x + b.attn.c_proj(z)
            if target[0] == "feature" and target[1] == l:
                m_in = ln(x, b.ln_2, sigma[f"ln2.{l}"])
                return float(m_in[0, target[2]] @ target[3] + target[4])
            x = x + mlp_const[l]
        lg = hf.lm_head(ln(x, tr.ln_f, sigma["lnf"]))[0, -1]
        return float((lg - lg.mean())[target[1]])


def _hf_mlp_outputs(hf, tokens):
    outs = {}
    hooks = [b.mlp.register_forward_hook(lambda m, i, o, l=l: outs.__setitem__(l, o))
             for l, b in enumerate(hf.transformer.h)]
    try:
        with torch.no_grad():
            hf(tokens[None])
    finally:
        for h in hooks:
            h.remove()
    return [outs[l] for l in range(len(outs))]


def _edge_by_hand(hf, graph, rm, target_node, source_node):
    """Target input with the source on minus with it off, everything else fixed."""
    tokens = graph.tokens
    mlp = _hf_mlp_outputs(hf, tokens)
    kind_t = graph.node_kind(target_node)
    if kind_t == "feature":
        l, p, f = graph.features[target_node].tolist()
        tc = rm.transcoders[l]
        target = ("feature", l, p, tc.W_enc[f].detach(), float(tc.b_enc[f].detach()))
    else:
        j = target_node - graph.slices()["logit"].start
        target = ("logit", int(graph.logit_weights[j].argmax()))
    on_scale = torch.ones(tokens.shape[0])
    off_mlp = [m.clone() for m in mlp]
    off_scale = on_scale.clone()
    kind_s = graph.node_kind(source_node)
    if kind_s == "feature":
        l, p, f = graph.features[source_node].tolist()
        a = graph.activations[source_node]
        off_mlp[l][0, p] -= a * rm.transcoders[l].W_dec[:, f].detach()
    elif kind_s == "error":
        l, p = graph.errors[source_node - graph.slices()["error"].start].tolist()
        off_mlp[l][0, p] -= graph.error_tensor[l, 0, p]
    else:
        p = source_node - graph.slices()["embed"].start
        off_scale[p] = 0.0
    return (_hf_frozen_target(hf, tokens, target, mlp, on_scale)
            - _hf_frozen_target(hf, tokens, target, off_mlp, off_scale))


def _pick(graph, kind_t, kind_s, cross_position):
    A = graph.adjacency
    s = graph.slices()
    pos = graph.node_pos()
    best = None
    for t in range(s[kind_t].start, s[kind_t].stop):
        for src in range(s[kind_s].start, s[kind_s].stop):
            if (pos[t] != pos[src]) == cross_position and A[t, src] != 0:
                if best is None or abs(A[t, src]) > abs(A[best]):
                    best = (t, src)
    assert best is not None, (kind_t, kind_s)
    return best


@pytest.mark.parametrize("kind_t,kind_s,cross", [
    ("feature", "feature", True),      # through at least one frozen attention layer
    ("feature", "embed", False),       # the residual path and attention to itself
    ("logit", "feature", True),
    ("logit", "error", False),
])
def test_one_edge_equals_a_frozen_forward_from_raw_weights(hf, random_rm, random_graph,
                                                          kind_t, kind_s, cross):
    t, s = _pick(random_graph, kind_t, kind_s, cross)
    by_hand = _edge_by_hand(hf, random_graph, random_rm, t, s)
    ours = float(random_graph.adjacency[t, s])
    assert abs(by_hand) > 1e-3
    assert ours == pytest.approx(by_hand, rel=2e-3, abs=1e-4), (random_graph.node_name(t),
                                                                random_graph.node_name(s))


def test_one_edge_shipped_transcoders_from_raw_weights(hf, shipped_rm, gt_prompt):
    graph = build_graph(shipped_rm, gt_prompt)
    t, s = _pick(graph, "logit", "feature", True)
    assert float(graph.adjacency[t, s]) == pytest.approx(
        _edge_by_hand(hf, graph, shipped_rm, t, s), rel=2e-3, abs=1e-4)


# --- influence and pruning ------------------------------------------------------------------------
def _toy_graph(A: torch.Tensor, n_f: int, n_e: int, n_t: int, n_l: int) -> AttributionGraph:
    z = torch.zeros
    return AttributionGraph(
        tokens=torch.zeros(n_t, dtype=torch.long), token_strs=["x"] * n_t,
        features=torch.tensor([[i, 0, i] for i in range(n_f)], dtype=torch.long).reshape(-1, 3),
        activations=torch.ones(n_f), errors=torch.tensor([[0, 0]] * n_e, dtype=torch.long).reshape(-1, 2),
        error_vectors=z(n_e, 2), logit_weights=torch.eye(n_l, 4), logit_names=["a"] * n_l,
        logit_probs=torch.full((n_l,), 1.0 / n_l), adjacency=A,
        inputs=z(A.shape[0]), constants=z(A.shape[0]), n_layers=max(n_f, 1), frozen=None,
        error_tensor=z(1), logits=z(1))


def test_influence_equals_the_matrix_series():
    # nodes: f0, f1, f2 (features), e (error), t (token), L (logit)
    A = torch.zeros(6, 6)
    A[1, 0], A[1, 4] = 2.0, -1.0          # f1 <- f0, t
    A[2, 4] = 0.5                         # f2 <- t (never reaches the logit)
    A[0, 4] = 1.0                         # f0 <- t
    A[5, 1], A[5, 3], A[5, 0] = 3.0, -1.0, 0.5   # L <- f1, e, f0
    g = _toy_graph(A, 3, 1, 1, 1)
    N = normalized_adjacency(A)
    w = torch.zeros(6)
    w[5] = 1.0
    expect = w @ (torch.linalg.inv(torch.eye(6) - N) - torch.eye(6))
    assert torch.allclose(influence(g), expect, atol=1e-6)
    assert float(influence(g)[2]) == 0.0
    pr = prune_graph(g, node_threshold=0.99, edge_threshold=1.0)
    assert not pr.node_mask[2] and pr.node_mask[[0, 1, 3, 4, 5]].all()
    pr = prune_graph(g, node_threshold=0.5, edge_threshold=1.0)   # f1 alone carries > half
    assert pr.node_mask[1] and not pr.node_mask[2]


def test_pruning_keeps_what_carries_the_influence(shipped_rm, gt_prompt):
    graph = build_graph(shipped_rm, gt_prompt)
    full = prune_graph(graph, 1.0, 1.0)
    pr = prune_graph(graph, 0.8, 0.98)
    s = graph.slices()
    assert pr.n_nodes < full.n_nodes and pr.n_edges < full.n_edges
    kept = pr.node_mask[s["feature"]]
    infl = influence(graph)[s["feature"]]
    # every kept feature is more influential than every dropped one (ties aside)
    assert kept.any() and (~kept).any()
    assert float(infl[kept].min()) >= float(infl[~kept].max()) - 1e-9
    assert pr.node_mask[s["logit"]].all()


def test_bad_graph_arguments(random_rm, gt_prompt, lm):
    with pytest.raises(TutorialError, match="one prompt"):
        build_graph(random_rm, gt_prompt[None])
    partial = ReplacementModel(lm, {0: random_rm.transcoders[0]})
    with pytest.raises(TutorialError, match="every layer"):
        build_graph(partial, gt_prompt)
    g = build_graph(random_rm, gt_prompt)
    with pytest.raises(TutorialError, match="threshold"):
        prune_graph(g, node_threshold=0.0)
    with pytest.raises(TutorialError, match="not feature nodes"):
        graph_prediction(g, [g.n_nodes - 1], 0.0)


# --- interventions ------------------------------------------------------------------------------
def test_small_interventions_match_the_graph_in_the_frozen_model(shipped_rm, gt_prompt, model):
    """Scaling a feature by 0.95 keeps (almost) every feature on the same side of its
    threshold, so the frozen replacement model moves as the graph predicts."""
    graph = build_graph(shipped_rm, gt_prompt)
    infl = influence(graph)[: graph.n_features]
    nodes = infl.argsort(descending=True)[:6].tolist()
    chk = check_interventions(graph, shipped_rm, model, nodes, scale=0.95)
    pred, frozen = chk.deltas["graph"], chk.deltas["frozen"]
    assert pred.abs().max() > 1e-3
    err = (pred - frozen).abs().max(1).values / frozen.abs().max(1).values.clamp_min(1e-3)
    assert float(err.median()) < 0.05


def test_model_deltas_bridge_equals_unfolded(shipped_rm, gt_prompt, model):
    """The real-model intervention through the bridge's hooks (its centred, folded numbers)
    equals the same intervention in the unfolded model."""
    graph = build_graph(shipped_rm, gt_prompt)
    nodes = list(range(0, graph.n_features, max(1, graph.n_features // 5)))[:5]
    a = model_deltas(model, graph, nodes, 0.0, shipped_rm)
    b = model_deltas(shipped_rm.lm, graph, nodes, 0.0, shipped_rm)
    assert torch.allclose(a, b, atol=2e-3)
    assert a.abs().max() > 1e-2


def test_edge_through_heads_splits_a_one_hop_edge_exactly(random_rm, random_graph):
    """An embedding at another position reaches a layer-0 feature only through layer 0's
    heads, each path through exactly one head: the shares sum to the edge."""
    from tutorial_utils.features.attribution import edge_through_heads

    g = random_graph
    s = g.slices()
    pos = g.node_pos()
    cand = [(t, src) for t in range(s["feature"].start, s["feature"].stop)
            if int(g.features[t, 0]) == 0
            for src in range(s["embed"].start, s["embed"].stop)
            if pos[src] != pos[t] and g.adjacency[t, src] != 0]
    t, src = max(cand, key=lambda ts: abs(float(g.adjacency[ts])))
    shares = edge_through_heads(random_rm, g, t, src)
    assert float(shares[0].sum()) == pytest.approx(float(g.adjacency[t, src]), rel=1e-4)
    assert shares[1:].abs().max() == 0.0


def test_activations_with_a_repeated_name_are_not_doubled(lm):
    toks = torch.zeros(3, 4, dtype=torch.long)
    acts = lm.activations(toks, ("resid_pre.1", "resid_pre.1"))
    assert acts["resid_pre.1"].shape == (3, 4, 128)


def test_influence_flow_of_a_chain():
    """emb -> f0 -> f1 -> logit, all at position 0, plus an error into the logit:
    every edge on the chain carries the same flow."""
    from tutorial_utils.features.pruning import influence_flow

    A = torch.zeros(5, 5)             # f0, f1, err, emb, logit
    A[0, 3] = 2.0
    A[1, 0] = -1.0
    A[4, 1], A[4, 2] = 3.0, 1.0
    g = _toy_graph(A, 2, 1, 1, 1)
    g.features[:, 1] = 0
    flow = influence_flow(g)
    assert sum(flow.values()) == pytest.approx(1.0)
    assert flow[("m1", "logits")] == pytest.approx(flow[("m0", "m1")])
    assert flow[("emb", "m0")] == pytest.approx(flow[("m0", "m1")])
    assert flow[("m1", "logits")] == pytest.approx(3 * flow[("err0", "logits")])


def test_plots_draw_the_graph_and_the_checks(random_rm, random_graph, lm):
    import matplotlib

    matplotlib.use("Agg")
    from tutorial_utils.features.plots import plot_graph, plot_interventions

    pr = prune_graph(random_graph, 0.8, 0.95)
    fig = plot_graph(random_graph, pr)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "token position" and "Pruned attribution graph" in ax.get_title()
    assert len(ax.get_xticklabels()) == random_graph.n_tokens
    chk = check_interventions(random_graph, random_rm, lm, [0, 1, 2], scale=0.0)
    fig = plot_interventions(chk, 0, "top logit")
    assert [a.get_title() for a in fig.axes] == ["frozen", "replacement", "model"]


def test_last_layer_features_move_the_real_model_as_predicted(shipped_rm, lm, model):
    """A last-layer feature reaches the logits only through the final LayerNorm: the frozen
    run is the graph exactly, and the real model equals the replacement model (nothing
    downstream but ln_f, whose recomputed denominator is the whole difference). On the
    Greater-Than direction (later years minus earlier ones) the features with a predicted
    effect above 0.5 keep their sign in the real model."""
    ds = make_task("greater_than", lm.tokenizer, n=1, frames_split="heldout", seed=5)
    w = torch.where(ds.candidate_sign[0] > 0, 1.0, -1.0) / 50.0
    direction = torch.zeros(lm.w.d_vocab).index_add_(0, ds.candidate_ids[0], w)
    graph = build_graph(shipped_rm, ds.clean_tokens[0, : int(ds.answer_pos[0]) + 1],
                        directions={"later minus earlier": direction})
    lw = torch.zeros(graph.n_logits)
    lw[-1] = 1.0
    infl = influence(graph, lw)[: graph.n_features]
    last = [int(i) for i in infl.argsort(descending=True)[:40] if graph.features[i, 0] == 3][:8]
    assert len(last) >= 4
    chk = check_interventions(graph, shipped_rm, model, last, scale=0.0)
    d = chk.deltas
    assert torch.allclose(d["frozen"], d["graph"], atol=1e-4)
    assert torch.allclose(d["replacement"], d["model"], atol=2e-3)
    big = d["graph"][:, -1].abs() > 0.5
    assert big.sum() >= 2
    assert torch.equal(torch.sign(d["graph"][big, -1]), torch.sign(d["model"][big, -1]))


def test_partly_frozen_stages_of_a_last_layer_feature(shipped_rm, gt_prompt, model):
    """A last-layer feature changes nothing upstream of ``ln_f``: freezing only ``ln_f``'s
    denominator is the fully frozen run, freezing only the attention patterns changes nothing
    (the replacement run), and with all-None fields the run is the replacement run."""
    from tutorial_utils.features.interventions import PARTIAL_STAGES
    from tutorial_utils.features.unfolded import FrozenState

    graph = build_graph(shipped_rm, gt_prompt)
    last = (graph.features[:, 0] == 3).nonzero()[:5, 0].tolist()
    first = (graph.features[:, 0] == 0).nonzero()[:5, 0].tolist()
    chk = check_interventions(graph, shipped_rm, model, last + first, scale=0.0, freeze_parts=True)
    d = chk.deltas
    assert list(d) == ["graph", "frozen", *PARTIAL_STAGES, "replacement", "model"]
    k = len(last)
    assert torch.allclose(d["final norm frozen"][:k], d["frozen"][:k], atol=1e-5)
    assert torch.allclose(d["attention frozen"][:k], d["replacement"][:k], atol=1e-5)
    assert not torch.allclose(d["final norm frozen"], d["replacement"], atol=1e-3)
    toks = graph.tokens[None]
    free, _, _ = shipped_rm.run(toks, errors=graph.error_tensor,
                                frozen=FrozenState(None, None, None, None))
    real, _, _ = shipped_rm.run(toks, errors=graph.error_tensor)
    assert torch.allclose(free.logits, real.logits, atol=1e-5)


def test_task_direction_reads_mean_right_minus_mean_wrong(lm):
    from tutorial_utils.features.attribution import task_direction

    ds = make_task("greater_than", lm.tokenizer, n=3, seed=1)
    w = task_direction(ds, 1, lm.w.d_vocab)
    logits = torch.randn(lm.w.d_vocab)
    ids, sign = ds.candidate_ids[1], ds.candidate_sign[1]
    want = logits[ids[sign > 0]].mean() - logits[ids[sign < 0]].mean()
    assert torch.allclose(w @ logits, want, atol=1e-5) and abs(float(w.sum())) < 1e-5
    with pytest.raises(TutorialError, match="example"):
        task_direction(ds, 3, lm.w.d_vocab)
