"""Invariants of tutorial_utils.patching, and a cross-check against transformer_lens.patching
(an independent implementation: one forward per component, with TransformerLens's own setters)."""

from __future__ import annotations

import pytest
import torch

import transformer_lens.patching as tlp
from tutorial_utils import patching as P
from tutorial_utils.tasks import TaskDataset, make_task

ATOL = 1e-5


@pytest.fixture(scope="module")
def gt(hooked_model):
    return make_task("greater_than", hooked_model, n=4, seed=0)


@pytest.fixture(scope="module")
def pair(hooked_model):
    """Short random prompt pairs that differ at two positions, and a logit-difference metric."""
    g = torch.Generator().manual_seed(0)
    V = hooked_model.cfg.d_vocab
    clean = torch.randint(0, V, (3, 6), generator=g)
    corr = clean.clone()
    corr[:, 2] = torch.randint(0, V, (3,), generator=g)
    corr[:, 4] = torch.randint(0, V, (3,), generator=g)

    def metric(logits):
        return (logits[:, -1, 5] - logits[:, -1, 7]).mean()

    def per_example(logits, ds):  # the package's contract: one run [B, T, V] -> [B]
        return logits[:, -1, 5] - logits[:, -1, 7]

    return TaskDataset.from_tokens(clean, corr, per_example), metric


def _cache(model, tokens):
    with torch.no_grad():
        return model.run_with_cache(tokens)[1]


# TL function, our site, our axes (in TL's output order)
TL_SWEEPS = [
    (tlp.get_act_patch_resid_pre, "resid_pre", ("layer", "pos")),
    (tlp.get_act_patch_resid_mid, "resid_mid", ("layer", "pos")),
    (tlp.get_act_patch_attn_out, "attn_out", ("layer", "pos")),
    (tlp.get_act_patch_mlp_out, "mlp_out", ("layer", "pos")),
    (tlp.get_act_patch_attn_head_out_by_pos, "z", ("layer", "pos", "head")),
    (tlp.get_act_patch_attn_head_q_by_pos, "q", ("layer", "pos", "head")),
    (tlp.get_act_patch_attn_head_out_all_pos, "z", ("layer", "head")),
    (tlp.get_act_patch_attn_head_q_all_pos, "q", ("layer", "head")),
    (tlp.get_act_patch_attn_head_k_all_pos, "k", ("layer", "head")),
    (tlp.get_act_patch_attn_head_v_all_pos, "v", ("layer", "head")),
    (tlp.get_act_patch_attn_head_pattern_all_pos, "pattern", ("layer", "head")),
    (tlp.get_act_patch_attn_head_pattern_by_pos, "pattern", ("layer", "head", "dest_pos")),
]


@pytest.mark.parametrize("tl_fn,site,by", TL_SWEEPS, ids=[f"{s}-{'x'.join(b)}" for _, s, b in TL_SWEEPS])
def test_sweep_matches_transformer_lens_denoising(hooked_model, pair, tl_fn, site, by):
    data, metric = pair
    clean, corr = data.clean_tokens, data.corrupted_tokens
    ours = P.patching_sweep(hooked_model, data, site, by, direction="denoise", progress=False)
    with torch.no_grad():
        ref = tl_fn(hooked_model, corr, _cache(hooked_model, clean), metric)
    assert ours.values.shape == ref.shape
    torch.testing.assert_close(ours.values, ref.float().cpu(), atol=ATOL, rtol=0)
    # the sweep must actually move the metric somewhere (else the comparison is vacuous)
    assert (ref - float(ours.metric_corrupted)).abs().max() > 1e-3


def test_noising_heads_match_transformer_lens_on_greater_than(hooked_model, gt):
    """Noising = TL's function with the roles of the two runs swapped; our TaskDataset metric is
    evaluated vectorised over the stacked variants, TL's once per forward."""
    ours = P.patching_sweep(hooked_model, gt, "z", ("layer", "head"), progress=False)
    with torch.no_grad():
        ref = tlp.get_act_patch_attn_head_out_all_pos(
            hooked_model, gt.clean_tokens, _cache(hooked_model, gt.corrupted_tokens),
            lambda lg: gt.metric(lg))
    torch.testing.assert_close(ours.values, ref.float().cpu(), atol=ATOL, rtol=0)


def test_skipping_noops_is_exact(hooked_model, gt):
    a = P.patching_sweep(hooked_model, gt, "resid_pre", ("layer", "pos"), progress=False)
    b = P.patching_sweep(hooked_model, gt, "resid_pre", ("layer", "pos"), progress=False,
                         skip_noops=False, batch_rows=7)
    torch.testing.assert_close(a.values, b.values, atol=ATOL, rtol=0)


@pytest.mark.parametrize("site,by", [("resid_pre", ("layer", "pos")), ("z", ("layer", "head")),
                                     ("pattern", ("layer", "head"))])
def test_patching_clean_into_clean_changes_nothing(hooked_model, gt, site, by):
    same = TaskDataset.from_tokens(gt.clean_tokens, gt.clean_tokens,
                                   lambda lg, ds: gt.metric(lg, per_example=True))
    res = P.patching_sweep(hooked_model, same, site, by, skip_noops=False, progress=False)
    with torch.no_grad():
        m_clean = float(gt.metric(hooked_model(gt.clean_tokens)))
    torch.testing.assert_close(res.values, torch.full_like(res.values, m_clean), atol=ATOL, rtol=0)


def test_whole_residual_at_last_layer_gives_the_other_run(hooked_model, gt):
    noise = P.patching_sweep(hooked_model, gt, "resid_post", ("layer",), progress=False)
    denoise = P.patching_sweep(hooked_model, gt, "resid_post", ("layer",), direction="denoise",
                               progress=False)
    assert abs(float(noise.values[-1] - noise.metric_corrupted)) < ATOL
    assert abs(float(denoise.values[-1] - denoise.metric_clean)) < ATOL
    assert abs(float(noise.metric_clean - noise.metric_corrupted)) > 1e-4
    n = noise.normalized()
    assert abs(float(n[-1])) < 1e-3


def test_per_example_values_average_to_the_mean(hooked_model, gt):
    a = P.patching_sweep(hooked_model, gt, "mlp_out", ("layer",), progress=False)
    b = P.patching_sweep(hooked_model, gt, "mlp_out", ("layer",), per_example=True, progress=False)
    assert b.values.shape == (hooked_model.cfg.n_layers, len(gt))
    torch.testing.assert_close(b.values.mean(-1), a.values, atol=ATOL, rtol=0)


def test_setters_patch_exactly_the_indexed_slice():
    g = torch.Generator().manual_seed(1)
    act, src = torch.randn(2, 5, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g)
    out = P.set_heads(act, src, head=1, pos=3)
    exp = act.clone()
    exp[:, 3, 1] = src[:, 3, 1]
    assert torch.equal(out, exp) and not torch.equal(act, exp)
    out = P.set_positions(act[..., 0, :], src[..., 0, :], pos=[0, 4])
    exp = act[..., 0, :].clone()
    exp[:, [0, 4]] = src[:, [0, 4], 0]
    assert torch.equal(out, exp)
    pat, psrc = torch.rand(2, 3, 5, 5, generator=g), torch.rand(2, 3, 5, 5, generator=g)
    out = P.set_pattern_rows(pat, psrc, head=2, dest=4)
    exp = pat.clone()
    exp[:, 2, 4] = psrc[:, 2, 4]
    assert torch.equal(out, exp)
    # stacked: variant i patches head i of every example
    stacked = act.repeat(3, 1, 1, 1)
    mask = torch.zeros(3, 1, 3, 1, dtype=torch.bool)
    for i in range(3):
        mask[i, 0, i] = True
    out = P.masked_set(stacked, src, mask).view(3, 2, 5, 3, 4)
    for i in range(3):
        exp = act.clone()
        exp[:, :, i] = src[:, :, i]
        assert torch.equal(out[i], exp)


def test_ablations_match_hand_written_hooks(hooked_model, gt):
    m, toks = hooked_model, gt.clean_tokens

    def zero_head(act, hook):
        act = act.clone()
        act[:, :, 2] = 0
        return act

    with torch.no_grad():
        ref = m.run_with_hooks(toks, fwd_hooks=[("blocks.1.attn.hook_z", zero_head)])
    torch.testing.assert_close(P.ablate(m, toks, ["a1.h2"], "zero"), ref, atol=ATOL, rtol=0)

    _, ref_acts = P.get_activations(m, gt.corrupted_tokens, ["blocks.2.hook_mlp_out"])
    mean = ref_acts["blocks.2.hook_mlp_out"].mean(0, keepdim=True)
    with torch.no_grad():
        ref = m.run_with_hooks(toks, fwd_hooks=[("blocks.2.hook_mlp_out",
                                                 lambda a, hook: mean.expand_as(a).clone())])
    out = P.ablate(m, toks, ["m2"], "mean", reference_tokens=gt.corrupted_tokens)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)

    # resample-ablating the embedding (residual entering block 0) is the corrupted run
    out = P.ablate(m, toks, ["embed"], "corrupted", corrupted_tokens=gt.corrupted_tokens)
    with torch.no_grad():
        torch.testing.assert_close(out, m(gt.corrupted_tokens), atol=ATOL, rtol=0)


def test_component_parsing_and_names():
    assert P.Component.parse("a1.h2") == P.Component("result", 1, 2)
    assert P.Component.parse("m3") == P.Component("mlp_out", 3)
    assert P.Component.parse("embed") == P.Component("resid_pre", 0)
    assert P.Component.parse("q.2.1@5") == P.Component("q", 2, 1, 5)
    assert str(P.Component("result", 1, 2)) == "a1.h2" and str(P.Component("z", 1, 2)) == "z.1.2"
    assert P.Component("z", 1, 2).hook_name == "blocks.1.attn.hook_z"
    with pytest.raises(ValueError, match="cannot parse"):
        P.Component.parse("head 1")
    with pytest.raises(ValueError, match="unknown site"):
        P.Component("mlp_in", 0)
    with pytest.raises(ValueError, match="has no heads"):
        P.Component("resid_pre", 0, head=1)


def test_bad_input_gets_a_clear_error(hooked_model, gt):
    m = hooked_model
    with pytest.raises(ValueError, match="unknown site"):
        P.patching_sweep(m, gt, "attn", ("layer",))
    with pytest.raises(ValueError, match="invalid for site"):
        P.patching_sweep(m, gt, "resid_pre", ("layer", "head"))
    with pytest.raises(ValueError, match="differ in shape"):
        TaskDataset.from_tokens(gt.clean_tokens, gt.corrupted_tokens[:, :-1],
                                lambda lg, ds: lg.mean())
    with pytest.raises(ValueError, match="TaskDataset.from_tokens"):
        P.patching_sweep(m, (gt.clean_tokens, gt.corrupted_tokens), "z", ("layer",))
    with pytest.raises(ValueError, match="direction"):
        P.patching_sweep(m, gt, "z", ("layer",), direction="sideways")
    with pytest.raises(ValueError, match="out of range"):
        P.ablate(m, gt.clean_tokens, ["a9.h0"], "zero")
    with pytest.raises(ValueError, match="out of range"):
        P.ablate(m, gt.clean_tokens, ["a0.h0@99"], "zero")
    with pytest.raises(ValueError, match="ablation must be one of"):
        P.ablate(m, gt.clean_tokens, ["a0.h0"], "median")
    with pytest.raises(ValueError, match="corrupted_tokens"):
        P.ablate(m, gt.clean_tokens, ["a0.h0"], "corrupted")
