"""The checks of notebook 01's exercises: the reference solutions pass, and typical mistakes fail
with a message that names the mistake."""

from __future__ import annotations

import random

import pytest
import torch

from tutorial_utils import input_attribution as A
from tutorial_utils import probing as P
from tutorial_utils.course.checks import nb01


# ---- reference solutions (as in the notebook) and typical mistakes ----------------------------

def gxi(model, tokens, target_fn):
    x = A.token_embeddings(model, tokens)
    _, g = A.embedding_gradients(model, tokens, target_fn, embeds=x)
    return (g * x).sum(-1)


def gxi_saliency(model, tokens, target_fn):
    _, g = A.embedding_gradients(model, tokens, target_fn)
    return g.norm(dim=-1)


def gxi_unsummed(model, tokens, target_fn):
    x = A.token_embeddings(model, tokens)
    _, g = A.embedding_gradients(model, tokens, target_fn, embeds=x)
    return g * x


def _ig(offset, times_x=False):
    def ig(model, tokens, target_fn, baseline_embeds, n_steps):
        x = A.token_embeddings(model, tokens)
        total = torch.zeros_like(x)
        for k in range(n_steps):
            alpha = (k + offset) / n_steps
            _, g = A.embedding_gradients(model, tokens, target_fn,
                                         embeds=baseline_embeds + alpha * (x - baseline_embeds))
            total += g / n_steps
        return ((x if times_x else x - baseline_embeds) * total).sum(-1)
    return ig


def occlusion(model, tokens, target_fn, replacement_id, first=1):
    f_x = A.target_values(model, tokens, target_fn)
    scores = torch.zeros(tokens.shape)
    for t in range(first, tokens.shape[1]):
        occluded = tokens.clone()
        occluded[:, t] = replacement_id
        scores[:, t] = f_x - A.target_values(model, occluded, target_fn)
    return scores


def occlusion_flipped(model, tokens, target_fn, replacement_id):
    return -occlusion(model, tokens, target_fn, replacement_id)


def probe(X, y, weight_decay, bias=True, decay=True, decay_scale=0.5, penalise_bias=False):
    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=bias)
    opt = torch.optim.LBFGS([w, b] if bias else [w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y.float())
        if decay:
            loss = loss + decay_scale * weight_decay * (w ** 2).sum()
        if penalise_bias:
            loss = loss + decay_scale * weight_decay * b ** 2
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def control(tokens, pos, labels, seed):
    words = tokens[torch.arange(len(tokens)), pos].tolist()
    rng = random.Random(seed)
    pool = labels.tolist()
    table = {w: rng.choice(pool) for w in sorted(set(words))}
    return torch.tensor([table[w] for w in words])


def control_by_subject(tokens, pos, labels, seed):
    return control(tokens, torch.full_like(pos, 2), labels, seed)


def control_uniform(tokens, pos, labels, seed):
    words = tokens[torch.arange(len(tokens)), pos].tolist()
    rng = random.Random(seed)
    table = {w: rng.choice([0, 1]) for w in sorted(set(words))}
    return torch.tensor([table[w] for w in words])


def inlp(X, y, n_iterations):
    Z = X - X.mean(0)
    basis = torch.zeros(0, X.shape[1])
    for _ in range(n_iterations):
        Zp = Z - (Z @ basis.T) @ basis
        p = P.train_probe(Zp, y, standardize=False)
        w = p.weight[1] - p.weight[0]
        w = w.float() - (w.float() @ basis.T) @ basis
        basis = torch.cat([basis, (w / w.norm())[None]])
    return basis


def inlp_not_projected(X, y, n_iterations):
    """Retrains on the original data each time: finds the same direction again."""
    Z = X - X.mean(0)
    dirs = []
    for i in range(n_iterations):
        p = P.train_probe(Z[i::1], y[i::1], standardize=False)
        dirs.append((p.weight[1] - p.weight[0]).float())
    D = torch.stack(dirs)
    return D / D.norm(dim=1, keepdim=True)


def raises(*args):
    raise NotImplementedError("Exercise: fill in this part")


# ---- tests -------------------------------------------------------------------------------------

def test_toy_model_has_the_documented_attributions():
    toy, tokens, a, b = nb01._toy_case(0)
    x = toy.embed(tokens)
    got = A.gradient_x_input(toy, tokens, A.contrastive_target(a, b))
    want = torch.zeros(tokens.shape)
    want[:, -1] = x[:, -1] @ (toy.W_U[:, a] - toy.W_U[:, b])
    torch.testing.assert_close(got.float(), want, atol=1e-5, rtol=1e-5)
    # the library's IG is complete on the nonlinear toy
    toy2, tokens2, a2, b2 = nb01._toy_case(1, mixing=True)
    tgt = A.contrastive_target(a2, b2)
    ig = A.integrated_gradients(toy2, tokens2, tgt, baseline="zero", n_steps=200,
                                keep_first_token=False)
    delta = A.target_values(toy2, tokens2, tgt) - A.target_values(
        toy2, tokens2, tgt, embeds=torch.zeros_like(toy2.embed(tokens2)))
    torch.testing.assert_close(ig.sum(-1), delta, atol=1e-3, rtol=1e-3)


def test_gradient_x_input_check(model):
    assert nb01.check_gradient_x_input.judge(gxi, model).passed
    r = nb01.check_gradient_x_input.judge(gxi_saliency, model)
    assert not r.passed and "saliency" in r.message
    r = nb01.check_gradient_x_input.judge(gxi_unsummed, model)
    assert not r.passed and "sum over the embedding" in r.message
    assert "not implemented" in nb01.check_gradient_x_input.judge(raises, model).message


def test_integrated_gradients_check(model):
    assert nb01.check_integrated_gradients.judge(_ig(0.5), model).passed
    r = nb01.check_integrated_gradients.judge(_ig(0.5, times_x=True), model)
    assert not r.passed and "(x - baseline)" in r.message
    r = nb01.check_integrated_gradients.judge(_ig(0.0), model)
    assert not r.passed and "left Riemann rule" in r.message, r.message


def test_occlusion_check(model):
    assert nb01.check_occlusion.judge(occlusion, model).passed
    r = nb01.check_occlusion.judge(occlusion_flipped, model)
    assert not r.passed and "wrong sign" in r.message
    r = nb01.check_occlusion.judge(lambda *a: occlusion(*a, first=0), model)  # BOS occluded
    assert not r.passed and "position 0 (BOS)" in r.message, r.message


def test_train_probe_check():
    assert nb01.check_train_probe.judge(probe).passed
    r = nb01.check_train_probe.judge(lambda X, y, wd: probe(X, y, wd, bias=False))
    assert not r.passed and "bias" in r.message, r.message
    r = nb01.check_train_probe.judge(lambda X, y, wd: probe(X, y, wd, decay=False))
    assert not r.passed and "unregularised" in r.message, r.message
    r = nb01.check_train_probe.judge(lambda X, y, wd: probe(X, y, wd, decay_scale=1.0))
    assert not r.passed and "weight_decay / 2" in r.message, r.message
    r = nb01.check_train_probe.judge(lambda X, y, wd: probe(X, y, wd, penalise_bias=True))
    assert not r.passed and "no penalty on b" in r.message, r.message


def test_train_probe_check_reports_a_flipped_float32_probe_instead_of_crashing():
    """A float32 w pointing the wrong way reaches the cosine test against the float64 optimum
    (it used to raise a dtype error there)."""
    def flipped(X, y, wd):
        w, b = probe(X, y, wd)
        return -w.float(), b
    r = nb01.check_train_probe.judge(flipped)
    assert not r.passed and "wrong way" in r.message, r.message


def test_control_task_check():
    r = nb01.check_control_task.judge(control)
    assert r.passed, r.message
    r = nb01.check_control_task.judge(control_by_subject)
    assert not r.passed and "position 2" in r.message, r.message
    r = nb01.check_control_task.judge(control_uniform)
    assert not r.passed and "empirical" in r.message
    r = nb01.check_control_task.judge(lambda tokens, pos, labels, seed: labels)
    assert not r.passed
    # the package's control task passes too
    assert nb01.check_control_task.judge(P.control_task).passed


def test_inlp_check():
    r = nb01.check_inlp.judge(inlp)
    assert r.passed, r.message
    r = nb01.check_inlp.judge(inlp_not_projected)
    assert not r.passed and "orthogonal" in r.message, r.message

    def one_direction(X, y, n):
        return inlp(X, y, 1).repeat(n, 1)

    assert not nb01.check_inlp.judge(one_direction).passed

    from tutorial_utils.concept_erasure import inlp as library_inlp

    assert nb01.check_inlp.judge(lambda X, y, n: library_inlp(X, y, n).basis).passed
