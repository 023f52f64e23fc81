"""Probing: activation collection, the logistic-regression probe's optimality, control tasks,
selectivity on subject number, and the direction-ablation causal check."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils import probing as P
from tutorial_utils.tasks import make_sva


def test_collect_activations_matches_run_with_cache(model):
    ds = make_sva(model, n=10, frames_split="train", seed=0)
    names = ["blocks.0.hook_resid_pre", "blocks.1.attn.hook_z"]
    acts = P.collect_activations(model, ds.clean_tokens, names, batch_size=3)
    with torch.no_grad():
        _, cache = model.run_with_cache(ds.clean_tokens, names_filter=names)
    # the rows are right-padded with BOS: real positions are the run's, padded ones NaN
    real = torch.arange(ds.clean_tokens.shape[1])[None] <= ds.answer_pos[:, None]
    assert not real.all()
    for n in names:
        torch.testing.assert_close(acts[n][real], cache[n][real])
        assert torch.isnan(acts[n][~real]).all()
    at = P.collect_activations(model, ds.clean_tokens, names, pos=ds.answer_pos, batch_size=4)
    rows = torch.arange(len(ds))
    torch.testing.assert_close(at[names[0]], cache[names[0]][rows, ds.answer_pos])
    with pytest.raises(ValueError, match=r"pos\[\d+\] = \d+ is a padded position"):
        P.residual_stream(model, ds.clean_tokens, pos=-1)
    resid = P.residual_stream(model, ds.clean_tokens, pos=-1,
                              attention_mask=torch.ones_like(ds.clean_tokens))
    assert resid.shape == (model.cfg.n_layers + 1, len(ds), model.cfg.d_model)
    with torch.no_grad():
        logits = model(ds.clean_tokens)
    # the last residual, through the final LayerNorm and unembedding, gives the logits
    final = model.ln_final(resid[-1][:, None])[:, 0] @ model.W_U + model.b_U
    torch.testing.assert_close(final, logits[:, -1], atol=1e-4, rtol=1e-4)


def test_collect_activations_bad_input(model):
    tokens = model.to_tokens("The keys on the cabinet")
    with pytest.raises(ValueError, match="no hook"):
        P.collect_activations(model, tokens, ["blocks.0.hook_resid_typo"])
    with pytest.raises(ValueError, match="pos 6 out of range for sequences of length 6"):
        P.collect_activations(model, tokens, ["blocks.0.hook_resid_pre"], pos=tokens.shape[1])
    with pytest.raises(ValueError, match="no hook"):
        P.collect_activations(model, tokens, [f"blocks.{model.cfg.n_layers}.hook_resid_pre"])


def _toy(n=300, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    w = torch.randn(d, generator=g)
    y = (X @ w + 0.3 * torch.randn(n, generator=g) > 0).long()
    return X * torch.linspace(0.1, 10, d), y  # features on very different scales


def test_probe_reaches_the_optimum_of_its_loss():
    """At the returned weights the gradient of the regularised loss vanishes."""
    X, y = _toy()
    probe = P.train_probe(X, y, weight_decay=1e-2)
    Z = (X.double() - probe.mean) / probe.scale
    W = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    gW, gb = torch.autograd.grad(P.probe_loss(Z, y, W, b, 1e-2), (W, b))
    assert float(gW.abs().max()) < 1e-6 and float(gb.abs().max()) < 1e-6
    assert probe.accuracy(X, y) > 0.9
    # the direction is a unit vector whose projection separates the classes
    u = probe.direction()
    assert abs(float(u.norm()) - 1) < 1e-6
    proj = X @ u
    assert float(proj[y == 1].mean()) > float(proj[y == 0].mean())


def test_probe_multiclass_and_bad_input():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 5, generator=g) * 4
    y = torch.arange(150) % 3
    X = centres[y] + torch.randn(150, 5, generator=g)
    probe = P.train_probe(X, y)
    assert probe.weight.shape == (3, 5) and probe.accuracy(X, y) > 0.95
    with pytest.raises(ValueError, match="labels must lie"):
        P.train_probe(X, y, n_classes=2)
    with pytest.raises(ValueError, match="X must be"):
        P.train_probe(X, y[:-1])


def test_control_labels_are_per_type_and_follow_the_label_distribution():
    types = ["keys", "key", "dogs", "dog", "keys", "dog", "cats"] * 20
    labels = torch.tensor([1, 0, 1, 0, 1, 0, 1] * 20)
    ctrl = P.control_labels(types, labels, seed=0)
    for w in set(types):
        vals = {int(c) for t, c in zip(types, ctrl) if t == w}
        assert len(vals) == 1  # one label per word type
    assert set(ctrl.tolist()) <= {0, 1}
    # across seeds, some type's control label differs from its real label
    assert any(not torch.equal(P.control_labels(types, labels, seed=s), labels)
               for s in range(5))


def test_control_task_labels_the_token_at_the_probed_position():
    """Hewitt & Liang's definition: the control label of an example is C(v) for the word type v
    at the probed position, nothing else. Examples that share that token share the label
    whatever the rest of the sequence; the labels of the other positions play no part."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(100, (400, 6), generator=g)
    pos = torch.randint(1, 6, (400,), generator=g)
    labels = torch.randint(2, (400,), generator=g)
    ctrl = P.control_task(tokens, pos, labels, seed=3)
    at = tokens[torch.arange(400), pos]
    assert P.probed_word_types(tokens, pos) == at.tolist()
    for v in at.unique():
        assert ctrl[at == v].unique().numel() == 1
    # changing every token but the probed one changes nothing
    other = torch.randint(100, (400, 6), generator=torch.Generator().manual_seed(9))
    other[torch.arange(400), pos] = at
    assert torch.equal(P.control_task(other, pos, labels, seed=3), ctrl)
    # it is control_labels applied to the probed tokens (a plain dict-based recomputation)
    import random
    rng = random.Random(3)
    pool = labels.tolist()
    table = {w: rng.choice(pool) for w in sorted(set(at.tolist()), key=str)}
    assert ctrl.tolist() == [table[int(w)] for w in at]
    # an int position works too
    assert torch.equal(P.control_task(tokens, 2, labels, seed=3),
                       P.control_labels(tokens[:, 2].tolist(), labels, seed=3))


def test_control_labels_follow_the_empirical_label_distribution():
    """C(v) is drawn from the empirical distribution of the labels over examples: with 20%
    positives, about 20% of 2,000 types are labelled 1 (binomial sd 0.009)."""
    types = list(range(2000))
    labels = torch.tensor([1] * 400 + [0] * 1600)
    share = float(P.control_labels(types, labels, seed=0).float().mean())
    assert abs(share - 0.2) < 0.04
    three = torch.tensor([0, 1, 2] * 10)
    assert set(P.control_labels(list(range(30)) * 1, three, seed=1).tolist()) <= {0, 1, 2}


def test_splits():
    groups = ["a", "a", "b", "c", "c", "d"]
    tr, te = P.split_by_group(groups, test_groups=["c"])
    assert tr.tolist() == [0, 1, 2, 5] and te.tolist() == [3, 4]
    with pytest.raises(ValueError, match="do not occur"):
        P.split_by_group(groups, test_groups=["z"])
    tr, te = P.random_split(10, 0.3, seed=0)
    assert len(te) == 3 and set(tr.tolist()) | set(te.tolist()) == set(range(10))
    acts = torch.randn(2, 6, 3)
    with pytest.raises(ValueError, match="share"):
        P.probe_layers(acts, torch.tensor([0, 1] * 3), torch.tensor([0, 1, 2]),
                       torch.tensor([2, 3]))


def test_project_out_and_identity_ablation(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 7, model.cfg.d_model, generator=g)
    u = torch.randn(model.cfg.d_model, generator=g)
    y = P.project_out(x, u)
    assert float((y @ (u / u.norm())).abs().max()) < 1e-5
    y2 = P.project_out(x, u, value=3.0)
    torch.testing.assert_close(y2 @ (u / u.norm()), torch.full((4, 7), 3.0))
    # setting each example's projection to its own value changes nothing
    ds = make_sva(model, n=6, frames_split="train", seed=2)
    hook = "blocks.2.hook_resid_pre"
    acts = P.collect_activations(model, ds.clean_tokens, hook, pos=ds.answer_pos)[hook]
    own = acts @ (u / u.norm())
    same = P.ablate_direction(model, ds.clean_tokens, hook, u, pos=ds.answer_pos, value=own)
    with torch.no_grad():
        ref = model(ds.clean_tokens)
    torch.testing.assert_close(same, ref, atol=1e-4, rtol=1e-4)
    changed = P.ablate_direction(model, ds.clean_tokens, hook, u, pos=ds.answer_pos,
                                 value=own + 50.0)
    assert float((changed - ref).abs().max()) > 1e-2
    with pytest.raises(ValueError, match="d_model"):
        P.ablate_direction(model, ds.clean_tokens, hook, u[:5])


def _subject_number_data(model, n, nouns, seed):
    """Residual stream at the last prompt position, subject number, and the word type the
    probe reads (the token at that position), as Hewitt & Liang's control task needs."""
    feats, labels, types = [], [], []
    for attractor in ("same", "opposite"):
        ds = make_sva(model, n=n, frames_split="train", nouns=nouns, attractor=attractor,
                      seed=seed)
        feats.append(P.residual_stream(model, ds.clean_tokens, pos=ds.answer_pos))
        labels += [int(p) for p in ds.meta["plural"]]
        types += P.probed_word_types(ds.clean_tokens, ds.answer_pos)
    return torch.cat(feats, 1), torch.tensor(labels), types


def test_probe_beats_its_control_task_on_subject_number(model):
    """Subject number at the last prompt position (where the verb is predicted). Attractors of
    both numbers, so the last token's own number says nothing about the subject's. The task
    probe must beat the Hewitt-Liang control task (one random label per type of the token at
    the probed position, which the representation there encodes) on the same split:
    selectivity > 0.1 at the probe's best layer; on held-out nouns it must also beat chance."""
    acts, y, types = _subject_number_data(model, 150, "all", seed=0)
    ctrl = P.control_labels(types, y, seed=0)
    tr, te = P.random_split(len(y), 0.3, seed=0)
    res = P.probe_layers(acts, y, tr, te, control=ctrl)
    best = res.best_layer
    sel = float(res.selectivity[best])
    print(f"subject-number probe: test acc by layer {res.test_accuracy.tolist()}, control "
          f"{res.control_test_accuracy.tolist()}, selectivity at layer {best}: {sel:.3f}")
    assert float(res.test_accuracy[best]) > 0.75
    assert sel > 0.1
    # on disjoint nouns
    tr_acts, tr_y, _ = _subject_number_data(model, 120, "train", seed=1)
    te_acts, te_y, _ = _subject_number_data(model, 60, "heldout", seed=2)
    probe = P.train_probe(tr_acts[best], tr_y)
    assert probe.accuracy(te_acts[best], te_y) > 0.7
