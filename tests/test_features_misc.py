"""Superposition toy models, steering, reading features, and the training CLI."""

from __future__ import annotations

import json

import pytest
import torch

from tutorial_utils.errors import TutorialError
from tutorial_utils.features.dictionary import load_dictionary
from tutorial_utils.features.reading import (edit_feature_metric, feature_task_scores,
                                             top_activating_contexts)
from tutorial_utils.features.steering import difference_of_means, steer
from tutorial_utils.features.superposition import (ToyModel, ToyModelConfig, feature_geometry,
                                                   sample_features, toy_loss, train_toy_models)
from tutorial_utils.features.unfolded import UnfoldedGPT2
from tutorial_utils.paths import DATA_DIR
from tutorial_utils.tasks import make_task

MODEL_DIR = DATA_DIR / "models" / "tiny-gpt2-tasks"


@pytest.fixture(scope="module")
def lm():
    return UnfoldedGPT2.from_pretrained(MODEL_DIR)


# --- superposition -----------------------------------------------------------------------------
def test_geometry_of_known_arrangements():
    orth = torch.eye(3)[None]                                   # 3 features, 3 dims
    g = feature_geometry(orth)
    assert torch.allclose(g["dimensionality"], torch.ones(1, 3))
    assert float(g["dims_per_feature"]) == pytest.approx(1.0)
    anti = torch.tensor([[[1.0, -1.0]]])                        # an antipodal pair in 1 dim
    g = feature_geometry(anti)
    assert torch.allclose(g["dimensionality"], torch.full((1, 2), 0.5))
    assert float(g["dims_per_feature"]) == pytest.approx(0.5)
    angles = torch.arange(5) * 2 * torch.pi / 5                 # a pentagon in 2 dims
    pent = torch.stack([angles.cos(), angles.sin()])[None]
    assert torch.allclose(feature_geometry(pent)["dimensionality"], torch.full((1, 5), 0.4),
                          atol=1e-5)
    dropped = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])          # second feature not represented
    g = feature_geometry(dropped)
    assert int(g["represented"]) == 1 and float(g["dimensionality"][0, 1]) == 0.0


def test_toy_model_forward_and_loss_plain():
    m = ToyModel(1, 3, 2, seed=0)
    x = torch.rand(4, 1, 3)
    W, b = m.W[0].detach(), m.b[0].detach()
    expect = torch.relu(x[:, 0] @ W.T @ W + b)
    assert torch.allclose(m(x)[:, 0], expect, atol=1e-6)
    imp = torch.tensor([1.0, 0.5, 0.25])
    loss = toy_loss(x, m(x), imp)
    assert float(loss[0].detach()) == pytest.approx(float((imp * (x[:, 0] - expect) ** 2).sum(-1).mean()),
                                           rel=1e-5)


def test_sparsity_sampler_rates():
    x = sample_features(20000, torch.tensor([0.0, 0.9]), 4, torch.Generator().manual_seed(0))
    assert float((x[:, 0] > 0).float().mean()) == pytest.approx(1.0, abs=1e-3)
    assert float((x[:, 1] > 0).float().mean()) == pytest.approx(0.1, abs=0.01)


def test_sparser_features_are_squeezed_into_superposition():
    """Elhage et al.'s central result: dense features -> about m represented, orthogonal;
    sparse features -> more features than dimensions."""
    r = train_toy_models(ToyModelConfig(n_features=10, n_hidden=3, sparsities=(0.0, 0.95),
                                        steps=1500, batch_size=512, lr=3e-3, seed=0))
    g = feature_geometry(r.W)
    assert int(g["represented"][0]) <= 4
    assert int(g["represented"][1]) >= 6
    assert float(g["dims_per_feature"][0]) > 0.8 > 0.5 > float(g["dims_per_feature"][1])


def test_toy_config_refuses_bad_sparsity():
    with pytest.raises(TutorialError, match="sparsities"):
        train_toy_models(ToyModelConfig(sparsities=(1.0,)))


# --- steering ---------------------------------------------------------------------------------
def test_steering_with_zero_coefficient_is_the_model_and_a_number_direction_flips(lm):
    train = make_task("sva", lm.tokenizer, n=200, frames_split="train", seed=3)
    test = make_task("sva", lm.tokenizer, n=60, frames_split="heldout", nouns="heldout", seed=4)
    u = difference_of_means(lm, train, 3, train.meta["plural"])
    plural = torch.tensor(test.meta["plural"])
    res = steer(lm, test, 3, u, [0.0, -40.0], rows=plural)
    base = test.subset(plural.nonzero()[:, 0].tolist())
    assert torch.allclose(res.metric[0], base.metric(lm.logits(base.clean_tokens),
                                                     per_example=True), atol=1e-5)
    assert float(res.flip_rate[0]) == 0.0
    assert float(res.flip_rate[1]) > 0.5          # pushing plural subjects to singular flips
    alone = steer(lm, test, 3, u, [-40.0], rows=plural)   # the 0 row is stacked, not returned
    assert alone.coefficients == [-40.0] and alone.metric.shape == (1, len(base))
    assert torch.allclose(alone.metric[0], res.metric[1], atol=1e-5)
    assert float(alone.flip_rate[0]) == float(res.flip_rate[1])
    rnd = torch.randn(128, generator=torch.Generator().manual_seed(0))
    control = steer(lm, test, 3, rnd, [-40.0], rows=plural)
    assert float(control.flip_rate[0]) < 0.25     # a random direction of the same norm does not


def test_steer_refuses_bad_direction(lm):
    ds = make_task("sva", lm.tokenizer, n=4)
    with pytest.raises(TutorialError, match="direction"):
        steer(lm, ds, 3, torch.zeros(128), [1.0])
    with pytest.raises(TutorialError, match="direction"):
        steer(lm, ds, 3, torch.ones(5), [1.0])


# --- reading the shipped SAE ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sae():
    return load_dictionary(DATA_DIR / "dictionaries" / "sae_resid3_topk")


def test_top_contexts_are_the_largest_activations(lm, sae):
    from tutorial_utils.course.dictionaries import corpus_tokens

    toks = corpus_tokens(lm, 40, 99)
    ctx = top_activating_contexts(lm, sae, toks, [0, 5], k=4, window=5)
    x = lm.activations(toks, ("resid_pre.3",))["resid_pre.3"]
    f = sae.encode(x)
    f[:, 0] = float("-inf")
    for feat, rows in ctx.items():
        top = f[..., feat].flatten().topk(len(rows)).values
        assert [round(c.activation, 4) for c in rows] == [round(float(v), 4) for v in top]
        for c in rows:
            assert c.token == lm.tokenizer.decode([int(toks[c.doc, c.pos])])


def test_ablating_a_feature_with_scale_one_changes_nothing(lm, sae):
    ds = make_task("sva", lm.tokenizer, n=20, frames_split="heldout", seed=2)
    base = ds.metric(lm.logits(ds.clean_tokens), per_example=True)
    same = edit_feature_metric(lm, sae, ds, 3, scale=1.0)
    assert torch.allclose(base, same, atol=1e-5)
    scores = feature_task_scores(lm, sae, ds, ds.meta["plural"])
    assert scores.shape == (sae.config.n_features,)


# --- the CLI (tiny run) ---------------------------------------------------------------------------
def test_training_cli_writes_loadable_dictionaries_and_cards(tmp_path):
    from tutorial_utils.course.dictionaries import main

    main(["--out", str(tmp_path), "--train-docs", "20", "--eval-docs", "6", "--steps", "15",
          "--batch-size", "64", "--task-n", "8", "--only", "transcoder_m1", "sae_resid3_topk"])
    for name in ("transcoder_m1", "sae_resid3_topk"):
        d = load_dictionary(tmp_path / name)
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        for key in ("l0", "fve", "loss_recovered", "dead_fraction"):
            assert key in meta["metrics"]
        assert "kept" in meta["tasks"]["sva"] and meta["wall_time_s"] > 0
        card = (tmp_path / f"{name}.md").read_text()
        assert "loss recovered" in card and "Command:" in card
        assert d.config.layer == (1 if name == "transcoder_m1" else 3)
        if name.startswith("sae"):
            assert "Features tied to task variables" in card
            assert 0.0 <= meta["task_features"]["sva"]["steer_singular"]["20.0"]["flip_rate"] <= 1.0
    assert "transcoder_m1" in (tmp_path / "README.md").read_text()


def test_superposition_plots_have_titles_and_labels():
    import matplotlib

    matplotlib.use("Agg")
    from tutorial_utils.features.plots import plot_dimensionality, plot_superposition

    toy = train_toy_models(ToyModelConfig(n_features=6, n_hidden=2, sparsities=(0.0, 0.9),
                                          steps=50))
    fig = plot_superposition(toy)
    assert fig.axes[0].get_title().startswith("S = 0.0") and fig.axes[0].get_xlabel()
    fig = plot_dimensionality(toy)
    assert fig.axes[0].get_xlabel().startswith("1 / (1 - S)")


def test_feature_ablation_equals_subtracting_its_write_by_hand(lm, sae):
    ds = make_task("sva", lm.tokenizer, n=12, frames_split="heldout", seed=2)
    feats = [3, 255]
    ours = edit_feature_metric(lm, sae, ds, feats, scale=0.0)
    x = lm.activations(ds.clean_tokens, ("resid_pre.3",))["resid_pre.3"]
    rows, pos = torch.arange(len(ds)), ds.answer_pos
    f = sae.encode(x[rows, pos])
    delta = torch.zeros_like(x)
    for i in feats:
        delta[rows, pos] -= f[:, i:i + 1] * sae.W_dec[:, i]

    logits = lm.run(ds.clean_tokens, resid_edit=lambda l, r: r + delta if l == 3 else r).logits
    assert torch.allclose(ours, ds.metric(logits, per_example=True), atol=1e-5)


@pytest.mark.parametrize("name", ["sae_resid3_relu", "sae_resid3_topk", "transcoder_m0",
                                  "transcoder_m1", "transcoder_m2", "transcoder_m3"])
def test_shipped_cards_state_what_the_weights_measure(lm, name):
    """Recompute L0, variance explained and dead share on the card's evaluation documents."""
    from tutorial_utils.course.dictionaries import corpus_tokens
    from tutorial_utils.features.evaluation import reconstruction_stats

    d = load_dictionary(DATA_DIR / "dictionaries" / name)
    meta = json.loads((DATA_DIR / "dictionaries" / f"{name}.json").read_text())
    docs = corpus_tokens(lm, meta["data"]["eval_docs"], meta["data"]["corpus_seed"] + 1)
    c = d.config
    acts = lm.activations(docs, (f"{c.site_in}.{c.layer}", f"{c.site_out}.{c.layer}"))
    x = acts[f"{c.site_in}.{c.layer}"].reshape(-1, c.d_in)
    y = acts[f"{c.site_out}.{c.layer}"].reshape(-1, c.d_out)
    stats = reconstruction_stats(d, x, y)
    assert stats.fve == pytest.approx(meta["metrics"]["fve"], abs=1e-3)
    assert stats.l0 == pytest.approx(meta["metrics"]["l0"], abs=1e-2)
    assert stats.dead_fraction == pytest.approx(meta["metrics"]["dead_fraction"], abs=1e-3)
    assert 10 <= stats.l0 <= 30


def test_corpus_documents_are_reproducible(lm):
    """The same seed gives the same documents (a tokenizer's get_vocab() order varies)."""
    from tutorial_utils.course.dictionaries import corpus_tokens

    assert torch.equal(corpus_tokens(lm, 50, 3), corpus_tokens(lm, 50, 3))


def test_training_works_with_gradients_turned_off():
    """Notebooks and the large-model sections run under torch.no_grad(): the trainers turn
    gradients on for themselves."""
    from tutorial_utils.features.dictionary import DictionaryConfig, SparseDictionary
    from tutorial_utils.features.superposition import ToyModelConfig, train_toy_models
    from tutorial_utils.features.training import TrainConfig, train_dictionary

    with torch.no_grad():
        toy = train_toy_models(ToyModelConfig(steps=5, batch_size=16))
        d = SparseDictionary(DictionaryConfig("sae", 8, 8, 16, "topk", k=2))
        x = torch.randn(64, 8)
        before = d.W_enc.clone()
        train_dictionary(d, x, x, TrainConfig(steps=3, batch_size=16))
    assert torch.isfinite(toy.final_loss).all() and not torch.equal(before, d.W_enc)
