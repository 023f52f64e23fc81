"""Every context-mixing method against its paper's definition, computed here from the RAW
Hugging Face weights by plainly written formulas (no project helpers):

* a 2-layer random BERT (post-LN) and a 2-layer random GPT-2 (pre-LN), seeded, eager attention,
  with every bias and LayerNorm parameter set to nonzero random values (with zero biases the
  value-bias bug of compatibility mode is invisible);
* MiniLM-L6 (``load_encoder("minilm-l6")``), a real checkpoint with real biases.

The project's functions run on the TransformerLens bridge booted from the saved checkpoint in
compatibility mode (folded value bias, centred W_O), which is the configuration that hid the
bug. Tolerance 1e-5 (float32).
"""

from __future__ import annotations



import pytest
import torch

from tutorial_utils import context_mixing as cm

ATOL = 1e-5


# --- models -----------------------------------------------------------------------------------
def _nonzero_biases(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "LayerNorm.weight" in name or "ln_" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))


def save_random_encoder(cls_name: str, path, seed: int) -> torch.nn.Module:
    """A random 2-layer BERT or RoBERTa Hugging Face model (``cls_name``, e.g.
    ``"BertForMaskedLM"``, ``"RobertaForSequenceClassification"``; 3 labels), seeded, eval mode,
    every bias and LayerNorm parameter nonzero (seed + 1), saved with the course's masked-LM
    tokenizer to ``path``; returns it (float32)."""
    import transformers

    from tutorial_utils.course.offline_model.train_mlm import make_mlm_tokenizer, mlm_vocab

    torch.manual_seed(seed)
    vocab = mlm_vocab()
    roberta = cls_name.startswith("Roberta")
    cfg = (transformers.RobertaConfig if roberta else transformers.BertConfig)(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40 if roberta else 32, hidden_act="gelu",
        num_labels=3, attn_implementation="eager", pad_token_id=0,
        **({"type_vocab_size": 1} if roberta else {}))
    hf = getattr(transformers, cls_name)(cfg).eval()
    _nonzero_biases(hf, seed + 1)
    hf.save_pretrained(path)
    make_mlm_tokenizer(vocab).save_pretrained(path)
    return hf


@pytest.fixture(scope="module")
def random_bert(tmp_path_factory):
    from tutorial_utils.models import load_encoder

    path = tmp_path_factory.mktemp("random_bert")
    hf = save_random_encoder("BertForMaskedLM", path, 0)
    bridge = load_encoder(str(path), device="cpu", verbose=False)
    toks = torch.tensor([[2, 40, 300, 250, 77, 4, 160, 3]])
    return bridge, hf.bert, toks


@pytest.fixture(scope="module")
def random_gpt2(tmp_path_factory):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from tutorial_utils.models import load_model
    from tutorial_utils.paths import DATA_DIR

    tok = AutoTokenizer.from_pretrained(str(DATA_DIR / "models" / "tiny-gpt2-tasks"))
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=2, n_head=4,
                     n_inner=64, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=0, eos_token_id=0, pad_token_id=0, attn_implementation="eager")
    hf = GPT2LMHeadModel(cfg).eval()
    _nonzero_biases(hf, 2)
    path = tmp_path_factory.mktemp("random_gpt2")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    bridge = load_model(str(path), device="cpu", verbose=False)
    toks = torch.tensor([[0, 40, 300, 250, 77, 5, 160, 9]])
    return bridge, hf.transformer, toks


@pytest.fixture(scope="module")
def minilm():
    from tutorial_utils.models import load_encoder

    bridge = load_encoder("minilm-l6", device="cpu", verbose=False)
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(bridge.original_model.config._name_or_path,
                                   attn_implementation="eager", add_pooling_layer=False).eval()
    toks = bridge.to_tokens("The keys on the cabinet [MASK] red.")
    return bridge, hf, toks


@pytest.fixture(params=["random_bert", "random_gpt2", "minilm"])
def case(request):
    return request.getfixturevalue(request.param)


# --- plainly written references ------------------------------------------------------------------
def _is_bert(hf) -> bool:
    return hasattr(hf, "encoder")


def _layers(hf):
    return list(hf.encoder.layer) if _is_bert(hf) else list(hf.h)


def _ln_linear(u, observed, ln):
    """gamma * (u - mean u) / std(observed): LayerNorm's linear part at the observed scale."""
    std = torch.sqrt(observed.var(-1, unbiased=False, keepdim=True) + ln.eps)
    return ln.weight * (u - u.mean(-1, keepdim=True)) / std


def reference_pieces(hf, toks):
    """Per layer: dict with z [T, T, d] (z_ij = sum_h alpha^h_ij (u_j W_V^h + b_V^h) W_O^h),
    x [T, d] (block input), attn_out [T, d], and the LayerNorm inputs/outputs."""
    with torch.no_grad():
        out = hf(input_ids=toks, output_hidden_states=True, output_attentions=True)
    res = []
    for l, layer in enumerate(_layers(hf)):
        x = out.hidden_states[l][0]
        A = out.attentions[l][0]  # [H, T, T]
        H, T = A.shape[0], A.shape[1]
        if _is_bert(hf):
            u = x
            Wv, bv = layer.attention.self.value.weight, layer.attention.self.value.bias
            v = u @ Wv.T + bv  # [T, d], all heads, value bias included
            Wo, bo = layer.attention.output.dense.weight.T, layer.attention.output.dense.bias
        else:
            d = x.shape[-1]
            u = layer.ln_1(x)
            W, b = layer.attn.c_attn.weight, layer.attn.c_attn.bias
            v = u @ W[:, 2 * d:] + b[2 * d:]
            Wo, bo = layer.attn.c_proj.weight, layer.attn.c_proj.bias
        d = x.shape[-1]
        dh = d // H
        z = torch.zeros(T, T, d)
        for h in range(H):
            f = v[:, h * dh:(h + 1) * dh] @ Wo[h * dh:(h + 1) * dh]  # [T(j), d]
            z += A[h][:, :, None] * f[None]
        attn_out = z.sum(1) + bo
        item = {"z": z, "x": x, "attn_out": attn_out, "A": A, "layer": layer}
        with torch.no_grad():
            if _is_bert(hf):
                ln1 = layer.attention.output.LayerNorm
                h1 = ln1(x + attn_out)
                ffn = layer.output.dense(layer.intermediate(h1))
                item.update(ln1=ln1, ln1_in=x + attn_out, h1=h1, ln2=layer.output.LayerNorm,
                            ln2_in=h1 + ffn)
            else:
                item.update(resid_mid=x + attn_out)
        res.append(item)
    return res, out


def _rownorm(m):
    return m / m.sum(-1, keepdim=True)


def _rollout(mats):
    out = [mats[0]]
    for m in mats[1:]:
        out.append(m @ out[-1])
    return torch.stack(out)


def _eye_res(p):
    T = p["x"].shape[0]
    return p["z"] + torch.eye(T)[:, :, None] * p["x"][None, :, :]  # z_ij + [i=j] x_i


def ref_attention_norm(pieces, variant):
    mats = []
    for p in pieces:
        if variant == "attn":
            n = p["z"].norm(dim=-1)
        elif variant == "res":
            n = _eye_res(p).norm(dim=-1)
        else:
            n = _ln_linear(_eye_res(p), p["ln1_in"][:, None], p["ln1"]).norm(dim=-1)
        mats.append(_rownorm(n))
    return torch.stack(mats)


def ref_globenc(pieces, bert):
    mats = []
    for p in pieces:
        if bert:
            t = _ln_linear(_eye_res(p), p["ln1_in"][:, None], p["ln1"])
            n = _ln_linear(t, p["ln2_in"][:, None], p["ln2"]).norm(dim=-1)
        else:
            n = _eye_res(p).norm(dim=-1)
        mats.append(_rownorm(n))
    return _rollout(mats)


def ref_alti(pieces, bert):
    mats = []
    for p in pieces:
        if bert:
            t = _ln_linear(_eye_res(p), p["ln1_in"][:, None], p["ln1"])
            y = p["h1"]
        else:
            t = _eye_res(p)
            y = p["resid_mid"]
        dist = (y[:, None] - t).abs().sum(-1)
        c = (y.abs().sum(-1)[:, None] - dist).clamp_min(0)
        mats.append(_rownorm(c))
    return torch.stack(mats), _rollout(mats)


def ref_value_zeroing(hf, out):
    """Mohebbi et al. 2023 with the HF block modules: zero the whole value vector (bias
    included) of token j at layer l, run layer l from its input, 1 - cos per token."""
    bert = _is_bert(hf)
    mats = []
    for l, layer in enumerate(_layers(hf)):
        x = out.hidden_states[l]
        T, d = x.shape[1], x.shape[2]
        mask = None
        if not bert:
            mask = torch.full((T, T), torch.finfo(x.dtype).min).triu(1)[None, None]

        def run():
            with torch.no_grad():
                y = layer(x, attention_mask=mask)
            return (y[0] if isinstance(y, tuple) else y)[0]

        clean = run()
        proj = layer.attention.self.value if bert else layer.attn.c_attn
        S = torch.zeros(T, T)
        for j in range(T):
            def hook(mod, inp, o, j=j):
                o = o.clone()
                if bert:
                    o[:, j] = 0
                else:
                    o[:, j, 2 * d:] = 0
                return o

            hnd = proj.register_forward_hook(hook)
            y = run()
            hnd.remove()
            cos = torch.nn.functional.cosine_similarity(y.double(), clean.double(), dim=-1)
            S[:, j] = (1 - cos).float()
        if not bert:
            S = S.tril()
        mats.append(_rownorm(S))
    return torch.stack(mats)


# --- tests -------------------------------------------------------------------------------------
def _close(got, want, what, atol=ATOL):
    diff = (got - want).abs().max().item()
    assert diff <= atol, f"{what}: max |project - reference| = {diff:.2e}"


def test_biases_are_nonzero_and_bridge_folded_them(random_bert, random_gpt2):
    """The setting that hid the bug: real b_V, and the bridge's b_V folded to 0."""
    for bridge, hf, _ in (random_bert, random_gpt2):
        layer = _layers(hf)[0]
        bv = layer.attention.self.value.bias if _is_bert(hf) else layer.attn.c_attn.bias
        assert bv.abs().max() > 0.1
        assert bridge.blocks[0].attn.b_V.abs().max() == 0


def test_norm_methods_equal_papers(case):
    bridge, hf, toks = case
    pieces, _ = reference_pieces(hf, toks)
    bert = _is_bert(hf)
    _close(cm.attention_norm(bridge, toks[0], "attn"), ref_attention_norm(pieces, "attn"),
           "attention-norm (Kobayashi 2020)")
    _close(cm.attention_norm(bridge, toks[0], "res"), ref_attention_norm(pieces, "res"),
           "attention-norm + RES1 (Kobayashi 2021)")
    if bert:
        _close(cm.attention_norm(bridge, toks[0], "res_ln"), ref_attention_norm(pieces, "res_ln"),
               "attention-norm + RES1 + LN1 (Kobayashi 2021)")
    _close(cm.globenc(bridge, toks[0]), ref_globenc(pieces, bert), "GlobEnc (Modarressi 2022)")


def test_alti_equals_paper(case):
    bridge, hf, toks = case
    pieces, _ = reference_pieces(hf, toks)
    per_layer, rolled = ref_alti(pieces, _is_bert(hf))
    _close(cm.alti(bridge, toks[0], rollout=False), per_layer, "ALTI per layer (Ferrando 2022)")
    _close(cm.alti(bridge, toks[0]), rolled, "ALTI rolled out")


def test_raw_attention_equals_hf(case):
    bridge, hf, toks = case
    _, out = reference_pieces(hf, toks)
    want = torch.stack([a[0] for a in out.attentions])
    _close(cm.raw_attention(bridge, toks[0], per_head=True), want, "attention weights")


def test_value_zeroing_equals_paper(case):
    bridge, hf, toks = case
    _, out = reference_pieces(hf, toks)
    want = ref_value_zeroing(hf, out)
    _close(cm.value_zeroing(bridge, toks[0]), want, "Value Zeroing (Mohebbi 2023)")
    _close(cm.value_zeroing_loop(bridge, toks[0]), want, "Value Zeroing loop")


def test_value_bias_matters(random_bert):
    """Dropping b_V from the values (what compatibility mode's hook_v shows) changes the
    attention-norm by far more than the tolerance: the tests above can fail."""
    bridge, hf, toks = random_bert
    pieces, _ = reference_pieces(hf, toks)
    for p in pieces:
        layer = p["layer"]
        bv = layer.attention.self.value.bias
        Wo = layer.attention.output.dense.weight.T
        H = p["A"].shape[0]
        dh = bv.shape[0] // H
        for h in range(H):
            p["z"] -= p["A"][h][:, :, None] * (bv[h * dh:(h + 1) * dh] @ Wo[h * dh:(h + 1) * dh])
    wrong = ref_attention_norm(pieces, "attn")
    assert (cm.attention_norm(bridge, toks[0], "attn") - wrong).abs().max() > 1e-3


def test_internals_reproduce_hf_hidden_states(case):
    """The project's forward with the original weights equals the HF model, layer by layer."""
    bridge, hf, toks = case
    _, out = reference_pieces(hf, toks)
    layers = cm.collect_internals(bridge, toks)
    for l, it in enumerate(layers):
        _close(it.resid_pre[0], out.hidden_states[l][0], f"block {l} input")
    if _is_bert(hf):
        _close(layers[-1].layer_out[0], out.hidden_states[-1][0], "last block output")
    else:  # HF applies ln_f to the last hidden state
        _close(hf.ln_f(layers[-1].layer_out)[0], out.hidden_states[-1][0], "ln_f(last output)")


def test_decomposition_sums_to_hf_block_output(case):
    """Reconstruction invariant against the HF model's own block outputs."""
    bridge, hf, toks = case
    pieces, _ = reference_pieces(hf, toks)
    for l in range(len(pieces)):
        dec = cm.decompose_attention_block(bridge, toks[0], l)
        want = pieces[l]["h1"] if _is_bert(hf) else pieces[l]["resid_mid"]
        # a sum of T float32 pieces of hidden states of size ~10 (MiniLM): 1e-4, the package's
        # reconstruction tolerance (measured 1.05e-5 with 2 threads, 0.0-1e-5 with 1)
        _close(dec.per_source.sum(2)[0] + dec.bias[0], want, f"layer {l} pieces sum", atol=1e-4)



