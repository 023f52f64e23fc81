"""DecompX (Modarressi et al. 2023) to the prediction, against the model's own logits and against
a plain computation of the paper's equations written here from the RAW Hugging Face weights
(``nn.Linear`` weights and biases of a model loaded from the checkpoint with
``from_pretrained``, float64, one source token and one query at a time; no project helper).

Models: ``tiny-bert-tasks`` (the course's trained masked LM), a random 2-layer BERT masked LM and
a random 2-layer BERT sequence classifier, both with every bias and LayerNorm parameter set to
nonzero random values (zero biases would hide a bias that is dropped or double counted).
"""

from __future__ import annotations

import pytest
import torch

from test_context_mixing_reference import save_random_encoder

from tutorial_utils import context_mixing as cm
from tutorial_utils.errors import TutorialError

#: float32 DecompX against float64 and the model's logits: relative to the logits' scale.
PRED_RTOL = 1e-4


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertForMaskedLM

    from tutorial_utils.models import load_encoder

    bridge = load_encoder("tiny-bert-tasks", device="cpu", verbose=False)
    hf = BertForMaskedLM.from_pretrained(bridge.original_model.config._name_or_path,
                                         attn_implementation="eager").eval().double()
    toks = bridge.to_tokens("The keys on the cabinet [MASK] red.")
    return bridge, hf, toks


@pytest.fixture(scope="module")
def random_mlm(tmp_path_factory):
    from tutorial_utils.models import load_encoder

    path = tmp_path_factory.mktemp("random_mlm")
    hf = save_random_encoder("BertForMaskedLM", path, 3).double()
    bridge = load_encoder(str(path), device="cpu", verbose=False)
    toks = torch.tensor([[2, 40, 300, 250, 4, 77, 160, 3]])  # 4 = [MASK]
    return bridge, hf, toks


@pytest.fixture(scope="module")
def random_classifier(tmp_path_factory):
    from tutorial_utils.models import load_encoder

    path = tmp_path_factory.mktemp("random_cls")
    hf = save_random_encoder("BertForSequenceClassification", path, 5)
    bridge = load_encoder(str(path), device="cpu", verbose=False)  # the bridge drops the head
    toks = torch.tensor([[2, 40, 300, 250, 77, 160, 3]])
    return bridge, hf, toks


@pytest.fixture(scope="module")
def random_roberta_mlm(tmp_path_factory):
    from tutorial_utils.models import load_encoder

    path = tmp_path_factory.mktemp("random_roberta_mlm")
    hf = save_random_encoder("RobertaForMaskedLM", path, 9)
    bridge = load_encoder(str(path), device="cpu", verbose=False)
    toks = torch.tensor([[2, 40, 300, 250, 4, 77, 160, 3]])  # 4 = [MASK]
    return bridge, hf, toks


@pytest.fixture(scope="module")
def random_roberta_classifier(tmp_path_factory):
    """A random RoBERTa sequence classifier (RobertaClassificationHead) and a bridge booted from
    its encoder: the bridge has no adapter for the classifier class, so the classifier is saved
    again as a RobertaForMaskedLM (same encoder, a fresh masked-LM head)."""
    from transformers import RobertaForMaskedLM

    from tutorial_utils.course.offline_model.train_mlm import make_mlm_tokenizer, mlm_vocab
    from tutorial_utils.models import load_encoder

    path = tmp_path_factory.mktemp("random_roberta_cls")
    hf = save_random_encoder("RobertaForSequenceClassification", path / "cls", 11)
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the masked-LM head is new: a load report otherwise
    try:
        RobertaForMaskedLM.from_pretrained(path / "cls").save_pretrained(path / "enc")
    finally:
        hf_logging.set_verbosity(level)
    make_mlm_tokenizer(mlm_vocab()).save_pretrained(path / "enc")
    bridge = load_encoder(str(path / "enc"), device="cpu", verbose=False)
    toks = torch.tensor([[2, 40, 300, 250, 77, 160, 3]])
    return bridge, hf, toks


@pytest.fixture(params=["tiny_bert", "random_mlm"])
def mlm(request):
    return request.getfixturevalue(request.param)


# --- the paper's equations, plainly --------------------------------------------------------------
def _absdot(vectors: list[torch.Tensor], bias: torch.Tensor) -> list[torch.Tensor]:
    """Eq. 5-6: add ``bias`` to the vectors in proportion to ``|v_k . b|``."""
    w = torch.stack([(v * bias).sum().abs() for v in vectors])
    w = w / w.sum() if w.sum() > 0 else torch.full_like(w, 1 / len(vectors))
    return [v + w[k] * bias for k, v in enumerate(vectors)]


def _ln_pieces(vectors: list[torch.Tensor], observed: torch.Tensor, ln) -> list[torch.Tensor]:
    """Eq. 8: g(v) = gamma (v - mean v) / std(observed input), then beta by AbsDot."""
    s = torch.sqrt(observed.var(unbiased=False) + ln.eps)
    return _absdot([ln.weight * (v - v.mean()) / s for v in vectors], ln.bias)


def _lin(v: torch.Tensor, layer) -> torch.Tensor:
    """An nn.Linear without its bias."""
    return layer.weight @ v


def plain_decompx(hf, toks: torch.Tensor, with_bias: bool = True) -> list[list[list[torch.Tensor]]]:
    """Per layer, ``a[i][k]``: the part of token i's hidden state from input token k, for one
    sentence, computed with the raw HF BERT's modules (float64)."""
    bert = hf.bert
    with torch.no_grad():
        out = bert(input_ids=toks, output_hidden_states=True, output_attentions=True)
    T = toks.shape[1]
    H = bert.config.num_attention_heads
    dh = bert.config.hidden_size // H
    x0 = out.hidden_states[0][0]
    a = [[x0[i] if i == k else torch.zeros_like(x0[i]) for k in range(T)] for i in range(T)]
    layers = []
    share = _absdot if with_bias else (lambda vs, b: vs)
    for l, layer in enumerate(bert.encoder.layer):
        A = out.attentions[l][0]
        x = out.hidden_states[l][0]
        att, ffn = layer.attention, layer
        value, dense = att.self.value, att.output.dense
        heads = lambda v, h: v[h * dh:(h + 1) * dh]  # noqa: E731
        Wo_h = [dense.weight[:, h * dh:(h + 1) * dh] for h in range(H)]
        with torch.no_grad():
            real_ln1_in = x + dense(att.self(x[None])[0][0])
            h_real = att.output.LayerNorm(real_ln1_in)
            pre = ffn.intermediate.dense(h_real)
            real_ln2_in = h_real + ffn.output.dense(ffn.intermediate.intermediate_act_fn(pre))
        new = []
        for i in range(T):
            z = []
            for k in range(T):
                zk = torch.zeros_like(x0[0])
                for h in range(H):
                    if l == 0:  # eq. 3 with Kobayashi's f(x): the value bias stays with token k
                        zk = zk + A[h, i, k] * (Wo_h[h] @ heads(value(x[k]), h))
                    else:       # eq. 4: sum_j alpha_ij a_{j<-k} W_V W_O
                        for j in range(T):
                            zk = zk + A[h, i, j] * (Wo_h[h] @ heads(_lin(a[j][k], value), h))
                z.append(zk + a[i][k])                                           # eq. 7
            b_att = dense.bias if l == 0 else dense.weight @ value.bias + dense.bias   # eq. 16
            r = share(z, b_att)
            hk = _ln_pieces(r, real_ln1_in[i], att.output.LayerNorm) if with_bias else \
                [att.output.LayerNorm.weight * (v - v.mean()) / torch.sqrt(
                    real_ln1_in[i].var(unbiased=False) + att.output.LayerNorm.eps) for v in r]
            theta = ffn.intermediate.intermediate_act_fn(pre[i]) / pre[i]            # eq. 10
            p = share([_lin(v, ffn.intermediate.dense) for v in hk], ffn.intermediate.dense.bias)
            q = share([_lin(theta * v, ffn.output.dense) for v in p], ffn.output.dense.bias)
            res2 = [hk[k] + q[k] for k in range(T)]
            ln2 = ffn.output.LayerNorm
            if with_bias:
                new.append(_ln_pieces(res2, real_ln2_in[i], ln2))               # eq. 12
            else:
                s = torch.sqrt(real_ln2_in[i].var(unbiased=False) + ln2.eps)
                new.append([ln2.weight * (v - v.mean()) / s for v in res2])
        a = new
        layers.append(a)
    return layers


def plain_mlm_prediction(hf, toks: torch.Tensor, pos: int, with_bias: bool = True) -> torch.Tensor:
    """``[T, V]``: the MLM head applied to the decomposition of position ``pos`` (sec. 3.4 / A.2)."""
    last = plain_decompx(hf, toks, with_bias)[-1][pos]
    with torch.no_grad():
        x = hf.bert(input_ids=toks).last_hidden_state[0, pos]
        t = hf.cls.predictions.transform
        pre = t.dense(x)
        post = t.transform_act_fn(pre)
    share = _absdot if with_bias else (lambda vs, b: vs)
    v = share([_lin(a, t.dense) for a in last], t.dense.bias)
    v = [post / pre * u for u in v]
    s = torch.sqrt(post.var(unbiased=False) + t.LayerNorm.eps)
    v = _ln_pieces(v, post, t.LayerNorm) if with_bias else \
        [t.LayerNorm.weight * (u - u.mean()) / s for u in v]
    dec = hf.cls.predictions.decoder
    y = [_lin(u, dec) for u in v]
    return torch.stack(share(y, dec.bias) if with_bias else y)


def plain_classifier_prediction(hf, toks: torch.Tensor) -> torch.Tensor:
    """``[T, C]``: [CLS]'s decomposition through pooler, tanh and classifier (eq. 13-14)."""
    last = plain_decompx(hf, toks)[-1][0]
    with torch.no_grad():
        x = hf.bert(input_ids=toks).last_hidden_state[0, 0]
        pre = hf.bert.pooler.dense(x)
    v = _absdot([_lin(a, hf.bert.pooler.dense) for a in last], hf.bert.pooler.dense.bias)
    v = [torch.tanh(pre) / pre * u for u in v]
    return torch.stack(_absdot([_lin(u, hf.classifier) for u in v], hf.classifier.bias))


def _mask_pos(toks: torch.Tensor, bridge) -> int:
    return int((toks[0] == bridge.tokenizer.mask_token_id).nonzero()[0])


# --- tests ------------------------------------------------------------------------------------------
def test_prediction_sums_to_the_models_logits(mlm):
    """Eq. 14: the contributions of the input tokens sum to the logit, every bias shared among
    them (no remainder). Against the Hugging Face model's own logits at the [MASK]."""
    bridge, hf, toks = mlm
    res = cm.decompx_prediction(bridge, toks)
    pos = _mask_pos(toks, bridge)
    assert int(res.position[0]) == pos
    with torch.no_grad():
        want = hf(input_ids=toks).logits[0, pos].float()
    scale = float(want.abs().max())
    assert float((res.contributions.sum(1)[0] - want).abs().max()) <= PRED_RTOL * scale
    assert float((res.logits[0] - want).abs().max()) <= PRED_RTOL * scale
    assert res.contributions.shape == (1, toks.shape[1], bridge.cfg.d_vocab)


def test_prediction_equals_the_papers_equations(mlm):
    bridge, hf, toks = mlm
    pos = _mask_pos(toks, bridge)
    want = plain_mlm_prediction(hf, toks, pos)
    got64 = cm.decompx_prediction(bridge, toks, dtype=torch.float64).contributions[0]
    scale = float(want.abs().max())
    assert float((got64 - want).abs().max()) <= 1e-6 * scale  # float32 weights, float64 algebra
    got = cm.decompx_prediction(bridge, toks).contributions[0]
    assert float((got.double() - want).abs().max()) <= PRED_RTOL * scale


def test_layers_equal_the_papers_equations(random_mlm):
    bridge, hf, toks = random_mlm
    want = plain_decompx(hf, toks)
    res = cm.decompx_decomposition(bridge, toks, dtype=torch.float64)
    T = toks.shape[1]
    for l, layer in enumerate(want):
        ref = torch.stack([torch.stack(row) for row in layer])  # [T, T, d]
        assert float((res.per_token[l][0] - ref).abs().max()) <= 1e-6, f"layer {l}"
        assert res.per_token[l].shape == (1, T, T, bridge.cfg.d_model)


def test_dropping_the_biases_breaks_the_sum(random_mlm):
    """The paper's NoBias variant does not add up to the logit: the sum test can fail."""
    bridge, hf, toks = random_mlm
    pos = _mask_pos(toks, bridge)
    no_bias = plain_mlm_prediction(hf, toks, pos, with_bias=False)
    with torch.no_grad():
        logits = hf(input_ids=toks).logits[0, pos]
    assert float((no_bias.sum(0) - logits).abs().max()) > 0.1


def test_classifier_class_scores(random_classifier):
    bridge, hf, toks = random_classifier
    res = cm.decompx_prediction(bridge, toks, classifier=hf)
    with torch.no_grad():
        want = hf(input_ids=toks).logits[0]
    scale = float(want.abs().max())
    assert res.contributions.shape == (1, toks.shape[1], 3)
    assert float((res.contributions.sum(1)[0] - want).abs().max()) <= PRED_RTOL * scale
    plain = plain_classifier_prediction(hf.double(), toks).float()
    hf.float()
    assert float((res.contributions[0] - plain).abs().max()) <= PRED_RTOL * scale


def test_roberta_prediction_sums_to_the_models_logits(random_roberta_mlm):
    """RoBERTa's masked-LM head (``lm_head``: dense, gelu, layer_norm, decoder) and its position
    offset: the contributions sum to the Hugging Face model's logits at the [MASK]."""
    bridge, hf, toks = random_roberta_mlm
    res = cm.decompx_prediction(bridge, toks)
    assert int(res.position[0]) == 4
    with torch.no_grad():
        want = hf(input_ids=toks).logits[0, 4]
    scale = float(want.abs().max())
    assert float((res.contributions.sum(1)[0] - want).abs().max()) <= PRED_RTOL * scale
    assert float((res.logits[0] - want).abs().max()) <= PRED_RTOL * scale


def test_roberta_classifier_class_scores(random_roberta_classifier):
    """RobertaClassificationHead (dense, tanh, out_proj on <s>): the contributions sum to the
    classifier's own logits."""
    bridge, hf, toks = random_roberta_classifier
    res = cm.decompx_prediction(bridge, toks, classifier=hf)
    with torch.no_grad():
        want = hf(input_ids=toks).logits[0]
    scale = float(want.abs().max())
    assert res.contributions.shape == (1, toks.shape[1], 3)
    assert float((res.contributions.sum(1)[0] - want).abs().max()) <= PRED_RTOL * scale
    assert float((res.logits[0] - want).abs().max()) <= PRED_RTOL * scale


def test_a_classifier_of_another_encoder_is_refused(random_classifier, tmp_path):
    """The classifier's head is applied to the bridge's hidden state, so a classifier whose
    encoder is not the bridge's would give another model's logits: refused, before any work.
    Also an in-memory edit of the bridge that the classifier does not share."""
    bridge, hf, toks = random_classifier
    other = save_random_encoder("BertForSequenceClassification", tmp_path, 7)
    with pytest.raises(TutorialError, match="not this model.*layer0"):
        cm.decompx_prediction(bridge, toks, classifier=other)
    with pytest.raises(TutorialError, match="position= is for the masked-LM head"):
        cm.decompx_prediction(bridge, toks, classifier=hf, position=0)
    with pytest.raises(TutorialError, match=r"class ids of the classifier in \[0, 3\)"):
        cm.decompx_prediction(bridge, toks, classifier=hf, targets=[3])
    W = bridge.blocks[1].mlp.W_out
    saved = W.detach().clone()
    try:
        with torch.no_grad():
            W.mul_(0.5)
        with pytest.raises(TutorialError, match=r"in layer1, so"):
            cm.decompx_prediction(bridge, toks, classifier=hf)
        with torch.no_grad():  # the same edit on the classifier: the same encoder again
            hf.bert.encoder.layer[1].output.dense.weight.mul_(0.5)
        res = cm.decompx_prediction(bridge, toks, classifier=hf)
        with torch.no_grad():
            want = hf(input_ids=toks).logits[0]
        assert float((res.contributions.sum(1)[0] - want).abs().max()) <= \
            PRED_RTOL * float(want.abs().max())
    finally:
        with torch.no_grad():
            W.copy_(saved)
            hf.bert.encoder.layer[1].output.dense.weight.mul_(2.0)


def test_float32_is_float64_to_the_stated_tolerance(tiny_bert):
    bridge, _, toks = tiny_bert
    m32, m64 = cm.decompx(bridge, toks[0]), cm.decompx(bridge, toks[0], dtype=torch.float64)
    assert float((m32 - m64.float()).abs().max()) <= 1e-5
    p32 = cm.decompx_prediction(bridge, toks).contributions
    p64 = cm.decompx_prediction(bridge, toks, dtype=torch.float64).contributions
    assert float((p32 - p64).abs().max()) <= PRED_RTOL * float(p64.abs().max())


def test_padded_batch_and_targets(tiny_bert):
    bridge, _, toks = tiny_bert
    pad = bridge.tokenizer.pad_token_id
    short = bridge.to_tokens("The keys [MASK] red.")[0]
    n = toks.shape[1] - short.shape[0]
    batch = torch.stack([torch.cat([short, torch.full((n,), pad)]), toks[0]])
    res = cm.decompx_prediction(bridge, batch)
    alone = cm.decompx_prediction(bridge, short)
    real = batch[0] != pad
    scale = float(alone.contributions.abs().max())
    assert float((res.contributions[0][real] - alone.contributions[0]).abs().max()) <= 1e-5 * scale
    assert res.contributions[0][~real].abs().max() == 0  # pads contribute nothing
    ids = [5, 17, 3]
    sub = cm.decompx_prediction(bridge, toks, targets=ids)
    full = cm.decompx_prediction(bridge, toks)
    torch.testing.assert_close(sub.contributions, full.contributions[..., ids], atol=1e-6, rtol=0)
    torch.testing.assert_close(sub.logits, full.logits[:, ids], atol=1e-6, rtol=0)


def test_clear_errors(tiny_bert, model):
    bridge, _, toks = tiny_bert
    no_mask = bridge.to_tokens("The keys are red.")
    with pytest.raises(TutorialError, match="position"):
        cm.decompx_prediction(bridge, no_mask)
    with pytest.raises(TutorialError, match="out of range"):
        cm.decompx_prediction(bridge, toks, position=99)
    with pytest.raises(TutorialError, match="targets must be vocabulary ids"):
        cm.decompx_prediction(bridge, toks, targets=[10 ** 6])
    with pytest.raises(TutorialError, match="targets must be integer ids"):
        cm.decompx_prediction(bridge, toks, targets=[1.5])
    with pytest.raises(TutorialError, match="shared by every row"):
        cm.decompx_prediction(bridge, toks, targets=[[1, 2]])
    pad = bridge.tokenizer.pad_token_id
    padded = torch.cat([toks, torch.full((1, 2), pad)], 1)
    with pytest.raises(TutorialError, match=r"position\[0\] = 11 is a padded position"):
        cm.decompx_prediction(bridge, padded, position=-1)
    with pytest.raises(TutorialError, match="position must be an int or have shape"):
        cm.decompx_prediction(bridge, toks, position=[1, 2])
    with pytest.raises(TutorialError, match="post-LN encoders"):
        cm.decompx_prediction(model, model.to_tokens("The keys"), position=-1)
    with pytest.raises(TutorialError, match="classifier"):
        cm.decompx_prediction(bridge, toks, classifier=torch.nn.Linear(2, 2))
    with pytest.raises(TutorialError, match="dtype"):
        cm.decompx(bridge, toks[0], dtype=torch.float16)


def test_cue_table_row_sums_to_the_agreement_logit_difference(tiny_bert):
    """The cue table's prediction-level row: DecompX contributions to the agreement logit
    difference at the [MASK] sum to that difference computed by the Hugging Face model."""
    from tutorial_utils.context_mixing.evaluation import (DECOMPX_PREDICTION, _verb_ids,
                                                          decompx_cue_contributions,
                                                          evaluate_on_cue, sva_cue_examples)

    bridge, hf, _ = tiny_bert
    ex = sva_cue_examples(bridge, n=6, seed=1)
    rows = decompx_cue_contributions(bridge, ex)
    sing, plur = _verb_ids(bridge)
    with torch.no_grad():
        logits = hf(input_ids=ex.tokens).logits.float()[torch.arange(len(ex)), ex.query_pos]
    diff = logits[:, plur].sum(-1) - logits[:, sing].sum(-1)
    want = torch.where(torch.tensor(ex.plural), diff, -diff)
    assert float((rows.sum(1) - want).abs().max()) <= PRED_RTOL * float(logits.abs().max())
    ev = evaluate_on_cue(bridge, ex, methods=["attention"], prediction=True)
    assert ev.methods == ["attention", DECOMPX_PREDICTION]
    assert torch.equal(ev.signed, rows.cpu())  # the signed row is kept, not recomputed
    assert torch.equal(ev.rows[DECOMPX_PREDICTION], rows.abs().cpu())
    margin = rows[torch.arange(len(ex)), ex.cue_pos] - rows[torch.arange(len(ex)), ex.distractor_pos]
    assert ev.share[DECOMPX_PREDICTION] == float((margin > 0).float().mean())
