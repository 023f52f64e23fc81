"""Notebook 02's exercise checks accept the reference solutions and reject the likely mistakes,
naming them (synthetic known-answer cases), also against the real shipped encoder."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import context_mixing as cm
from tutorial_utils.course.checks import nb02


pytestmark = pytest.mark.usefixtures("lenient_checks")


@pytest.fixture(scope="module")
def encoder():
    from tutorial_utils.models import load_encoder

    torch.set_grad_enabled(False)
    m = load_encoder("tiny-bert-tasks")
    yield m
    torch.set_grad_enabled(True)


@pytest.fixture(scope="module")
def enc_tokens(encoder):
    return encoder.to_tokens("The keys on the cabinet [MASK] red.")


# --- rollout ---------------------------------------------------------------------------------

def _rollout_ok(per_layer, add_residual):
    return cm.rollout(per_layer, add_residual=add_residual)


def _rollout_wrong_order(per_layer, add_residual):
    mats = 0.5 * per_layer + 0.5 * torch.eye(per_layer.shape[-1]) if add_residual else per_layer
    out = [mats[0]]
    for l in range(1, mats.shape[0]):
        out.append(out[-1] @ mats[l])
    return torch.stack(out)


def _rollout_no_residual(per_layer, add_residual):
    return cm.rollout(per_layer, add_residual=False)


def test_rollout_check_passes_the_reference():
    assert nb02.check_rollout.judge(_rollout_ok).passed


def test_rollout_check_names_the_wrong_order():
    r = nb02.check_rollout.judge(_rollout_wrong_order)
    assert not r.passed and "wrong order" in r.message


def test_rollout_check_names_a_forgotten_residual():
    r = nb02.check_rollout.judge(_rollout_no_residual)
    assert not r.passed and "0.5 A + 0.5 I" in r.message


def test_rollout_check_wants_every_layer():
    r = nb02.check_rollout.judge(lambda a, res: cm.rollout(a, add_residual=res)[-1])
    assert not r.passed and "[L, T, T]" in r.message


def test_rollout_of_identity_is_identity():
    eye = torch.eye(4).expand(3, 4, 4)
    for res in (False, True):
        assert torch.allclose(cm.rollout(eye, add_residual=res), eye)


# --- attention-norm --------------------------------------------------------------------------

def _sum_of_head_norms(pattern, values, W_O, resid=None):
    f = torch.einsum("jhk,hkd->hjd", values, W_O)
    return (pattern * f.norm(dim=-1)[:, None, :]).sum(0)


def _residual_everywhere(pattern, values, W_O, resid=None):
    z = torch.einsum("hij,hjd->ijd", pattern, torch.einsum("jhk,hkd->hjd", values, W_O))
    if resid is not None:
        z = z + resid[:, None, :]
    return z.norm(dim=-1)


def _no_W_O(pattern, values, W_O, resid=None):
    z = torch.einsum("hij,jhk->ijk", pattern, values)
    return z.norm(dim=-1)


def test_attention_norm_check_passes_the_reference_and_the_real_model(encoder, enc_tokens):
    r = nb02.check_attention_norm.judge(nb02._ref_attention_norm, encoder, enc_tokens)
    assert r.passed, r.message
    assert "all 4 layers" in r.message


def test_attention_norm_equals_attention_when_value_norms_are_equal():
    g = torch.Generator().manual_seed(3)
    pattern = torch.randn(1, 6, 6, generator=g).softmax(-1)
    v = torch.randn(6, 1, 5, generator=g)
    v = v / v.norm(dim=-1, keepdim=True)
    out = cm.row_normalize(nb02._ref_attention_norm(pattern, v, torch.eye(5)[None]))
    assert torch.allclose(out, pattern[0], atol=1e-6)


@pytest.mark.parametrize("fn, words", [(_sum_of_head_norms, "sum of the per-head norms"),
                                       (_residual_everywhere, "only to the piece j == i"),
                                       (_no_W_O, "W_O")])
def test_attention_norm_check_names_the_mistake(fn, words):
    r = nb02.check_attention_norm.judge(fn)
    assert not r.passed and words in r.message, r.message


# --- ALTI ------------------------------------------------------------------------------------

def _alti_l2(pieces, output):
    y = output[:, None]
    c = (y.norm(dim=-1) - (y - pieces).norm(dim=-1)).clamp_min(0)
    return c / c.sum(-1, keepdim=True)


def _alti_norms(pieces, output):
    n = pieces.norm(p=1, dim=-1)
    return n / n.sum(-1, keepdim=True)


def _alti_no_clamp(pieces, output):
    y = output[:, None]
    c = y.abs().sum(-1) - (y - pieces).abs().sum(-1)
    return c / c.sum(-1, keepdim=True)


def test_alti_check_passes_the_reference_and_the_real_model(encoder, enc_tokens):
    r = nb02.check_alti_layer.judge(nb02._ref_alti_layer, encoder, enc_tokens)
    assert r.passed, r.message


@pytest.mark.parametrize("fn, words", [(_alti_l2, "L2"), (_alti_norms, "proximity"),
                                       (_alti_no_clamp, "clamp")])
def test_alti_check_names_the_mistake(fn, words):
    r = nb02.check_alti_layer.judge(fn)
    assert not r.passed and words in r.message, r.message


# --- Value Zeroing ---------------------------------------------------------------------------

def _vz(layer, x, j):
    return nb02._zeroed(layer, x, j)


def test_value_zeroing_check_passes_the_reference_and_the_real_model(encoder, enc_tokens):
    r = nb02.check_value_zeroing_one_token.judge(_vz, encoder, enc_tokens)
    assert r.passed, r.message


@pytest.mark.parametrize("fn, words", [
    (lambda layer, x, j: nb02._zeroed(layer, x, j, keep_bias=True), "bias"),
    (lambda layer, x, j: 1 - nb02._zeroed(layer, x, j), "1 - cos"),
    (lambda layer, x, j: nb02._zeroed(layer, x, j, "key"), "everything changes"),
])
def test_value_zeroing_check_names_the_mistake(fn, words):
    r = nb02.check_value_zeroing_one_token.judge(fn)
    assert not r.passed
    if words != "everything changes":
        assert words in r.message, r.message


def test_value_zeroing_check_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    a = torch.rand(3)
    torch.manual_seed(0)
    nb02.check_value_zeroing_one_token.judge(_vz)
    assert torch.equal(torch.rand(3), a)


# --- cue share per layer ---------------------------------------------------------------------

def _share_ge(maps, q, c, d):
    b = torch.arange(maps.shape[0])
    rows = maps[b, :, q]
    return (rows[b, :, c] >= rows[b, :, d]).float().mean(0)


def _share_columns(maps, q, c, d):
    b = torch.arange(maps.shape[0])
    return (maps[b, :, c, q] > maps[b, :, d, q]).float().mean(0)


def _share_swapped(maps, q, c, d):
    return nb02._ref_share_per_layer(maps, q, d, c)


def test_cue_share_check_passes_the_reference_and_agrees_with_cue_ranking():
    assert nb02.check_cue_share_per_layer.judge(nb02._ref_share_per_layer).passed
    from tutorial_utils.context_mixing.evaluation import CueExamples, cue_ranking

    g = torch.Generator().manual_seed(0)
    maps = torch.randn(8, 3, 6, 6, generator=g).softmax(-1)
    q, c, d = (torch.randint(6, (8,), generator=g) for _ in range(3))
    ex = CueExamples(torch.zeros(8, 6, dtype=torch.long), q, c, d, [""] * 8, [True] * 8, "encoder")
    mine = nb02._ref_share_per_layer(maps, q, c, d)
    assert all(abs(float(mine[l]) - cue_ranking(maps, ex, l).share) < 1e-6 for l in range(3))


@pytest.mark.parametrize("fn, words", [(_share_ge, "a tie is not a win"),
                                       (_share_columns, "not a column"),
                                       (_share_swapped, "swapped")])
def test_cue_share_check_names_the_mistake(fn, words):
    r = nb02.check_cue_share_per_layer.judge(fn)
    assert not r.passed and words in r.message, r.message

