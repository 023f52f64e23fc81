"""The model-randomisation sanity check of Adebayo et al. (2018), cascading from the top layer
down (issue 24): the groups, the exact restoration of the weights, and every step of
``cascading_randomization`` against a plain computation (weights re-drawn by a loop written
here from the documented formula, selected by the Hugging Face parameter names; saliency by a
hand-written hook and autograd; Spearman by SciPy)."""

from __future__ import annotations

import re
import zlib

import pytest
import torch

from tutorial_utils import input_attribution as A
from tutorial_utils.errors import TutorialError

scipy_stats = pytest.importorskip("scipy.stats")

PROMPTS = ["The keys on the cabinet", "The doctor near the windows"]


@pytest.fixture(scope="module")
def case(model):
    toks = model.to_tokens(PROMPTS[0])
    are, is_ = model.to_single_token(" are"), model.to_single_token(" is")
    return toks, A.contrastive_target(are, is_), (are, is_)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _plain_group(name: str, n_layers: int) -> str | None:
    """The group of a GPT-2 parameter from its Hugging Face name alone."""
    m = re.match(r"transformer\.h\.(\d+)\.", name)
    if m:
        return f"block {int(m.group(1))}"
    if name.startswith(("transformer.ln_f", "lm_head")):
        return "output"
    return None  # wte, wpe: the input


def _plain_randomise(model, groups: set[str], seed: int) -> None:
    """p <- mean(p) + std(p) * z, z ~ N(0, 1) from Generator((seed * 1_000_003 + crc32(name))
    mod 2**63), for every parameter of the given groups (the module docstring's formula)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if _plain_group(name, model.cfg.n_layers) in groups:
                g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode()))
                                                  % 2**63)
                z = torch.randn(p.shape, generator=g)
                p.copy_(p.mean() + p.std() * z)


def _plain_saliency(model, toks, ids):
    """||d(logit a - logit b) / d W_E[tokens]|| at the last position, by hand."""
    with torch.no_grad():
        x = model.W_E[toks].clone()
    x.requires_grad_(True)

    def put(act, hook):
        return x

    logits = model.run_with_hooks(toks, fwd_hooks=[("hook_embed", put)])
    f = logits[0, -1, ids[0]] - logits[0, -1, ids[1]]
    (g,) = torch.autograd.grad(f, x)
    return g.norm(dim=-1)


def test_layer_groups_top_down_and_complete(model):
    groups = A.layer_groups(model)
    L = model.cfg.n_layers
    assert [g for g, _ in groups] == ["output"] + [f"block {l}" for l in reversed(range(L))]
    seen = [n for _, names in groups for n in names]
    assert len(seen) == len(set(seen))
    for name, _ in model.named_parameters():
        want = _plain_group(name, L)
        got = next((g for g, names in groups if name in names), None)
        assert got == want, name


def test_randomized_layers_changes_only_its_groups_and_restores(model):
    before = _snapshot(model)
    with A.randomized_layers(model, ["output", "block 3"], seed=1):
        for name, p in model.named_parameters():
            changed = not torch.equal(p, before[name])
            # a constant parameter (a LayerNorm weight folded to ones) has std 0: it stays
            varies = bool(before[name].std() > 0)
            assert changed == (varies and _plain_group(name, 4) in {"output", "block 3"}), name
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(RuntimeError, match="boom"):
        with A.randomized_layers(model, ["block 0"]):
            raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(TutorialError, match=r"group must be one of \['output', 'block 3'"):
        with A.randomized_layers(model, ["block 9"]):
            pass


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_every_step_equals_a_plain_computation(model, case, mode):
    toks, target, ids = case
    before = _snapshot(model)
    res = A.cascading_randomization(model, toks, target, "saliency", mode=mode, seed=3)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    L = model.cfg.n_layers
    order = ["output"] + [f"block {l}" for l in reversed(range(L))]
    assert res.labels == ["trained"] + order
    T = toks.shape[1]
    cols = torch.arange(T) >= 1  # the default mask: every real token but the opening BOS
    assert torch.equal(res.mask[0], cols)
    trained = _plain_saliency(model, toks, ids)
    for k in range(len(order) + 1):
        groups = set() if k == 0 else (set(order[:k]) if mode == "cascading" else {order[k - 1]})
        assert set(res.randomized[k]) == groups
        _plain_randomise(model, groups, seed=3)
        want = _plain_saliency(model, toks, ids)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(before[n])
        torch.testing.assert_close(res.attributions[k, 0], want[0].detach(), atol=1e-5,
                                   rtol=1e-4)
        rho = scipy_stats.spearmanr(want[0, 1:].numpy(), trained[0, 1:].numpy()).statistic
        assert abs(float(res.spearman[k, 0]) - rho) < 1e-9
        rho_abs = scipy_stats.spearmanr(want[0, 1:].abs().numpy(),
                                        trained[0, 1:].abs().numpy()).statistic
        assert abs(float(res.spearman_abs[k, 0]) - rho_abs) < 1e-9
    assert float(res.spearman[0, 0]) == 1.0
    # randomising the whole network moves the map: the check can fail a method
    assert res.attributions[-1].ne(res.attributions[0]).any()


def test_cascade_with_integrated_gradients_and_a_batch(model):
    from tutorial_utils.tasks import make_sva

    ds = make_sva(model, n=6, frames_split="all", seed=2)
    target = A.contrastive_target(ds.candidate_ids[:, 0], ds.candidate_ids[:, 6],
                                  pos=ds.answer_pos)
    res = A.cascading_randomization(model, ds.clean_tokens, target, "integrated_gradients",
                                    n_steps=8)
    ig = A.integrated_gradients(model, ds.clean_tokens, target, n_steps=8)
    torch.testing.assert_close(res.attributions[0], ig, atol=1e-6, rtol=0)
    # right padding: the compared positions are the real tokens after BOS
    real = torch.arange(ds.clean_tokens.shape[1])[None] <= ds.answer_pos[:, None]
    real[:, 0] = False
    assert torch.equal(res.mask, real)
    assert res.mean().shape == (model.cfg.n_layers + 2,)
    assert float(res.mean()[0]) == 1.0
    # the last cascading step is every group random at once
    with A.randomized_layers(model, [g for g, _ in A.layer_groups(model)]):
        last = A.integrated_gradients(model, ds.clean_tokens, target, n_steps=8)
    torch.testing.assert_close(res.attributions[-1], last, atol=1e-6, rtol=0)


def test_randomized_weights_is_the_last_cascade_step(model):
    """All at once is the plain formula over every group (the unembedding and final norm
    included, the input embeddings not), the same draw for the same seed as
    ``randomized_layers`` over all groups; ``include`` filters names within the groups."""
    before = _snapshot(model)
    groups = {g for g, _ in A.layer_groups(model)}
    with A.randomized_weights(model, seed=2):
        got = _snapshot(model)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    _plain_randomise(model, groups, seed=2)
    want = _snapshot(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])
    for name in before:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=0)
        varies = bool(before[name].std() > 0)
        assert (not torch.equal(got[name], before[name])) == (
            varies and _plain_group(name, model.cfg.n_layers) is not None), name
    with A.randomized_weights(model, seed=2, include=lambda n: n.startswith("transformer.h.1.")):
        for n, p in model.named_parameters():
            assert torch.equal(p, got[n] if n.startswith("transformer.h.1.") else before[n]), n
    with pytest.raises(TutorialError, match="selected no parameter"):
        with A.randomized_weights(model, include=lambda n: False):
            pass
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_cascade_bad_input(model, case):
    toks, target, ids = case
    with pytest.raises(TutorialError, match="mode must be one of"):
        A.cascading_randomization(model, toks, target, "saliency", mode="all")
    with pytest.raises(TutorialError, match="method must be one of"):
        A.cascading_randomization(model, toks, target, "lime")
    with pytest.raises(TutorialError, match="mask has shape"):
        A.cascading_randomization(model, toks, target, "saliency", mask=torch.ones(2, 3))
    with pytest.raises(TutorialError, match=r"must return \[batch, seq\]"):
        A.cascading_randomization(model, toks, None, lambda m: torch.zeros(3))
    erasure = lambda m: A.contrastive_erasure(m, toks, [ids[0]], [ids[1]], [toks.shape[1] - 1])  # noqa: E731
    res = A.cascading_randomization(model, toks, None, erasure)
    assert res.attributions.shape == (model.cfg.n_layers + 2, 1, toks.shape[1])
