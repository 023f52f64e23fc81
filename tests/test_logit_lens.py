"""Invariants of the logit lens and direct logit attribution (tutorial_utils.logit_lens).

They hold for any weights: the final logit-lens point is the model's output, DLA rows sum to the
logits, heads sum to their layer, and TransformerLens's own ActivationCache helpers (an
independent implementation) agree with ours.
"""

from __future__ import annotations

import types

import pytest
import torch

from tutorial_utils import dla as D
from tutorial_utils import logit_lens as LL
from tutorial_utils import plotting
from tutorial_utils.tasks import make_greater_than, make_ioi
from tutorial_utils.tasks.greater_than import year_token_ids

ATOL = 1e-4


@pytest.fixture(scope="module")
def gt(model):
    return make_greater_than(model, n=12, frames_split="all", seed=1)


@pytest.fixture(scope="module")
def ioi(model):
    return make_ioi(model, n=10, seed=2)


@pytest.fixture(scope="module")
def years(model):
    return torch.tensor(year_token_ids(model.tokenizer))


@pytest.fixture(scope="module")
def gt_run(model, gt):
    with torch.no_grad():
        logits, cache = model.run_with_cache(gt.clean_tokens)
    return logits, cache


def at_pos(x, pos):
    """x[b, pos[b]] for [B, T, ...]."""
    return x[torch.arange(x.shape[0]), pos]


def stack_at_pos(x, pos):
    """x[:, b, pos[b]] for a stack [n, B, T, ...]."""
    return x[:, torch.arange(x.shape[1]), pos]


# ------------------------------------------------------------------------------ logit lens

@pytest.mark.parametrize("scale", ["own", "final"])
def test_final_point_is_model_logits(model, gt, years, gt_run, scale):
    logits = at_pos(gt_run[0], gt.answer_pos)
    r = LL.logit_lens(model, gt.clean_tokens, gt.answer_pos, years, scale=scale)
    L = model.cfg.n_layers
    assert r.labels == ["embed"] + [f"L{l}" for l in range(L)]
    assert r.logits.shape == (model.cfg.n_layers + 1, len(gt), 100)
    torch.testing.assert_close(r.logits[-1], logits[:, years], atol=ATOL, rtol=0)
    # probabilities are the model's (normalised over the full vocabulary), not a subset softmax
    torch.testing.assert_close(r.probs()[-1], logits.softmax(-1)[:, years], atol=1e-5, rtol=0)
    # full vocabulary, int position (the rows are right-padded with BOS: attention_mask says
    # every token is real, else pos=-1 on a padded row is refused)
    ones = torch.ones_like(gt.clean_tokens)
    full = LL.logit_lens(model, gt.clean_tokens, -1, None, scale=scale, attention_mask=ones)
    torch.testing.assert_close(full.logits[-1], gt_run[0][:, -1], atol=ATOL, rtol=0)
    assert torch.equal(full.top_ids[-1, :, 0], gt_run[0][:, -1].argmax(-1))
    # ranks of the year tokens in the full vocabulary, against a direct count
    want = (logits[:, None, :] > logits[:, years][..., None]).sum(-1)
    assert torch.equal(r.rank_of()[-1].cpu(), want)


def test_logit_lens_matches_transformer_lens_accumulated_resid(model, gt, gt_run):
    """TL's cache.accumulated_resid(apply_ln=True) recomputes ln_final for every point (the
    standard logit lens), as our scale="own" does."""
    _, cache = gt_run
    acc, labels = cache.accumulated_resid(apply_ln=True, return_labels=True, incl_mid=True)
    ref = stack_at_pos(acc, gt.answer_pos) @ model.W_U + model.b_U
    r = LL.logit_lens(model, gt.clean_tokens, gt.answer_pos, None, cache=cache, incl_mid=True)
    assert len(labels) == len(r.labels) == 2 * model.cfg.n_layers + 1
    torch.testing.assert_close(r.logits, ref.detach(), atol=ATOL, rtol=0)
    # the two scales differ at intermediate points (otherwise the option would be pointless)
    rf = LL.logit_lens(model, gt.clean_tokens, gt.answer_pos, None, cache=cache, scale="final")
    ro = LL.logit_lens(model, gt.clean_tokens, gt.answer_pos, None, cache=cache, scale="own")
    assert r.labels[2] == "L0" and torch.equal(r.logits[2], ro.logits[1])
    assert (rf.logits[1] - ro.logits[1]).abs().max() > 1e-3
    torch.testing.assert_close(rf.logits[-1], ro.logits[-1], atol=ATOL, rtol=0)


def test_per_example_token_ids_and_cache_equivalence(model, ioi):
    ids = ioi.candidate_ids
    with torch.no_grad():
        logits, cache = model.run_with_cache(ioi.clean_tokens)
    a = LL.logit_lens(model, ioi.clean_tokens, ioi.answer_pos, ids, cache=cache)
    b = LL.logit_lens(model, ioi.clean_tokens, ioi.answer_pos, ids, batch_size=3)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.logits[-1], at_pos(logits, ioi.answer_pos).gather(-1, ids),
                               atol=ATOL, rtol=0)
    tops = a.top_tokens(model, example=0, k=3)
    assert len(tops) == len(a.labels) and all(len(t) == 3 for t in tops)


# ---------------------------------------------------------------- component lens and DLA

@pytest.mark.parametrize("per_head", [True, False])
def test_dla_sums_to_logits(model, gt, years, gt_run, per_head):
    logits = at_pos(gt_run[0], gt.answer_pos)[:, years]
    d = D.direct_logit_attribution(model, gt.clean_tokens, gt.answer_pos, years,
                                    per_head=per_head)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    assert d.values.shape == (2 + L * ((H if per_head else 1) + 1) + per_head + 1, len(gt), 100)
    assert d.labels[:2] == ["tok_embed", "pos_embed"] and d.labels[-1] == "bias.b_U"
    torch.testing.assert_close(d.values.sum(0), logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(d.logits, logits, atol=ATOL, rtol=0)


def test_heads_sum_to_their_layer(model, gt, years, gt_run):
    _, cache = gt_run
    heads = D.direct_logit_attribution(model, gt.clean_tokens, gt.answer_pos, years, cache=cache)
    layers = D.direct_logit_attribution(model, gt.clean_tokens, gt.answer_pos, years,
                                         cache=cache, per_head=False)
    grid = heads.head_grid()                                         # [L, H, B, K]
    scale = at_pos(cache["ln_final.hook_scale"], gt.answer_pos)      # [B, 1]
    vb = D.head_value_bias_outputs(model)                            # [L, H, d]
    for l in range(model.cfg.n_layers):
        # the bridge's b_O holds the folded value biases, which the head rows now carry
        b_O = model.blocks[l].attn.b_O.detach() - vb[l].sum(0)
        b_O_dla = ((b_O - b_O.mean()) / scale) @ model.W_U[:, years].detach()
        torch.testing.assert_close(grid[l].sum(0) + b_O_dla, layers.get(f"a{l}"), atol=ATOL,
                                   rtol=0)
        torch.testing.assert_close(heads.get(f"m{l}"), layers.get(f"m{l}"), atol=1e-6, rtol=0)


def test_frozen_scale_lens_is_partial_sum_of_dla(model, gt, years, gt_run):
    _, cache = gt_run
    d = D.direct_logit_attribution(model, gt.clean_tokens, gt.answer_pos, years, cache=cache,
                                    per_head=False)
    r = LL.logit_lens(model, gt.clean_tokens, gt.answer_pos, years, cache=cache, scale="final")
    b_U = d.get("bias.b_U")
    assert len(r.labels) == model.cfg.n_layers + 1
    for l in range(model.cfg.n_layers + 1):                          # point l: after block l-1
        written = ["tok_embed", "pos_embed"] + [f"{c}{k}" for k in range(l) for c in ("a", "m")]
        partial = sum(d.get(c) for c in written) + b_U
        torch.testing.assert_close(r.logits[l], partial, atol=ATOL, rtol=0)


def test_dla_matches_transformer_lens_cache_helpers(hooked_model, gt, years):
    """Our per-head rows come from hook_z @ W_O plus the head's value bias, which compatibility
    mode folded into b_O; TL's stack_head_results reads hook_result (without it), so they agree
    once that term is taken off ours; decompose_resid/apply_ln_to_stack centre and divide by
    the cached final scale."""
    m = hooked_model
    with torch.no_grad():
        _, cache = m.run_with_cache(gt.clean_tokens)
    W = m.W_U[:, years].detach()
    d = D.direct_logit_attribution(m, gt.clean_tokens, gt.answer_pos, years, cache=cache)
    heads, hl = cache.stack_head_results(layer=-1, return_labels=True, apply_ln=True)
    ref = stack_at_pos(heads, gt.answer_pos) @ W
    vb = D.head_value_bias_outputs(m).flatten(0, 1)                       # [L*H, d]
    scale = at_pos(cache["ln_final.hook_scale"], gt.answer_pos)          # [B, 1]
    vb_read = ((vb - vb.mean(-1, keepdim=True))[:, None] / scale) @ W     # [L*H, B, K]
    ours = d.head_grid().flatten(0, 1) - vb_read
    assert len(hl) == ours.shape[0]
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)
    dl = D.direct_logit_attribution(m, gt.clean_tokens, gt.answer_pos, years, cache=cache,
                                     per_head=False)
    dec, labels = cache.decompose_resid(apply_ln=True, return_labels=True)
    ref = stack_at_pos(dec, gt.answer_pos) @ W
    ours_rows = ["tok_embed", "pos_embed"] + [f"{c}{l}" for l in range(m.cfg.n_layers)
                                         for c in ("a", "m")]
    assert len(labels) == len(ours_rows)
    torch.testing.assert_close(torch.stack([dl.get(c) for c in ours_rows]), ref, atol=ATOL,
                               rtol=0)
    # and a stack built by hand through apply_ln_to_stack at one position
    stack = torch.stack([cache["hook_embed"][:, -1], cache["blocks.0.hook_mlp_out"][:, -1]])
    normed = cache.apply_ln_to_stack(stack, layer=m.cfg.n_layers, pos_slice=-1)
    torch.testing.assert_close(normed @ W, torch.stack([
        D.direct_logit_attribution(m, gt.clean_tokens, -1, years, cache=cache, per_head=False,
                                    attention_mask=torch.ones_like(gt.clean_tokens)).get(c)
        for c in ("tok_embed", "m0")]),
        atol=ATOL, rtol=0)


def test_component_lens_own_scale(model, gt, years, gt_run):
    _, cache = gt_run
    own = D.component_logit_lens(model, gt.clean_tokens, gt.answer_pos, years, cache=cache,
                                  scale="own", per_head=False)
    e = at_pos(cache["hook_embed"], gt.answer_pos)
    e = e - e.mean(-1, keepdim=True)
    e = e / (e.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
    torch.testing.assert_close(own.get("tok_embed"), e @ model.W_U[:, years].detach(), atol=ATOL,
                               rtol=0)
    assert "bias.b_U" not in own.labels


# ------------------------------------------------------------------------- metrics

def test_logit_diff_attribution_ioi_is_exact(model, ioi):
    with torch.no_grad():
        logits = model(ioi.clean_tokens)
    d = D.direct_logit_attribution(model, ioi.clean_tokens, ioi.answer_pos, ioi.candidate_ids)
    correct = ioi.candidate_ids[:, 0]
    wrong = ioi.candidate_ids[:, 1]
    assert (ioi.candidate_sign[:, 0] == 1).all() and (ioi.candidate_sign[:, 1] == -1).all()
    ld = D.logit_diff_attribution(d, correct, wrong)
    assert ld.shape == (len(d.labels), len(ioi))
    torch.testing.assert_close(ld.sum(0), ioi.metric(logits, per_example=True), atol=ATOL, rtol=0)
    m = D.task_metric_attribution(model, ioi)
    assert m.exact
    torch.testing.assert_close(m.values.sum(0), ioi.metric(logits, per_example=True), atol=ATOL,
                               rtol=0)
    torch.testing.assert_close(m.values, ld, atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="not among"):
        D.logit_diff_attribution(d, [0], wrong)


def test_greater_than_linearisation_uses_the_true_gradient(model, gt, gt_run):
    logits = at_pos(gt_run[0], gt.answer_pos).detach().requires_grad_(True)
    gt.metric(logits, per_example=True).sum().backward()
    g = logits.grad                                                  # [B, V]
    m = D.task_metric_attribution(model, gt)
    assert not m.exact
    torch.testing.assert_close(m.metric, gt.metric(logits.detach(), per_example=True), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(m.weights, g.gather(-1, gt.candidate_ids), atol=1e-6, rtol=0)
    torch.testing.assert_close(m.values.sum(0), (g * logits.detach()).sum(-1), atol=ATOL, rtol=0)
    # the logit-score variant: mean logit of later years minus earlier years, exactly
    s = D.task_metric_attribution(model, gt, linearise=False)
    cand = logits.detach().gather(-1, gt.candidate_ids)
    pos, neg = gt.candidate_sign > 0, gt.candidate_sign < 0
    want = (cand * pos).sum(-1) / pos.sum(-1) - (cand * neg).sum(-1) / neg.sum(-1)
    torch.testing.assert_close(s.values.sum(0), want, atol=ATOL, rtol=0)


def test_direct_path_removal(model, gt, ioi, gt_run):
    # logit differences are linear: removing a direct path removes exactly its DLA
    torch.testing.assert_close(D.direct_path_removal(model, ioi).values,
                               D.task_metric_attribution(model, ioi).values, atol=ATOL, rtol=0)
    # probability difference: rebuild the logits without MLP l's direct path by hand
    logits, cache = gt_run
    r = D.direct_path_removal(model, gt, cache=cache, per_head=False)
    metric = gt.metric(logits, per_example=True)
    torch.testing.assert_close(r.metric, metric, atol=1e-5, rtol=0)
    L = model.cfg.n_layers
    scale = at_pos(cache["ln_final.hook_scale"], gt.answer_pos)
    for l in range(L):
        x = at_pos(cache[f"blocks.{L - 1}.hook_resid_post"] - cache[f"blocks.{l}.hook_mlp_out"],
                   gt.answer_pos)
        without = ((x - x.mean(-1, keepdim=True)) / scale) @ model.W_U + model.b_U
        torch.testing.assert_close(r.values[r.labels.index(f"m{l}")],
                                   metric - gt.metric(without.detach(), per_example=True),
                                   atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="chunk"):
        D.direct_path_removal(model, gt, chunk=0)


# ------------------------------------------------------------------------- bad input

def _no_forward(model, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a forward pass ran before input validation")
    monkeypatch.setattr(model, "run_with_cache", boom)


def test_bad_input_fails_before_forward(model, gt, years, monkeypatch):
    _no_forward(model, monkeypatch)
    T = gt.clean_tokens.shape[1]
    with pytest.raises(ValueError, match="pos 99 out of range"):
        LL.logit_lens(model, gt.clean_tokens, 99, years)
    bad = gt.answer_pos.clone()
    bad[3] = T
    with pytest.raises(ValueError, match=r"pos\[3\]"):
        D.direct_logit_attribution(model, gt.clean_tokens, bad, years)
    with pytest.raises(ValueError, match="shape"):
        LL.logit_lens(model, gt.clean_tokens, gt.answer_pos[:2], years)
    at = gt.answer_pos
    with pytest.raises(ValueError, match="outside the vocabulary"):
        LL.logit_lens(model, gt.clean_tokens, at, [1, model.cfg.d_vocab])
    with pytest.raises(ValueError, match="non-negative"):
        D.direct_logit_attribution(model, gt.clean_tokens, at, [-1])
    with pytest.raises(ValueError, match="token_ids is required"):
        D.direct_logit_attribution(model, gt.clean_tokens, at, None)
    with pytest.raises(ValueError, match="scale"):
        LL.logit_lens(model, gt.clean_tokens, at, years, scale="mean")
    with pytest.raises(ValueError, match=r"pos\[0\] = 12 is a padded position"):
        LL.logit_lens(model, gt.clean_tokens, -1, years)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        LL.logit_lens(model, gt.clean_tokens + model.cfg.d_vocab, -1, years)


def test_cache_from_other_tokens_is_refused(model, gt, ioi, years):
    with torch.no_grad():
        _, cache = model.run_with_cache(ioi.clean_tokens)
    with pytest.raises(ValueError, match="cache must come from these tokens"):
        LL.logit_lens(model, gt.clean_tokens, -1, years, cache=cache)
    # same shape, other tokens: caught by the token ids read back from the cache
    with pytest.raises(ValueError, match="token embeddings differ from this model's embedding"):
        D.direct_logit_attribution(model, ioi.corrupted_tokens, -1, years, cache=cache)
    # a cache without hook_embed cannot be matched: refused, not silently used
    with torch.no_grad():
        _, partial = model.run_with_cache(ioi.clean_tokens,
                                          names_filter=lambda n: "hook_embed" not in n)
    with pytest.raises(ValueError, match="cannot tell which tokens"):
        LL.logit_lens(model, ioi.corrupted_tokens, -1, years, cache=partial)
    # a cache that records its tokens is compared by id
    partial.tokens = ioi.clean_tokens
    LL.logit_lens(model, ioi.clean_tokens, -1, years, cache=partial)
    with pytest.raises(ValueError, match="not these tokens"):
        LL.logit_lens(model, ioi.corrupted_tokens, -1, years, cache=partial)


@pytest.mark.parametrize("cfg", [
    # what load_encoder("offline") really carries: architecture set, original_architecture None
    {"architecture": "BertForMaskedLM", "original_architecture": None},
    {"original_architecture": "RobertaForMaskedLM"},
])
def test_encoder_is_refused(cfg):
    """A BERT-style model is refused by name before anything runs; a stand-in carrying the
    encoder bridge's config fields keeps this test from loading MiniLM (about 10 s)."""
    def boom(*a, **k):
        raise AssertionError("a forward pass ran")
    enc = types.SimpleNamespace(cfg=types.SimpleNamespace(d_vocab=10, n_ctx=8, n_layers=1, **cfg),
                                W_U=torch.zeros(2, 10), tutorial_model_name="minilm-l6",
                                run_with_cache=boom)
    toks = torch.zeros(1, 4, dtype=torch.long)
    for fn in (lambda: LL.logit_lens(enc, toks, -1),
               lambda: D.direct_logit_attribution(enc, toks, -1, [1]),
               lambda: D.component_logit_lens(enc, toks, -1)):
        with pytest.raises(ValueError, match="encoder"):
            fn()


# ------------------------------------------------------------------------- plots

def test_plots(model, gt, years, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    r = LL.logit_lens(model, gt.clean_tokens, gt.answer_pos, years)
    fig = plotting.plot_logit_lens(r, token_labels=[f"{y:02d}" for y in range(100)])
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel() and len(fig.axes) == 2
    assert [t.get_text() for t in ax.get_yticklabels()] == r.labels
    fig.savefig(tmp_path / "lens.png")
    m = D.task_metric_attribution(model, gt)
    fig = plotting.plot_dla(m, title="Greater-Than")
    assert len(fig.axes) == 3 and all(a.get_xlabel() for a in fig.axes[:2])
    fig.savefig(tmp_path / "dla.png")
    fig = plotting.plot_dla(D.logit_diff_attribution(
        D.direct_logit_attribution(model, gt.clean_tokens, gt.answer_pos, years),
        [years[60].item()], [years[10].item()]),
        labels=D.direct_logit_attribution(model, gt.clean_tokens, gt.answer_pos, years).labels,
        shared_scale=False)
    assert "own colour scale" in fig.axes[0].get_title()
    fig.savefig(tmp_path / "dla2.png")
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_logit_lens(r, token_labels=["a"])
    d = D.direct_logit_attribution(model, gt.clean_tokens, gt.answer_pos, years)
    fig = plotting.plot_logit_lens(d, example=0, mark=gt.meta["yy"][0] + 0.5, rows=["m0", "a0.h1"])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["m0", "a0.h1"]
    with pytest.raises(ValueError, match="value='logit'"):
        plotting.plot_logit_lens(d, value="prob")
    with pytest.raises(ValueError, match="unknown rows"):
        plotting.plot_logit_lens(d, rows=["m9"])
