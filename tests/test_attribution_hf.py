"""Input attributions against the raw Hugging Face models, computed here from the formulas with
plain autograd (no bridge, no hooks, nothing from the library but the results compared):

* the decoder ``tiny-gpt2-tasks`` as ``AutoModelForCausalLM`` and the encoder ``tiny-bert-tasks``
  as ``BertForMaskedLM``, run with ``inputs_embeds = W_E[tokens]`` (the word embeddings; the
  position embeddings, and BERT's type embeddings and embedding LayerNorm, are part of the
  function, as the library documents);
* saliency ``||df/dx_t||``, gradient x input ``df/dx_t . x_t``;
* integrated gradients with the trapezoid rule on ``n`` points ``a_k = k/(n-1)``, weights
  ``1/(n-1)`` halved at both ends, from the zero and the mean-embedding baselines, the opening
  BOS/[CLS] kept at its embedding (so it scores 0; BERT's closing [SEP] is attributed);
* occlusion with the zero vector, ``f(x) - f(x with x_t = 0)``, the opening token not occluded.

Tolerances as measured when this file was written: about 1e-5 for gradients, 1e-4 for IG."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import input_attribution as A
from tutorial_utils.paths import DATA_DIR

N_STEPS = 64


def _trapezoid(n):
    a = torch.linspace(0, 1, n, dtype=torch.float64)
    w = torch.full((n,), 1 / (n - 1), dtype=torch.float64)
    w[0] = w[-1] = 1 / (2 * (n - 1))
    return a, w


def _grad(f, e):
    e = e.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(e).sum(), e)
    return g


def _ig(f, x, base):
    """sum_d (x - x') * sum_k w_k df/dx(x' + a_k (x - x')), one interpolation at a time."""
    total = torch.zeros_like(x, dtype=torch.float64)
    for a, w in zip(*_trapezoid(N_STEPS)):
        total += w * _grad(f, base + float(a) * (x - base)).double()
    return ((x - base).double() * total).sum(-1).float()


def _occlusion_zero(f, x):
    with torch.no_grad():
        f0 = f(x)
        cols = []
        for t in range(x.shape[1]):
            e = x.clone()
            e[:, t] = 0
            cols.append(f0 - f(e))
    out = torch.stack(cols, 1)
    out[:, 0] = 0  # the opening BOS / [CLS] is not occluded
    return out


def _keep_first(base, x):
    base = base.clone()
    base[:, 0] = x[:, 0]
    return base


def _compare_all(model, toks, target, f, x, mean_embedding):
    g = _grad(f, x)
    torch.testing.assert_close(A.saliency(model, toks, target), g.norm(dim=-1),
                               atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(A.gradient_x_input(model, toks, target), (g * x).sum(-1),
                               atol=1e-5, rtol=1e-4)
    for name, base in (("zero", torch.zeros_like(x)),
                       ("mean", mean_embedding.expand_as(x))):
        ref = _ig(f, x, _keep_first(base, x))
        got = A.integrated_gradients(model, toks, target, baseline=name, n_steps=N_STEPS)
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3)
        assert float(got[0, 0]) == 0.0 and float(ref.abs().max()) > 0.05
    occ = A.occlusion(model, toks, target)
    ref = _occlusion_zero(f, x)
    torch.testing.assert_close(occ, ref, atol=1e-4, rtol=1e-4)
    assert float(ref.abs().max()) > 0.05


def test_decoder_against_hf_causal_lm(model):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(DATA_DIR / "models" / "tiny-gpt2-tasks")).eval()
    toks = model.to_tokens("The keys on the cabinet")
    are, is_ = model.to_single_token(" are"), model.to_single_token(" is")

    def f(emb):
        logits = hf(inputs_embeds=emb).logits
        return logits[:, -1, are] - logits[:, -1, is_]

    wte = hf.get_input_embeddings().weight.detach()
    x = wte[toks]
    _compare_all(model, toks, A.contrastive_target(are, is_), f, x, wte.mean(0))


def test_encoder_against_hf_bert_for_masked_lm():
    from transformers import BertForMaskedLM

    from tutorial_utils.models import load_encoder

    enc = load_encoder("tiny-bert-tasks", device="cpu", verbose=False)
    hf = BertForMaskedLM.from_pretrained(str(DATA_DIR / "models" / "tiny-bert-tasks")).eval()
    tok = enc.tokenizer
    toks = enc.to_tokens("the keys to the cabinet [MASK] on the table")
    assert int(toks[0, 0]) == tok.cls_token_id and int(toks[0, -1]) == tok.sep_token_id
    pos = int((toks[0] == tok.mask_token_id).nonzero()[0, 0])
    are, is_ = tok.convert_tokens_to_ids("are"), tok.convert_tokens_to_ids("is")

    def f(emb):
        logits = hf(inputs_embeds=emb).logits
        return logits[:, pos, are] - logits[:, pos, is_]

    wte = hf.get_input_embeddings().weight.detach()
    x = wte[toks]
    target = A.contrastive_target(are, is_, pos=pos)
    _compare_all(enc, toks, target, f, x, wte.mean(0))
    # [CLS] is kept at its embedding, the closing [SEP] is attributed like any word
    ig = A.integrated_gradients(enc, toks, target, n_steps=16)
    assert float(ig[0, 0]) == 0.0 and float(ig[0, -1].abs()) > 0.0
