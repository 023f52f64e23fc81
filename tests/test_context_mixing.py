"""Invariant tests for tutorial_utils.context_mixing, on both architectures: the GPT-2-style
decoder (pre-LN, causal; the ``model`` fixture) and the BERT-architecture MiniLM encoder
(post-LN)."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import context_mixing as cm
from tutorial_utils.context_mixing.evaluation import cue_ranking, sva_cue_examples


@pytest.fixture(scope="module")
def encoder():
    from tutorial_utils.models import load_encoder

    return load_encoder("offline", device="cpu", verbose=False)


@pytest.fixture(scope="module")
def dec_tokens(model):
    return model.to_tokens("The keys on the cabinet")


@pytest.fixture(scope="module")
def enc_tokens(encoder):
    return encoder.to_tokens("The keys on the cabinet [MASK] red.")


@pytest.fixture(params=["decoder", "encoder"])
def arch(request, model, encoder, dec_tokens, enc_tokens):
    return (model, dec_tokens) if request.param == "decoder" else (encoder, enc_tokens)


def test_layout(model, encoder):
    assert cm.layout(model) == "pre_ln"
    assert cm.layout(encoder) == "post_ln"


def test_decomposition_sums_to_attention_block_output(arch):
    model, toks = arch
    for layer in range(model.cfg.n_layers):
        dec = cm.decompose_attention_block(model, toks, layer, per_head=True)
        B, T = toks.shape
        assert dec.per_source.shape == (B, T, T, model.cfg.d_model)
        recon = dec.per_source.sum(2) + dec.bias
        torch.testing.assert_close(recon, dec.output, atol=1e-4, rtol=0)
        # per-head pieces, summed over heads and sources, are the attention output minus b_O
        it = cm.collect_internals(model, toks)[layer]
        z = dec.per_head.sum(dim=(1, 3)) + it.b_O
        x_plus_attn = it.ln1_in if cm.layout(model) == "post_ln" else it.attn_block_out
        torch.testing.assert_close(z + it.resid_pre, x_plus_attn, atol=1e-4, rtol=0)


def test_decomposition_is_not_trivially_true(model, dec_tokens):
    """Dropping the residual breaks the sum: the test above could fail."""
    dec = cm.decompose_attention_block(model, dec_tokens, 0)
    T = dec_tokens.shape[1]
    no_res = dec.per_source.clone()
    no_res[:, range(T), range(T)] -= cm.collect_internals(model, dec_tokens)[0].resid_pre
    assert (no_res.sum(2) + dec.bias - dec.output).abs().max() > 1e-2


def test_every_method_shape_and_normalisation(arch):
    model, toks = arch
    L, T = model.cfg.n_layers, toks.shape[1]
    for name in cm.methods_for(model):
        out = cm.compute_mixing(model, toks[0], name)
        assert out.shape == (L, T, T), name
        assert (out >= -1e-6).all(), name
        torch.testing.assert_close(out.sum(-1), torch.ones(L, T), atol=1e-5, rtol=0,
                                   msg=f"{name}: rows must sum to 1")
        if cm.layout(model) == "pre_ln":  # causal: nothing flows from later tokens
            assert out.triu(1).abs().max() < 1e-6, name
    batched = cm.compute_mixing(model, toks.repeat(2, 1), "alti")
    assert batched.shape == (2, L, T, T)


def test_per_head_attention(arch):
    model, toks = arch
    per_head = cm.raw_attention(model, toks[0], per_head=True)
    assert per_head.shape == (model.cfg.n_layers, model.cfg.n_heads, toks.shape[1], toks.shape[1])
    torch.testing.assert_close(per_head.mean(1), cm.raw_attention(model, toks[0]))
    norms = cm.attention_norm(model, toks[0], per_head=True)
    torch.testing.assert_close(norms.sum(-1), torch.ones(norms.shape[:-1]), atol=1e-5, rtol=0)


def test_rollout_rows_sum_to_one_and_matches_products():
    torch.manual_seed(0)
    A = torch.rand(3, 5, 5).softmax(-1)
    R = cm.rollout(A, add_residual=True)
    torch.testing.assert_close(R.sum(-1), torch.ones(3, 5))
    At = 0.5 * A + 0.5 * torch.eye(5)
    torch.testing.assert_close(R[2], At[2] @ At[1] @ At[0])
    torch.testing.assert_close(cm.rollout(torch.eye(4).expand(2, 4, 4))[1], torch.eye(4))


def test_attention_rollout_layer0_is_mixed_attention(arch):
    model, toks = arch
    att = cm.raw_attention(model, toks[0])
    roll = cm.attention_rollout(model, toks[0], residual=True)
    T = toks.shape[1]
    torch.testing.assert_close(roll[0], 0.5 * att[0] + 0.5 * torch.eye(T), atol=1e-6, rtol=0)


def test_globenc_pre_ln_is_rolled_out_res1(model, dec_tokens):
    torch.testing.assert_close(cm.globenc(model, dec_tokens[0]),
                               cm.rollout(cm.attention_norm(model, dec_tokens[0], "res")))


def test_value_zeroing_nothing_zeroed_reproduces_layer_output(arch):
    """With nothing zeroed, the layer-l-start call reproduces the original HF model's block
    outputs (the original weights, not compatibility mode's centred residual stream)."""
    model, toks = arch
    L = model.cfg.n_layers
    out = cm.value_zeroed_outputs(model, toks, [(0, l, -1) for l in range(L)])
    hf = cm.original_hf_model(model)
    with torch.no_grad():
        hs = hf(input_ids=toks, output_hidden_states=True).hidden_states
    for l in range(L):
        want = hs[l + 1][0]
        got = out[l] if (l < L - 1 or cm.layout(model) == "post_ln") else hf.ln_f(out[l])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # zeroing something does change the output
    changed = cm.value_zeroed_outputs(model, toks, [(0, 0, 1)])
    assert (changed[0] - out[0]).abs().max() > 1e-4


def test_value_zeroing_batched_matches_loop(model, encoder, dec_tokens):
    enc_short = encoder.to_tokens("the keys are")
    for m, toks in ((model, dec_tokens), (encoder, enc_short)):
        fast = cm.value_zeroing(m, toks, chunk_size=7)  # small chunks: the chunking is exercised
        slow = cm.value_zeroing_loop(m, toks)
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)


def test_value_zeroing_two_sentences_independent(model):
    a = model.to_tokens("The keys on the cabinet")
    b = model.to_tokens("The dog near the trees")
    both = cm.value_zeroing(model, torch.cat([a, b]))
    torch.testing.assert_close(both[1], cm.value_zeroing(model, b[0]), atol=1e-5, rtol=0)


def test_clear_errors(model, encoder, dec_tokens):
    with pytest.raises(ValueError, match="pre-LN"):
        cm.attention_norm(model, dec_tokens, "res_ln")
    with pytest.raises(ValueError, match="unknown context-mixing method"):
        cm.compute_mixing(model, dec_tokens, "attention_flow")
    with pytest.raises(ValueError, match="variant"):
        cm.attention_norm(model, dec_tokens, "nope")
    with pytest.raises(ValueError, match="out of range"):
        cm.decompose_attention_block(model, dec_tokens, model.cfg.n_layers)
    with pytest.raises(ValueError, match="shape"):
        cm.alti(model, dec_tokens[None])
    with pytest.raises(ValueError, match="at least 2 tokens"):
        cm.alti(model, dec_tokens[:, :1])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        cm.alti(model, torch.tensor([0, model.cfg.d_vocab]))
    with pytest.raises(ValueError, match="out of range"):
        cm.value_zeroed_outputs(model, dec_tokens, [(0, 0, 99)])
    assert "attention_norm_res_ln" not in cm.methods_for(model)
    assert "attention_norm_res_ln" in cm.methods_for(encoder)


def test_sva_cue_examples(model, encoder):
    dec = sva_cue_examples(model, n=6)
    for b in range(len(dec)):
        toks = model.to_str_tokens(dec.tokens[b])
        assert toks[int(dec.cue_pos[b])].strip() == dec.dataset.meta["subject"][b]
        assert toks[int(dec.distractor_pos[b])].strip() == dec.dataset.meta["attractor"][b]
        assert int(dec.query_pos[b]) == dec.tokens.shape[1] - 1
        assert int(dec.distractor_pos[b]) < int(dec.query_pos[b])  # relative-clause frame
    canon = sva_cue_examples(model, n=3, decoder_frames="canonical")
    assert (canon.distractor_pos == canon.query_pos).all()
    enc = sva_cue_examples(encoder, n=6)
    for b in range(len(enc)):
        assert int(enc.tokens[b, enc.query_pos[b]]) == encoder.tokenizer.mask_token_id
        words = enc.prompts[b].lower().split()
        pieces = encoder.to_str_tokens(enc.tokens[b])
        assert pieces[int(enc.cue_pos[b])] == words[1]
        assert pieces[int(enc.distractor_pos[b])] == words[4]
    # a map that puts all mass on the subject scores 1, on the attractor 0
    B, T = enc.tokens.shape
    maps = torch.zeros(B, T, T)
    maps[torch.arange(B), enc.query_pos, enc.cue_pos] = 1
    assert cue_ranking(maps, enc).share == 1.0
    assert cue_ranking(maps.transpose(-1, -2), enc).share == 0.0


# --- padding ------------------------------------------------------------------------------------
def _padded_pair(model, short: str, long: str, left: bool):
    a, b = model.to_tokens(short)[0], model.to_tokens(long)[0]
    pad = model.tokenizer.pad_token_id
    n = b.shape[0] - a.shape[0]
    assert n > 0
    fill = torch.full((n,), pad, dtype=a.dtype)
    a_pad = torch.cat([fill, a]) if left else torch.cat([a, fill])
    mask = torch.ones(2, b.shape[0], dtype=torch.long)
    mask[0, :n] = 0 if left else 1
    if not left:
        mask[0, a.shape[0]:] = 0
    return torch.stack([a_pad, b]), mask, a, b


@pytest.mark.parametrize("method", ["attention", "rollout", "attention_norm",
                                    "attention_norm_res", "attention_norm_res_ln", "globenc",
                                    "alti", "value_zeroing", "value_zeroing_rollout",
                                    "decompx"])
def test_padded_batch_equals_unpadded(model, encoder, method):
    """Encoder: right padding with [PAD], mask inferred. Decoder: left padding with an explicit
    attention_mask, and right padding with the mask inferred (model_checks.padding_mask's rule:
    a trailing run of the pad id, which is also GPT-2's BOS). Real rows equal the unpadded
    sentence's rows; pads get no mass."""
    cases = [(encoder, False, None), (model, True, "mask"), (model, False, None)]
    for m, left, pass_mask in cases:
        if method not in cm.methods_for(m):
            continue
        toks, mask, a, b = _padded_pair(m, "The keys are old.", "The keys on the old cabinet near the door are", left)
        got = cm.compute_mixing(m, toks, method, attention_mask=mask if pass_mask else None)
        alone = cm.compute_mixing(m, a, method)
        real = mask[0].bool()
        sub = got[0][:, real][:, :, real]
        torch.testing.assert_close(sub, alone, atol=1e-5, rtol=0, msg=f"{method} padded row")
        assert got[0][:, ~real].abs().max() == 0 and got[0][:, :, ~real].abs().max() == 0
        torch.testing.assert_close(got[1], cm.compute_mixing(m, b, method), atol=1e-5, rtol=0)


def test_padding_changes_numbers_without_the_mask(encoder):
    """Running a padded encoder batch with an all-ones mask gives different numbers: the
    padding test above could fail."""
    toks, mask, a, _ = _padded_pair(encoder, "The keys are old.", "The keys on the old cabinet near the door are", False)
    wrong = cm.alti(encoder, toks, attention_mask=torch.ones_like(mask))
    real = mask[0].bool()
    assert (wrong[0][:, real][:, :, real] - cm.alti(encoder, a)).abs().max() > 1e-3


def test_padded_decoder_batch_without_mask_is_refused(model):
    toks, mask, _, _ = _padded_pair(model, "The keys are old.", "The keys on the old cabinet near the door are", True)
    for fn in (cm.alti, cm.value_zeroing, cm.raw_attention, cm.globenc):
        with pytest.raises(ValueError, match="attention_mask"):
            fn(model, toks)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        cm.alti(model, toks, attention_mask=mask[:, 1:])
    with pytest.raises(ValueError, match="only 0"):
        cm.alti(model, toks, attention_mask=mask * 2)


# --- DecompX ------------------------------------------------------------------------------------
def test_decompx_sums_to_hidden_state_every_layer(encoder):
    """Modarressi et al. 2023: the per-input-token vectors sum to the real hidden state after
    every layer (checked against the original HF model's hidden states)."""
    toks = encoder.to_tokens("The keys on the cabinet [MASK] red.")
    res = cm.decompx_decomposition(encoder, toks)
    hf = cm.original_hf_model(encoder)
    with torch.no_grad():
        hs = hf(input_ids=toks, output_hidden_states=True).hidden_states
    for l, a in enumerate(res.per_token):
        assert a.shape == (1, toks.shape[1], toks.shape[1], encoder.cfg.d_model)
        torch.testing.assert_close(a.sum(2).float(), hs[l + 1], atol=1e-4, rtol=0)
    # each token starts as its own embedding: layer-0 contributions are far from uniform
    m = cm.decompx(encoder, toks[0])
    assert m.shape == (encoder.cfg.n_layers, toks.shape[1], toks.shape[1])
    torch.testing.assert_close(m.sum(-1), torch.ones(m.shape[:-1]), atol=1e-5, rtol=0)
    assert (m[0].diagonal() > 0.2).all()


def test_decompx_invariant_can_fail(encoder):
    """Dropping the bias shares breaks the sum: the invariant above is not trivially true."""
    import importlib

    dx = importlib.import_module("tutorial_utils.context_mixing.decompx")

    toks = encoder.to_tokens("The keys are old.")
    orig = dx._share_bias
    try:
        dx._share_bias = lambda a, bias, real: a
        res = cm.decompx_decomposition(encoder, toks)
    finally:
        dx._share_bias = orig
    assert (res.per_token[0].sum(2) - res.hidden[0]).abs().max() > 1e-2


def test_decompx_refuses_decoder(model, dec_tokens):
    with pytest.raises(ValueError, match="post-LN"):
        cm.decompx(model, dec_tokens)
    with pytest.raises(ValueError, match="not defined"):
        cm.compute_mixing(model, dec_tokens, "decompx")
