"""Dictionaries (SAEs, transcoders), the unfolded model they read, training and evaluation:
each definition against a plain, independent computation of its formula."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from tutorial_utils.errors import TutorialError
from tutorial_utils.features.dictionary import DictionaryConfig, SparseDictionary, load_dictionary
from tutorial_utils.features.evaluation import (fraction_variance_explained, next_token_loss,
                                                reconstruction_stats, splice_stats)
from tutorial_utils.features.replacement import ReplacementModel
from tutorial_utils.features.training import TrainConfig, dictionary_loss, train_dictionary
from tutorial_utils.features.unfolded import UnfoldedGPT2
from tutorial_utils.paths import DATA_DIR

MODEL_DIR = DATA_DIR / "models" / "tiny-gpt2-tasks"


@pytest.fixture(scope="module")
def lm():
    return UnfoldedGPT2.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def hf():
    return transformers.GPT2LMHeadModel.from_pretrained(str(MODEL_DIR)).eval()


@pytest.fixture(scope="module")
def tokens(lm):
    from tutorial_utils.course.offline_model.corpus import CorpusGenerator

    return torch.tensor(CorpusGenerator(seed=7).batch(lm.tokenizer.get_vocab(), 6))


def _random_dictionary(kind="sae", activation="relu", k=None, seed=0, d=16, n=40):
    d_ = SparseDictionary(DictionaryConfig(kind=kind, d_in=d, d_out=d, n_features=n,
                                           activation=activation, k=k), seed=seed)
    with torch.no_grad():
        for p in (d_.b_enc, d_.b_dec):
            p.normal_(generator=torch.Generator().manual_seed(seed + 1))
        d_.W_enc.mul_(1.7)
    return d_


# --- definitions against plain formulas -------------------------------------------------------
def test_sae_relu_matches_the_formula():
    d = _random_dictionary("sae", "relu")
    x = torch.randn(5, 16)
    W_enc, b_enc, W_dec, b_dec = (t.detach() for t in (d.W_enc, d.b_enc, d.W_dec, d.b_dec))
    f = torch.stack([torch.tensor([max(0.0, float(W_enc[i] @ (xb - b_dec) + b_enc[i]))
                                   for i in range(40)]) for xb in x])
    x_hat = torch.stack([sum(f[b, i] * W_dec[:, i] for i in range(40)) + b_dec for b in range(5)])
    assert torch.allclose(d.encode(x), f, atol=1e-5)
    assert torch.allclose(d(x), x_hat, atol=1e-5)
    assert (f == 0).any() and (f > 0).any()        # the ReLU is exercised


def test_topk_keeps_the_k_largest_preactivations():
    d = _random_dictionary("sae", "topk", k=3)
    x = torch.randn(7, 16)
    pre = ((x - d.b_dec) @ d.W_enc.T + d.b_enc).detach()
    f = d.encode(x).detach()
    for b in range(7):
        order = sorted(range(40), key=lambda i: -float(pre[b, i]))
        expect = torch.zeros(40)
        for i in order[:3]:
            expect[i] = max(0.0, float(pre[b, i]))
        assert torch.allclose(f[b], expect, atol=1e-6)
    assert int((f > 0).sum(-1).max()) <= 3


def test_transcoder_does_not_subtract_its_output_bias():
    d = _random_dictionary("transcoder", "relu")
    x = torch.randn(4, 16)
    assert torch.allclose(d.encode(x), (x @ d.W_enc.T + d.b_enc).relu())


def test_decoder_columns_stay_unit_norm_through_training():
    torch.manual_seed(0)
    d = _random_dictionary("sae", "relu")
    x = torch.randn(512, 16)
    train_dictionary(d, x, x, TrainConfig(steps=30, batch_size=64, l1_coeff=0.1, log_every=10))
    assert torch.allclose(d.W_dec.norm(dim=0), torch.ones(40), atol=1e-5)


def test_loss_matches_the_formula():
    d = _random_dictionary("sae", "relu")
    x = torch.randn(9, 16)
    V = 3.7
    loss, parts = dictionary_loss(d, x, x, V, l1_coeff=0.25)
    f = d.encode(x)
    expect = ((x - d(x)) ** 2).sum(-1).mean() / V + 0.25 * f.abs().sum(-1).mean() / math.sqrt(V)
    assert torch.allclose(loss, expect, atol=1e-6)


def test_training_recovers_a_planted_sparse_dictionary():
    """Data made of 3-sparse combinations of 24 unit directions in 16 dimensions: a TopK SAE
    of 24 features reconstructs it far better than the best rank-3 linear map could."""
    g = torch.Generator().manual_seed(0)
    D = torch.randn(24, 16, generator=g)
    D = D / D.norm(dim=1, keepdim=True)
    idx = torch.stack([torch.randperm(24, generator=g)[:3] for _ in range(4096)])
    coef = torch.zeros(4096, 24).scatter(1, idx, torch.rand(4096, 3, generator=g) + 0.5)
    x = coef @ D
    d = SparseDictionary(DictionaryConfig("sae", 16, 16, 24, "topk", k=3), seed=1)
    train_dictionary(d, x[:3500], x[:3500], TrainConfig(steps=600, batch_size=256, lr=3e-3,
                                                       log_every=1000))
    stats = reconstruction_stats(d, x[3500:], x[3500:])
    # PCA with 3 components (what a 3-dimensional bottleneck without sparsity could do)
    xc = x[:3500] - x[:3500].mean(0)
    _, S, _ = torch.linalg.svd(xc, full_matrices=False)
    pca3 = float((S[:3] ** 2).sum() / (S ** 2).sum())
    assert stats.l0 <= 3.0
    assert stats.fve > 0.9 > pca3 + 0.1


def test_fraction_variance_explained_plain():
    y = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    y_hat = torch.tensor([[1.0, 1.0], [3.0, 2.0]])
    # mean (2, 1); total = (1 + 1) + (1 + 1) = 4; error = 1
    assert fraction_variance_explained(y, y_hat) == pytest.approx(0.75)


def test_save_and_load_round_trip(tmp_path):
    d = _random_dictionary("transcoder", "topk", k=5)
    d.config.layer = 2
    d.save(tmp_path / "tc", metadata={"note": "x"})
    e = load_dictionary(tmp_path / "tc.json")
    x = torch.randn(3, 16)
    assert torch.allclose(d(x), e(x)) and e.metadata == {"note": "x"}
    assert e.config.layer == 2 and e.config.k == 5


# --- the unfolded model and the replacement model ---------------------------------------------
def test_unfolded_model_equals_hugging_face(lm, hf, tokens):
    with torch.no_grad():
        ours = lm.logits(tokens)
        theirs = hf(tokens).logits
    assert (ours - theirs).abs().max() < 1e-4 * theirs.abs().max()


def test_unfolded_sites_are_the_hugging_face_activations(lm, hf, tokens):
    grabbed = {}
    block = hf.transformer.h[1]
    hooks = [block.ln_2.register_forward_hook(lambda m, i, o: grabbed.__setitem__("ln2", o)),
             block.mlp.register_forward_hook(lambda m, i, o: grabbed.__setitem__("mlp", o)),
             block.register_forward_pre_hook(
                 lambda m, args, kwargs: grabbed.__setitem__("pre", args[0] if args else
                                                            kwargs["hidden_states"]),
                 with_kwargs=True)]
    try:
        with torch.no_grad():
            hf(tokens)
    finally:
        for h in hooks:
            h.remove()
    acts = lm.activations(tokens, ("ln2_out.1", "mlp_out.1", "resid_pre.1"))
    assert torch.allclose(acts["ln2_out.1"], grabbed["ln2"], atol=1e-4)
    assert torch.allclose(acts["mlp_out.1"], grabbed["mlp"], atol=1e-4)
    assert torch.allclose(acts["resid_pre.1"], grabbed["pre"], atol=1e-4)


def test_bridge_logits_are_the_demeaned_unfolded_logits(lm, model, tokens):
    with torch.no_grad():
        ours = lm.logits(tokens)
        bridge = model(tokens).float()
    assert torch.allclose(bridge, ours - ours.mean(-1, keepdim=True), atol=1e-3)


def test_frozen_run_at_its_own_state_is_the_model(lm, tokens):
    res = lm.run(tokens, record_frozen=True)
    again = lm.run(tokens, frozen=res.frozen)
    assert torch.allclose(res.logits, again.logits, atol=1e-5)
    # and freezing really freezes: another prompt's state changes the logits
    other = lm.run(tokens.roll(1, 0), record_frozen=True).frozen
    assert not torch.allclose(lm.run(tokens, frozen=other).logits, res.logits, atol=1e-2)


def _random_transcoders(lm, k=8):
    tcs = {}
    for l in range(lm.w.n_layers):
        d = SparseDictionary(DictionaryConfig("transcoder", 128, 128, 64, "topk", k=k, layer=l,
                                              site_in="ln2_out", site_out="mlp_out"), seed=l)
        with torch.no_grad():
            d.b_dec.normal_(generator=torch.Generator().manual_seed(l))
        tcs[l] = d
    return tcs


def test_replacement_with_error_nodes_is_the_model(lm, hf, tokens):
    rm = ReplacementModel(lm, _random_transcoders(lm))
    with torch.no_grad():
        with_err = rm.logits(tokens, errors=True)
        without = rm.logits(tokens, errors=False)
        theirs = hf(tokens).logits
    assert (with_err - theirs).abs().max() < 1e-4 * theirs.abs().max()
    assert (without - theirs).abs().max() > 1.0   # random transcoders alone are not the model


def test_splice_stats_match_a_hand_written_splice(lm, tokens):
    d = _random_dictionary("sae", "relu", d=128, n=64).requires_grad_(False)
    d.config.layer = 2
    stats = splice_stats(lm, d, tokens)

    def run(fn):
        return lm.run(tokens, resid_edit=lambda l, x: fn(x) if l == 2 else x).logits
    clean = float(next_token_loss(lm.logits(tokens), tokens))
    spliced = float(next_token_loss(run(lambda x: d(x)), tokens))
    zero = float(next_token_loss(run(torch.zeros_like), tokens))
    assert stats.loss_clean == pytest.approx(clean, abs=1e-5)
    assert stats.loss_spliced == pytest.approx(spliced, abs=1e-5)
    assert stats.loss_recovered == pytest.approx((zero - spliced) / (zero - clean), abs=1e-5)


def test_masked_next_token_loss_is_the_mean_over_real_predictions(lm, tokens):
    """Against a plain loop: -log p(t_{i+1} | t_<=i) averaged over the pairs of real tokens."""
    logits = lm.logits(tokens)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[0, 20:] = False                 # a right-padded row
    mask[1, :5] = False                  # a left-padded row
    logp = logits.log_softmax(-1)
    terms = [-float(logp[b, i, tokens[b, i + 1]]) for b in range(tokens.shape[0])
             for i in range(tokens.shape[1] - 1) if mask[b, i] and mask[b, i + 1]]
    assert float(next_token_loss(logits, tokens, mask)) == pytest.approx(
        sum(terms) / len(terms), abs=1e-5)
    assert float(next_token_loss(logits, tokens, mask.long())) == pytest.approx(
        sum(terms) / len(terms), abs=1e-5)                          # 0/1 works too
    assert float(next_token_loss(logits, tokens, torch.ones_like(mask))) == pytest.approx(
        float(next_token_loss(logits, tokens)), abs=1e-6)


def test_masked_splice_stats_ignore_the_padding(lm, tokens):
    """Prompts of 20 real tokens padded with other tokens give the losses of the 20 tokens."""
    d = _random_dictionary("sae", "relu", d=128, n=64).requires_grad_(False)
    d.config.layer = 2
    short = tokens[:, :20]
    padded = tokens.clone()
    padded[:, 20:] = tokens.flip(0)[:, 20:]
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, :20] = True
    want, got = splice_stats(lm, d, short), splice_stats(lm, d, padded, batch_size=4, mask=mask)
    for k in ("loss_clean", "loss_spliced", "loss_zero", "loss_recovered"):
        assert getattr(got, k) == pytest.approx(getattr(want, k), abs=1e-5), k
    assert splice_stats(lm, d, tokens).loss_clean != pytest.approx(want.loss_clean, abs=1e-3)
    with pytest.raises(TutorialError, match="mask has shape"):
        splice_stats(lm, d, tokens, mask=mask[:, :5])
    with pytest.raises(TutorialError, match="no next-token prediction"):
        splice_stats(lm, d, tokens, mask=torch.zeros_like(mask))


# --- bad input ----------------------------------------------------------------------------------
def test_bad_inputs_are_refused(lm):
    with pytest.raises(TutorialError, match="k"):
        DictionaryConfig("sae", 4, 4, 8, "topk").check()
    with pytest.raises(TutorialError, match="activation"):
        DictionaryConfig("sae", 4, 4, 8, "gelu").check()
    with pytest.raises(TutorialError, match="d_in"):
        DictionaryConfig("sae", 4, 5, 8).check()
    d = _random_dictionary()
    with pytest.raises(TutorialError, match="reads vectors of size 16"):
        d.encode(torch.randn(3, 5))
    with pytest.raises(TutorialError, match="site"):
        lm.check_site("mlp_in", 0)
    with pytest.raises(TutorialError, match="layer"):
        lm.check_site("resid_pre", 9)
    with pytest.raises(TutorialError, match="ids"):
        lm.run(torch.tensor([[0, 5000]]))
    with pytest.raises(TutorialError, match="transcoder of layer 1"):
        ReplacementModel(lm, {1: _random_transcoders(lm)[0]})
    with pytest.raises(TutorialError, match="GPT-2"):
        from tutorial_utils.features.unfolded import GPT2Weights

        GPT2Weights.from_hf(torch.nn.Linear(2, 2))


def test_shipped_dictionary_by_name():
    from tutorial_utils.features.dictionary import DICTIONARIES_DIR, shipped_dictionary

    d = shipped_dictionary("transcoder_m2")
    assert d.config.kind == "transcoder" and d.config.layer == 2
    assert torch.equal(d.W_dec, load_dictionary(DICTIONARIES_DIR / "transcoder_m2").W_dec)
    with pytest.raises(TutorialError, match="shipped"):
        shipped_dictionary("sae_resid9")


def test_unfolded_model_refuses_what_is_not_a_checkpoint(tmp_path, monkeypatch):
    from tutorial_utils.features.unfolded import UnfoldedGPT2

    with pytest.raises(TutorialError, match="no config.json"):
        UnfoldedGPT2.from_pretrained(tmp_path)
    with pytest.raises(TutorialError, match="no config.json"):
        UnfoldedGPT2.from_pretrained("gpt2")              # a hub name only with allow_hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TutorialError, match="hub or its cache"):
        UnfoldedGPT2.from_pretrained("no-such-user/no-such-model-xyz", allow_hub=True)
