"""Padded batches give the unpadded numbers (issue 23): every method that takes a batch, on an
encoder row padded with [PAD] (right and left) and a decoder row padded with BOS (left, with
attention_mask; right, found from the trailing BOS run), equals the same sentence run alone at
its real positions, and scores 0 (or holds NaN, for activations) at the padded ones."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import dla as D
from tutorial_utils import input_attribution as A
from tutorial_utils import logit_lens as LL
from tutorial_utils import probing as P
from tutorial_utils.concept_erasure import random_eraser, run_with_eraser
from tutorial_utils.errors import TutorialError
from tutorial_utils.model_checks import forward_attention_mask, padding_mask

ATOL = 2e-4
N_PAD = 3


@pytest.fixture(scope="module")
def encoder():
    from tutorial_utils.models import load_encoder

    return load_encoder("tiny-bert-tasks", device="cpu", verbose=False)


@pytest.fixture(scope="module")
def enc_case(encoder):
    toks = encoder.to_tokens("the keys to the cabinet [MASK] on the table")
    pos = int((toks[0] == encoder.tokenizer.mask_token_id).nonzero()[0, 0])
    are = encoder.tokenizer.convert_tokens_to_ids("are")
    return toks, pos, are


@pytest.fixture(scope="module")
def dec_case(model):
    toks = model.to_tokens("The keys on the cabinet")
    are, is_ = model.to_single_token(" are"), model.to_single_token(" is")
    return toks, are, is_


def _pad(toks, pad_id, side):
    pad = torch.full((1, N_PAD), pad_id, dtype=toks.dtype)
    ones = torch.ones(1, N_PAD + toks.shape[1], dtype=torch.long)
    if side == "right":
        ones[:, toks.shape[1]:] = 0
        return torch.cat([toks, pad], 1), ones, slice(0, toks.shape[1])
    ones[:, :N_PAD] = 0
    return torch.cat([pad, toks], 1), ones, slice(N_PAD, N_PAD + toks.shape[1])


# ------------------------------------------------------------------------------- encoder

@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("method", ["saliency", "grad_x_input", "integrated_gradients",
                                    "occlusion"])
def test_encoder_padded_row_equals_the_sentence(encoder, enc_case, side, method):
    toks, pos, are = enc_case
    padded, mask, real = _pad(toks, encoder.tokenizer.pad_token_id, side)
    kw = {"n_steps": 16} if method == "integrated_gradients" else {}
    alone = A.attribute(encoder, toks, A.logit_target(are, pos=pos), method, **kw)
    shift = pos + (N_PAD if side == "left" else 0)
    # the [PAD] ids are found without a mask, and the explicit mask gives the same numbers
    for am in (None, mask):
        got = A.attribute(encoder, padded, A.logit_target(are, pos=shift), method,
                          attention_mask=am, **kw)
        torch.testing.assert_close(got[:, real], alone, atol=ATOL, rtol=1e-3)
        pads = torch.ones(padded.shape[1], dtype=torch.bool)
        pads[real] = False
        assert float(got[:, pads].abs().max()) == 0.0


def test_encoder_activations_of_a_padded_row(encoder, enc_case):
    toks, pos, _ = enc_case
    padded, _, real = _pad(toks, encoder.tokenizer.pad_token_id, "right")
    name = f"blocks.{encoder.cfg.n_layers - 1}.hook_resid_post"
    alone = P.collect_activations(encoder, toks, name)[name]
    got = P.collect_activations(encoder, padded, name)[name]
    torch.testing.assert_close(got[:, real], alone, atol=ATOL, rtol=1e-3)
    assert torch.isnan(got[:, real.stop:]).all()
    at = P.collect_activations(encoder, padded, name, pos=pos)[name]
    torch.testing.assert_close(at, alone[:, pos], atol=ATOL, rtol=1e-3)
    with pytest.raises(TutorialError, match="is a padded position"):
        P.collect_activations(encoder, padded, name, pos=-1)


# ------------------------------------------------------------------------------- decoder

def test_decoder_padding_rule(model, dec_case):
    toks, _, _ = dec_case
    bos = model.tokenizer.bos_token_id
    right, _, _ = _pad(toks, bos, "right")
    left, mask, _ = _pad(toks, bos, "left")
    m = padding_mask(model, right)
    assert m is not None and m[0, :toks.shape[1]].all() and not m[0, toks.shape[1]:].any()
    assert forward_attention_mask(model, m) is None  # causal: right padding changes nothing
    with pytest.raises(TutorialError, match="pad id 0 at position 1, before real tokens"):
        padding_mask(model, left)
    got = padding_mask(model, left, mask)
    assert torch.equal(got, mask.bool())
    assert torch.equal(forward_attention_mask(model, got), mask)
    assert padding_mask(model, left, torch.ones_like(left)) is None  # "every token is real"


@pytest.mark.parametrize("method", ["saliency", "grad_x_input", "integrated_gradients",
                                    "occlusion"])
def test_decoder_left_padded_row_with_its_mask(model, dec_case, method):
    toks, are, is_ = dec_case
    left, mask, real = _pad(toks, model.tokenizer.bos_token_id, "left")
    kw = {"n_steps": 16} if method == "integrated_gradients" else {}
    target = A.contrastive_target(are, is_)
    alone = A.attribute(model, toks, target, method, **kw)
    got = A.attribute(model, left, target, method, attention_mask=mask, **kw)
    torch.testing.assert_close(got[:, real], alone, atol=ATOL, rtol=1e-3)
    assert float(got[:, :N_PAD].abs().max()) == 0.0
    with pytest.raises(TutorialError, match="pass attention_mask"):
        A.attribute(model, left, target, method, **kw)


def test_decoder_right_padded_row_and_a_target_on_padding(model, dec_case):
    toks, are, is_ = dec_case
    right, _, real = _pad(toks, model.tokenizer.bos_token_id, "right")
    last = toks.shape[1] - 1
    alone = A.saliency(model, toks, A.contrastive_target(are, is_))
    got = A.saliency(model, right, A.contrastive_target(are, is_, pos=last))
    torch.testing.assert_close(got[:, real], alone, atol=1e-5, rtol=1e-4)
    # a built target's position is checked at entry, before any forward pass
    with pytest.raises(TutorialError, match=r"the target's position\[0\] = \d+ is a padded"):
        A.saliency(model, right, A.contrastive_target(are, is_))  # pos=-1 is a pad
    # a hand-written target reading padding is caught when it is evaluated
    def by_hand(out):
        return out[:, -1, are] - out[:, -1, is_]
    with pytest.raises(TutorialError, match="target_fn read a padded position"):
        A.saliency(model, right, by_hand)


def test_logit_lens_and_dla_on_a_left_padded_row(model, dec_case):
    toks, are, is_ = dec_case
    left, mask, _ = _pad(toks, model.tokenizer.bos_token_id, "left")
    alone = LL.logit_lens(model, toks, -1, [are, is_])
    got = LL.logit_lens(model, left, -1, [are, is_], attention_mask=mask)
    torch.testing.assert_close(got.logits, alone.logits, atol=ATOL, rtol=1e-4)
    with pytest.raises(TutorialError, match="pass attention_mask"):
        LL.logit_lens(model, left, -1, [are, is_])
    d_alone = D.direct_logit_attribution(model, toks, -1, [are, is_])
    d_got = D.direct_logit_attribution(model, left, -1, [are, is_], attention_mask=mask)
    torch.testing.assert_close(d_got.values, d_alone.values, atol=ATOL, rtol=1e-4)
    # a cache of a left-padded run cannot be checked for its mask: refused
    with torch.no_grad():
        _, cache = model.run_with_cache(left, attention_mask=mask)
    with pytest.raises(TutorialError, match="pass cache=None and attention_mask"):
        LL.logit_lens(model, left, -1, [are, is_], cache=cache, attention_mask=mask)


def test_probing_and_erasure_on_a_left_padded_row(model, dec_case):
    toks, _, _ = dec_case
    left, mask, real = _pad(toks, model.tokenizer.bos_token_id, "left")
    name = "blocks.2.hook_resid_post"
    alone = P.collect_activations(model, toks, name)[name]
    got = P.collect_activations(model, left, name, attention_mask=mask)[name]
    torch.testing.assert_close(got[:, real], alone, atol=ATOL, rtol=1e-4)
    assert torch.isnan(got[:, :N_PAD]).all()
    u = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    a = P.ablate_direction(model, toks, name, u, pos=-1)
    b = P.ablate_direction(model, left, name, u, pos=-1, attention_mask=mask)
    torch.testing.assert_close(b[:, real], a, atol=ATOL, rtol=1e-4)
    er = random_eraser(model.cfg.d_model, 4, torch.zeros(model.cfg.d_model))
    a = run_with_eraser(model, toks, name, er)
    b = run_with_eraser(model, left, name, er, attention_mask=mask)
    torch.testing.assert_close(b[:, real], a, atol=ATOL, rtol=1e-4)


def test_ig_without_bos_attributes_the_first_word(model, dec_case):
    """keep_first_token keeps an opening BOS only: without BOS the first word is attributed
    (it used to get exactly 0), and completeness holds."""
    toks, are, is_ = dec_case
    no_bos = toks[:, 1:]
    target = A.contrastive_target(are, is_)
    ig = A.integrated_gradients(model, no_bos, target, n_steps=64)
    assert float(ig[0, 0].abs()) > 1e-3
    comp = A.ig_completeness(model, no_bos, target, ig)
    assert float(comp.relative_error.max()) < 0.02
    with_bos = A.integrated_gradients(model, toks, target, n_steps=8)
    assert float(with_bos[0, 0]) == 0.0
    occ = A.occlusion(model, no_bos, target, replacement=model.tokenizer.unk_token_id)
    assert float(occ[0, 0].abs()) > 0


@pytest.mark.parametrize("method", ["saliency", "grad_x_input", "integrated_gradients",
                                    "occlusion"])
def test_two_rows_left_padded_row_keeps_its_own_bos_out(model, dec_case, method):
    """In a batch of a long row and a shorter left-padded one, the short row's opening BOS
    sits in a column where the long row has a word: it is still that row's format token, so
    IG and occlusion score it exactly 0, and every method gives the row alone's numbers (occlusion used to occlude it,
    because its default positions were the columns real in any row)."""
    long, are, is_ = dec_case
    short = model.to_tokens("The key")
    pad = long.shape[1] - short.shape[1]
    assert pad >= 1
    bos = model.tokenizer.bos_token_id
    toks = torch.cat([long, torch.cat([torch.full((1, pad), bos), short], 1)])
    mask = torch.ones_like(toks)
    mask[1, :pad] = 0
    kw = {"n_steps": 16} if method == "integrated_gradients" else {}
    target = A.contrastive_target(are, is_)
    got = A.attribute(model, toks, target, method, attention_mask=mask, **kw)
    alone_short = A.attribute(model, short, target, method, **kw)
    alone_long = A.attribute(model, long, target, method, **kw)
    torch.testing.assert_close(got[1:, pad:], alone_short, atol=ATOL, rtol=1e-3)
    torch.testing.assert_close(got[:1], alone_long, atol=ATOL, rtol=1e-3)
    assert float(got[1, :pad].abs().max()) == 0.0  # padding
    if method in ("integrated_gradients", "occlusion"):  # the row's own BOS is not attributed
        assert float(got[1, pad].abs()) == 0.0 and float(got[0, 0].abs()) == 0.0
    assert float(alone_short[0, 1:].abs().min()) > 0.0  # the words are scored


def test_randomisation_default_mask_is_per_row(model, dec_case):
    long, are, is_ = dec_case
    short = model.to_tokens("The key")
    pad = long.shape[1] - short.shape[1]
    bos = model.tokenizer.bos_token_id
    toks = torch.cat([long, torch.cat([torch.full((1, pad), bos), short], 1)])
    mask = torch.ones_like(toks)
    mask[1, :pad] = 0
    res = A.cascading_randomization(model, toks, A.contrastive_target(are, is_), "saliency",
                                    attention_mask=mask)
    want = torch.ones_like(toks, dtype=torch.bool)
    want[0, 0] = False
    want[1, :pad + 1] = False  # padding and the short row's opening BOS
    assert torch.equal(res.mask, want)
