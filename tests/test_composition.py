"""Composition scores and copying scores, checked against a plain computation from the raw
Hugging Face weights (LayerNorm weights folded and the all-ones direction projected out by hand),
plus the behaviour they must show on hand-built and trained heads."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import composition as C
from tutorial_utils.names import head_name, parse_head


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-layer random GPT-2 with non-trivial LayerNorm weights and biases (so that a folding
    mistake shows), saved locally and loaded through the project's loader."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tutorial_utils.models import load_model
    from tutorial_utils.course.offline_model.tokenizer import make_hf_tokenizer

    torch.manual_seed(0)
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(60)}}
    cfg = GPT2Config(vocab_size=len(vocab), n_positions=16, n_embd=32, n_layer=3, n_head=4,
                     n_inner=64, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    hf = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("tiny_gpt2")
    hf.save_pretrained(path)
    make_hf_tokenizer(vocab).save_pretrained(path)
    return hf, load_model(str(path), device="cpu")


def _raw_head_matrices(hf, layer: int, head: int):
    """W_QK and W_OV of one head from the HF weights, as the folded, centred parametrisation
    defines them: ln_1's weight folded into the reading side, the mean over d_model removed
    from the reading side (rows) and from the writing side (columns)."""
    block = hf.transformer.h[layer]
    d = hf.config.n_embd
    dh = d // hf.config.n_head
    W = block.attn.c_attn.weight.detach()  # [d, 3d], x @ W
    Wq, Wk, Wv = W[:, :d], W[:, d:2 * d], W[:, 2 * d:]
    cols = slice(head * dh, (head + 1) * dh)
    Wo = block.attn.c_proj.weight.detach()[cols]  # [dh, d]
    g = block.ln_1.weight.detach()
    P = torch.eye(d) - torch.ones(d, d) / d

    def read(M):
        return P @ (g[:, None] * M[:, cols])

    qk = read(Wq) @ read(Wk).T
    ov = read(Wv) @ Wo @ P
    return qk, ov


def _score(a, b):
    return float((a @ b).norm() / (a.norm() * b.norm()))


def test_composition_scores_equal_the_raw_weight_formula(tiny):
    hf, model = tiny
    for (la, ha), (lb, hb) in [((0, 1), (1, 2)), ((0, 3), (2, 0)), ((1, 0), (2, 3))]:
        qk_b, ov_b = _raw_head_matrices(hf, lb, hb)
        _, ov_a = _raw_head_matrices(hf, la, ha)
        expected = {"q": _score(ov_a, qk_b), "k": _score(qk_b, ov_a.T), "v": _score(ov_a, ov_b)}
        for kind, want in expected.items():
            got = C.composition_score(model, (la, ha), (lb, hb), kind)
            assert got == pytest.approx(want, rel=1e-4), (kind, la, ha, lb, hb)


def test_composition_score_table_matches_single_scores_and_is_nan_below_the_diagonal(tiny):
    _, model = tiny
    table = C.composition_scores(model, "k")
    assert table.shape == (3, 4, 3, 4)
    assert torch.isnan(table[1, 0, 0, 0]) and torch.isnan(table[1, 0, 1, 2])
    assert table[0, 2, 2, 1] == pytest.approx(C.composition_score(model, (0, 2), (2, 1), "k"),
                                              rel=1e-5)
    base = C.composition_baseline(model, "k", n_samples=50)
    assert 0 < base < 1


def test_copying_scores_equal_the_raw_weight_argmax(tiny):
    hf, model = tiny
    ids = torch.arange(2, 62)
    got = C.copying_scores(model, ids)
    W_E = hf.transformer.wte.weight.detach()
    d = W_E.shape[1]
    P = torch.eye(d) - torch.ones(d, d) / d
    W_U = hf.lm_head.weight.detach().T * hf.transformer.ln_f.weight.detach()[:, None]
    for layer, head in [(0, 0), (1, 2), (2, 3)]:
        _, ov = _raw_head_matrices(hf, layer, head)
        logits = (W_E[ids] @ P) @ ov @ W_U
        want = (logits.argmax(-1) == ids).float().mean()
        assert float(got[layer, head]) == pytest.approx(float(want))


def test_a_planted_copying_circuit_scores_one_and_an_anti_copying_one_scores_zero():
    """Orthonormal embeddings, tied unembedding: OV = identity copies every token; OV = -identity
    copies none (and is a perfect anti-copier); a rank-1 OV sends every token to one of at
    most two winners (the extremes of E @ u), so it copies at most two."""
    d, n = 16, 12
    E = torch.linalg.qr(torch.randn(d, d))[0][:n]  # [n, d] orthonormal rows
    ids = torch.arange(n)
    eye = torch.eye(d)
    assert C.copying_fraction(E, eye, E.T, ids) == 1.0
    assert C.copying_fraction(E, -eye, E.T, ids) == 0.0
    assert C.copying_fraction(E, -eye, E.T, ids, negative=True) == 1.0
    u = torch.randn(d, 1)
    assert C.copying_fraction(E, u @ u.T, E.T, ids) <= 2 / n + 1e-6


def test_bad_inputs_are_refused_clearly(tiny):
    _, model = tiny
    with pytest.raises(ValueError, match="lower layer"):
        C.composition_score(model, (1, 0), (1, 2), "k")
    with pytest.raises(ValueError, match="kind"):
        C.composition_score(model, (0, 0), (1, 2), "x")
    with pytest.raises(ValueError, match="layer"):
        C.composition_score(model, (0, 0), (5, 2), "q")
    with pytest.raises(ValueError, match="layer"):
        C.ov_matrix(model, True, 0)  # a bool is not a layer index (model_checks.check_head)
    torch.testing.assert_close(C.qk_matrix(model, -1, -1),
                               C.qk_matrix(model, model.cfg.n_layers - 1, model.cfg.n_heads - 1))
    with pytest.raises(ValueError, match="empty"):
        C.copying_scores(model, [])
    with pytest.raises(ValueError, match="token ids"):
        C.copying_scores(model, [10_000])


def test_runs_on_a_twelve_layer_model_with_two_digit_layer_names(tmp_path):
    """GPT-2 small's depth (12 layers) with a tiny width: head names like a10.h3 parse, and the
    induction path patching and composition tables run end to end (random weights: no behaviour
    is asserted, only shapes, finiteness and names)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tutorial_utils.models import load_model
    from tutorial_utils.course.offline_model.tokenizer import make_hf_tokenizer

    torch.manual_seed(1)
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{f"w{i}": i + 2 for i in range(40)}}
    cfg = GPT2Config(vocab_size=len(vocab), n_positions=48, n_embd=16, n_layer=12, n_head=2,
                     n_inner=32, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    make_hf_tokenizer(vocab).save_pretrained(tmp_path)
    model = load_model(str(tmp_path), device="cpu", hooks=True, verbose=False)
    assert parse_head("a11.h1") == (11, 1) and head_name(10, 0) == "a10.h0"
    table = C.composition_scores(model, "q")
    assert table.shape == (12, 2, 12, 2) and torch.isfinite(table[3, 1, 11, 0])
    res = C.induction_composition_patching(model, ["a3.h1"], ["a11.h0", "a10.h1"], seq_len=8,
                                           batch=2)
    assert set(res.effects) == {"q", "k", "v"}
    assert all(v == v for v in res.effects.values())  # not NaN
    with pytest.raises(ValueError, match="below every induction head"):
        C.induction_composition_patching(model, ["a11.h1"], ["a10.h0"], seq_len=8, batch=2)


def test_attention_between_reads_the_named_entries(tiny):
    """attention_between equals the pattern entries at (query_pos[b], key_pos[b]) read by hand,
    layer by layer (its indexing mixes a batch index and two position indices)."""
    _, model = tiny
    toks = torch.randint(2, 60, (3, 7), generator=torch.Generator().manual_seed(3))
    qp, kp = torch.tensor([6, 5, 4]), torch.tensor([1, 2, 0])
    got = C.attention_between(model, toks, qp, kp)
    _, cache = model.run_with_cache(toks)
    for l in range(model.cfg.n_layers):
        pat = cache[f"blocks.{l}.attn.hook_pattern"]
        want = torch.stack([pat[b, :, qp[b], kp[b]] for b in range(3)]).mean(0)
        torch.testing.assert_close(got[l], want.cpu())


def test_node_name_builders_and_head_rows_agree_with_the_parser():
    """``names`` builds every node name and reads head rows back (two-digit layers and heads
    included); labels that are not heads (``a3`` for a whole layer, ``m3``, ``bias.attn``) are
    not head rows."""
    from tutorial_utils.names import attention_layer_name, head_rows, mlp_name, receiver_name
    labels = ["embed", head_name(0, 1), attention_layer_name(3), mlp_name(3), head_name(11, 10),
              receiver_name(2, 0, "q"), "bias.attn"]
    assert labels[1:6] == ["a0.h1", "a3", "m3", "a11.h10", "a2.h0.q"]
    assert head_rows(labels) == [(1, 0, 1), (4, 11, 10)]
    assert all(parse_head(labels[i]) == (l, h) for i, l, h in head_rows(labels))
    from tutorial_utils.errors import TutorialError
    for bad in (lambda: mlp_name(-1), lambda: receiver_name(0, 0, "o"),
                lambda: attention_layer_name(True)):
        with pytest.raises(TutorialError):
            bad()
