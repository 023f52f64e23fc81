"""Direct logit attribution per head against the paper's formula computed by hand from the raw
Hugging Face GPT-2 weights (no bridge, no folding): a head's output is
``A (LN_1(x) W_V + b_V) W_O`` (``c_attn``'s value third, ``c_proj``'s rows of that head), read
through the final LayerNorm with its scale frozen from the same run and the unembedding, as a
logit difference (the centring of the bridge's unembedding cancels in a difference). The rows
``bias.attn`` (the summed ``c_proj`` biases) and the whole stack are checked the same way."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import dla as D
from tutorial_utils.paths import DATA_DIR
from tutorial_utils.tasks import make_ioi

ATOL = 1e-4


@pytest.fixture(scope="module")
def hf():
    from transformers import GPT2LMHeadModel

    m = GPT2LMHeadModel.from_pretrained(str(DATA_DIR / "models" / "tiny-gpt2-tasks"),
                                        attn_implementation="eager")
    return m.eval()


def _reference(hf, toks, pos, correct, wrong):
    """``[L, H, B]`` per-head contributions, ``[B]`` the summed c_proj biases' contribution and
    ``[B]`` the logit difference, all by hand."""
    cfg = hf.config
    d, H = cfg.n_embd, cfg.n_head
    dh = d // H
    ln1_out, ln_f_in = {}, {}
    hooks = [blk.ln_1.register_forward_hook(
        lambda mod, inp, out, l=l: ln1_out.__setitem__(l, out)) for l, blk in
        enumerate(hf.transformer.h)]
    hooks.append(hf.transformer.ln_f.register_forward_hook(
        lambda mod, inp, out: ln_f_in.__setitem__("x", inp[0])))
    try:
        with torch.no_grad():
            out = hf(toks, output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    B = toks.shape[0]
    rows = torch.arange(B)
    x = ln_f_in["x"][rows, pos]                                            # [B, d]
    s = (x.var(-1, unbiased=False) + hf.transformer.ln_f.eps).sqrt()      # [B]
    W_U = hf.lm_head.weight                                               # [V, d]
    u = hf.transformer.ln_f.weight * (W_U[correct] - W_U[wrong])          # [B, d]

    def read(c):  # [..., B, d] -> [..., B]
        return ((c - c.mean(-1, keepdim=True)) / s[:, None] * u).sum(-1)

    heads, bias = [], torch.zeros(d)
    for l, blk in enumerate(hf.transformer.h):
        W, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias               # Conv1D: x @ W + b
        v = (ln1_out[l] @ W[:, 2 * d:] + b[2 * d:]).reshape(B, -1, H, dh)  # [B, T, H, dh]
        A = out.attentions[l][rows, :, pos]                               # [B, H, T]
        z = torch.einsum("bhj,bjhk->bhk", A, v)                           # [B, H, dh]
        W_O = blk.attn.c_proj.weight.reshape(H, dh, d)
        heads.append(read(torch.einsum("bhk,hkd->hbd", z, W_O)))          # [H, B]
        bias = bias + blk.attn.c_proj.bias
    logits = out.logits[rows, pos]
    return torch.stack(heads), read(bias), logits[rows, correct] - logits[rows, wrong]


def test_head_dla_is_the_papers_head_output(model, hf):
    ds = make_ioi(model, n=8, frames_split="train", seed=3)
    io, s = ds.candidate_ids[:, 0], ds.candidate_ids[:, 1]
    ref_heads, ref_bias, ref_ld = _reference(hf, ds.clean_tokens, ds.answer_pos, io, s)
    res = D.direct_logit_attribution(model, ds.clean_tokens, ds.answer_pos, ds.candidate_ids[:, :2])
    ld = D.logit_diff_attribution(res, io, s)                             # [C, B]
    L, H = model.cfg.n_layers, model.cfg.n_heads
    ours = torch.stack([torch.stack([ld[res.labels.index(f"a{l}.h{h}")] for h in range(H)])
                        for l in range(L)])
    torch.testing.assert_close(ours, ref_heads, atol=ATOL, rtol=0)
    torch.testing.assert_close(ld[res.labels.index("bias.attn")], ref_bias, atol=ATOL, rtol=0)
    torch.testing.assert_close(ld.sum(0), ref_ld, atol=ATOL, rtol=0)
    # the value-bias term is not negligible on this model: without it a head would be off
    vb = D.head_value_bias_outputs(model)
    assert vb is not None and float(vb.norm(dim=-1).max()) > 0.1


def test_value_bias_moves_between_head_and_bias_rows_only(model):
    """Adding the heads' value bias only moves it from ``bias.attn`` to the heads: the layer
    rows of per_head=False are the heads plus their share of bias.attn, and the total is the
    logits either way."""
    ds = make_ioi(model, n=4, seed=1)
    ids = ds.candidate_ids[:, :2]
    heads = D.direct_logit_attribution(model, ds.clean_tokens, ds.answer_pos, ids)
    layers = D.direct_logit_attribution(model, ds.clean_tokens, ds.answer_pos, ids,
                                        per_head=False)
    torch.testing.assert_close(heads.total(), heads.logits, atol=ATOL, rtol=0)
    H = model.cfg.n_heads
    summed = sum(heads.get(f"a{l}.h{h}") for l in range(model.cfg.n_layers) for h in range(H))
    summed = summed + heads.get("bias.attn")
    by_layer = sum(layers.get(f"a{l}") for l in range(model.cfg.n_layers))
    torch.testing.assert_close(summed, by_layer, atol=ATOL, rtol=0)
