"""Notebook 06 (features): each exercise check accepts the reference solution (and the answer
types a student may return), and rejects each likely mistake with a message that names it."""

from __future__ import annotations

import re

import pytest
import torch

from tutorial_utils.course.answers import exercise_checks
from tutorial_utils.course.checks import nb06
from tutorial_utils.course.dictionaries import corpus_tokens
from tutorial_utils.course.solutions import nb06 as S
from tutorial_utils.features.attribution import build_graph
from tutorial_utils.features.dictionary import shipped_dictionary
from tutorial_utils.features.evaluation import next_token_loss
from tutorial_utils.features.pruning import influence
from tutorial_utils.features.replacement import ReplacementModel
from tutorial_utils.features.unfolded import UnfoldedGPT2
from tutorial_utils.tasks import make_greater_than

pytestmark = pytest.mark.usefixtures("lenient_checks")


@pytest.fixture(scope="module")
def lm(model):
    return UnfoldedGPT2.from_model(model)


@pytest.fixture(scope="module")
def rm(lm):
    return ReplacementModel(lm, {l: shipped_dictionary(f"transcoder_m{l}")
                                 for l in range(lm.w.n_layers)})


@pytest.fixture(scope="module")
def graph(rm, model):
    ds = make_greater_than(model, n=2, seed=0)
    s = ds.candidate_sign[0]
    w = torch.where(s > 0, 1 / (s > 0).sum(), -1 / (s < 0).sum())
    direction = torch.zeros(rm.lm.w.d_vocab).index_add_(0, ds.candidate_ids[0], w)
    return build_graph(rm, ds.clean_tokens[0, : int(ds.answer_pos[0]) + 1],
                       directions={"task": direction})


def _fails(result, *fragments):
    assert not result.passed, result.message
    for f in fragments:
        assert f in result.message, (f, result.message)


def test_every_check_falls_back_on_its_reference():
    checks = exercise_checks(nb06)
    assert {c.label for c in checks.values()} == {"1.1", "2.1", "2.2", "4.1", "4.2", "5.1"}
    for check in checks.values():
        assert check.reference.__module__ == "tutorial_utils.course.solutions.nb06"


# -- 1.1 feature dimensionality ------------------------------------------------------------------

def test_feature_dimensionality_check():
    assert nb06.check_feature_dimensionality.judge(S.feature_dimensionality).passed
    # a numpy answer is fine
    assert nb06.check_feature_dimensionality.judge(
        lambda W: S.feature_dimensionality(W).numpy()).passed

    def without_self(W):
        norms = W.norm(dim=1, keepdim=True)
        ov = torch.einsum("kmi,kmj->kij", W / norms.clamp_min(1e-8), W).pow(2)
        ov = ov - torch.diag_embed(torch.diagonal(ov, dim1=1, dim2=2))
        return norms[:, 0].pow(2) / ov.sum(-1).clamp_min(1e-12)
    _fails(nb06.check_feature_dimensionality.judge(without_self), "includes j = i")

    def not_unit(W):
        norms = W.norm(dim=1)
        ov = torch.einsum("kmi,kmj->kij", W, W).pow(2)
        return norms.pow(2) / ov.sum(-1).clamp_min(1e-12)
    _fails(nb06.check_feature_dimensionality.judge(not_unit), "unit")

    def unit_both_sides(W):       # (W_hat_i . W_hat_j)^2: right for unit features only
        norms = W.norm(dim=1, keepdim=True)
        unit = W / norms.clamp_min(1e-8)
        ov = torch.einsum("kmi,kmj->kij", unit, unit).pow(2)
        return norms[:, 0].pow(2) / ov.sum(-1).clamp_min(1e-12)
    result = nb06.check_feature_dimensionality.judge(unit_both_sides)
    _fails(result, "with the *raw* column W_j")
    # the message shows the wrong entry (the norm-2 pentagon's 1.6), not only the right ones
    assert re.search(r"you gave 1, 0\.5, 0\.4, 1\.6: ", result.message), result.message

    def nan_on_dropped(W):
        norms = W.norm(dim=1, keepdim=True)
        ov = torch.einsum("kmi,kmj->kij", W / norms, W).pow(2)
        return norms[:, 0].pow(2) / ov.sum(-1)
    _fails(nb06.check_feature_dimensionality.judge(nan_on_dropped), "NaN", "dropped feature")


# -- 2.1 the SAE loss ------------------------------------------------------------------------------

def _loss(x, W_enc, b_enc, W_dec, b_dec, l1, V, mistake=""):
    return torch.tensor(nb06._sae_loss_variant(x, W_enc, b_enc, W_dec, b_dec, l1, V, mistake))


@pytest.mark.parametrize("mistake, fragment", [
    ("no_relu", "ReLU"), ("no_b_pre", "subtract the decoder bias"),
    ("no_b_dec_out", "add the decoder bias back"), ("mean_over_elements", "sum the squared error"),
    ("mse_not_normalised", "divide the squared error"), ("l1_raw", "sqrt(V)"),
    ("l1_over_V", "not V"), ("l1_abs_pre", "after the ReLU")])
def test_sae_loss_check_names_each_mistake(mistake, fragment):
    _fails(nb06.check_sae_loss.judge(lambda *a: _loss(*a, mistake=mistake)), fragment)


def test_sae_loss_check_accepts_the_reference_and_a_float():
    assert nb06.check_sae_loss.judge(S.sae_loss).passed
    assert nb06.check_sae_loss.judge(lambda *a: float(S.sae_loss(*a))).passed
    _fails(nb06.check_sae_loss.judge(lambda *a: None), "None")


def test_sae_loss_reference_is_the_training_loss(lm):
    from tutorial_utils.features.reading import dictionary_inputs
    from tutorial_utils.features.training import dictionary_loss

    sae = shipped_dictionary("sae_resid3_relu")
    x = dictionary_inputs(lm, sae, corpus_tokens(lm, 8, 2025)).reshape(-1, sae.config.d_in)
    V = float((x - x.mean(0)).pow(2).sum(-1).mean())
    ref, _ = dictionary_loss(sae, x, x, V, l1_coeff=0.15)
    mine = S.sae_loss(x, sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec, 0.15, V)
    assert torch.allclose(mine, ref, rtol=1e-5)


# -- 2.2 variance explained and loss recovered ----------------------------------------------------

@pytest.fixture(scope="module")
def docs(lm):
    return corpus_tokens(lm, 16, 2025)


def _splice(lm, sae, tokens, mistake=""):
    layer = sae.config.layer + (1 if mistake == "wrong_layer" else 0)
    site = f"resid_pre.{sae.config.layer}"
    x3 = lm.activations(tokens, (site,))[site]
    x = x3.reshape(-1, x3.shape[-1])
    sse = (x - sae(x)).pow(2).sum()
    total = {"uncentred": x.pow(2).sum(),
             "per_position": (x3 - x3.mean(0)).pow(2).sum()}.get(mistake, (x - x.mean(0)).pow(2).sum())
    fve = float(1 - sse / total)
    mean = x.mean(0)
    base = (lambda r: mean.expand_as(r)) if mistake == "mean" else torch.zeros_like

    def loss(fn):
        edit = None if fn is None else (lambda l, r: fn(r) if l == layer else r)
        return float(next_token_loss(lm.run(tokens, resid_edit=edit).logits, tokens))
    clean, spliced, zero = loss(None), loss(sae), loss(base)
    lr = (zero - spliced) / (zero - clean)
    return fve, (1 - lr if mistake == "inverted" else lr)


def test_splice_scores_check(lm, docs):
    sae = shipped_dictionary("sae_resid3_topk")
    check = nb06.check_splice_scores
    assert check.judge(S.splice_scores, lm, sae, docs).passed
    assert check.judge(lambda *a: torch.tensor(S.splice_scores(*a)), lm, sae, docs).passed
    assert check.judge(lambda *a: list(S.splice_scores(*a)), lm, sae, docs).passed
    for mistake, fragment in [("uncentred", "centre x first"), ("per_position", "not per position"),
                              ("inverted", "1 minus it"), ("mean", "zero ablation"),
                              ("wrong_layer", "before block")]:
        _fails(check.judge(lambda l, d, t, m=mistake: _splice(l, d, t, m), lm, sae, docs), fragment)
    _fails(check.judge(lambda *a: S.splice_scores(*a)[0], lm, sae, docs), "two numbers")


# -- 4.1 one edge by hand --------------------------------------------------------------------------

def _edge(mistake):
    def fn(lm, frozen, tokens, write, wl, wp, read, rl, rp):
        flags = {"freeze": mistake != "no_freeze", "mlps_off": mistake != "mlps_on",
                 "difference": mistake != "no_difference",
                 "before_attention": mistake == "before_attention"}
        if mistake == "no_embeddings" and wl == -1:
            return 0.0
        return nb06._edge_variant(lm, frozen, tokens, write, wl, wp, read, rl, rp, **flags)
    return fn


def test_edge_by_hand_check(rm, graph):
    check = nb06.check_edge_by_hand
    res = check.judge(S.edge_by_hand, rm, graph)
    assert res.passed and "4 edges" in res.message, res.message
    _fails(check.judge(_edge("no_freeze"), rm, graph), "linear in the write", "frozen=frozen")
    _fails(check.judge(_edge("mlps_on"), rm, graph), "every MLP off")
    _fails(check.judge(_edge("no_difference"), rm, graph), "subtract the run without the write")
    _fails(check.judge(_edge("before_attention"), rm, graph), "after* layer l's attention")
    _fails(check.judge(_edge("no_embeddings"), rm, graph), "resid_edit at layer 0")


# -- 4.2 influence ------------------------------------------------------------------------------

def test_node_influence_check(graph):
    check = nb06.check_node_influence
    assert check.judge(S.node_influence).passed
    assert check.judge(lambda A, w: S.node_influence(A, w).tolist()).passed
    for mistake, fragment in [("with_own_weight", "identity term"), ("first_order", "every length"),
                              ("columns", "*row*"), ("transposed", "w @ N"),
                              ("signed", "absolute values"), ("unnormalised", "normalise each row")]:
        _fails(check.judge(lambda A, w, m=mistake: nb06._influence_variants(A, w)[m]), fragment)
    s = graph.slices()
    w = torch.zeros(graph.n_nodes)
    w[s["logit"]] = graph.logit_probs.nan_to_num(0.0) / graph.logit_probs.nan_to_num(0.0).sum()
    assert torch.allclose(S.node_influence(graph.adjacency, w), influence(graph), atol=1e-5)


# -- 5.1 one intervention in the real model ----------------------------------------------------------

def test_ablate_in_model_check(rm, graph):
    check = nb06.check_ablate_in_model
    nodes = [int((graph.features[:, 0] == l).nonzero()[-1]) for l in (0, 3)]
    assert check.judge(S.ablate_in_model, rm, graph, nodes).passed
    assert check.judge(lambda *a: torch.tensor(S.ablate_in_model(*a)), rm, graph, nodes).passed
    for mistake, fragment in [("sign", "remove"), ("every_position", "that position only"),
                              ("frozen", "let attention and LayerNorm recompute"),
                              ("not_demeaned", "demeaned"),
                              ("no_activation", "scale W_dec[:, f] by the activation")]:
        def wrong(lm, rm_, g, node, target, m=mistake):
            return nb06._ablation_variants(lm, rm_, g, node, target)[m]
        _fails(check.judge(wrong, rm, graph, nodes), fragment)

    def whole_mlp(lm, rm_, g, node, target):    # removes MLP l's whole output at p: not silent
        l, p, f = g.features[node].tolist()
        w = g.logit_weights[target]

        def mlps(layer, m_in, m_out):
            if layer != l:
                return m_out
            m_out = m_out.clone()
            m_out[:, p] = 0.0
            return m_out

        def value(logits):
            return float(w @ (logits[0, -1] - logits[0, -1].mean()))
        toks = g.tokens[None]
        return value(lm.run(toks, mlp_override=mlps).logits) - value(lm.run(toks).logits)
    _fails(check.judge(whole_mlp, rm, graph, nodes), "writes nothing")


def test_ablate_in_model_check_accepts_the_activation_read_from_the_model(rm, graph):
    """A correct answer may recompute the feature's activation from the MLP's input in the run
    (it equals graph.activations[node] on the graph's prompt); the silent case must not reject
    it (it used to zero graph.activations while the model's feature stayed active)."""
    def live(lm, rm_, g, node, target):
        layer, pos, feature = g.features[node].tolist()
        tc = rm_.transcoders[layer]
        w = g.logit_weights[target]

        def mlps(l, m_in, m_out):
            if l != layer:
                return m_out
            a = tc.encode(m_in[:, pos])[:, feature]
            m_out = m_out.clone()
            m_out[:, pos] -= a[:, None] * tc.W_dec[:, feature]
            return m_out

        def value(logits):
            return float(w @ (logits[0, -1] - logits[0, -1].mean()))
        toks = g.tokens[None]
        return value(lm.run(toks, mlp_override=mlps).logits) - value(lm.run(toks).logits)
    nodes = [int((graph.features[:, 0] == l).nonzero()[-1]) for l in (0, 3)]
    result = nb06.check_ablate_in_model.judge(live, rm, graph, nodes)
    assert result.passed, result.message
    assert rm.transcoders[0].W_dec.abs().sum(0).min() > 0       # the check edited a copy only
