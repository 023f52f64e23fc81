"""The "Now on GPT-2 small / BERT" sections (tutorial_utils.course.large_model_sections), run end to
end on random-weight checkpoints of GPT-2 small's and BERT-base's exact shapes, built here
without any download (issue 12, item 3).

Random weights solve no task, so nothing here asserts behaviour: only shapes, finiteness, the
12-layer head names and that nothing assumes the offline model (vocabulary, layer counts, token
strings). The sections take about 2 minutes together on a 2-core CPU (107 s measured);
deselect them with ``-m "not large_model"``. ``benchmarks/bench_large_model_sections.py`` measures each one's time
and peak memory in a fresh process.
"""

from __future__ import annotations

import math

import pytest
import torch

from tutorial_utils.course import large_model as LMS
from tutorial_utils.names import head_name, parse_head
from tutorial_utils.context_mixing import methods_for
from tutorial_utils.gpt2_tokenizer import ENDOFTEXT, GPT2_VOCAB_SIZE, load_gpt2_tokenizer
from tutorial_utils.errors import TutorialError

N_LAYERS = N_HEADS = 12  # GPT-2 small and BERT-base (transformers' config defaults)


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(torch.as_tensor(t)).all())


# --------------------------------------------------------------------------------------------
# No model needed
# --------------------------------------------------------------------------------------------


def test_skip_path_prints_one_line_and_returns_none(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for nb in LMS.SECTIONS:
        assert LMS.run_section(nb, run=None) is None
        assert LMS.run_section(nb, run=False) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 * len(LMS.SECTIONS) and all(line.startswith("Skipped") for line in out)


def test_unknown_notebook_and_bad_sizes_are_refused():
    with pytest.raises(TutorialError, match="unknown notebook"):
        LMS.run_section("99", run=False)
    with pytest.raises(TutorialError, match="n_examples"):
        LMS.section_03(object(), n_examples=0)
    with pytest.raises(TutorialError, match="kind"):
        LMS.build_random_checkpoint("gpt3", "/nonexistent")


def test_every_notebook_has_a_section_function():
    assert set(LMS.SECTION_FUNCTIONS) == set(LMS.SECTIONS)


def test_task_datasets_under_the_gpt2_tokenizer_have_enough_examples():
    """Issue 12, item 4: each task builds >= 50 distinct valid examples with GPT-2's tokenizer
    (the counts are printed for the README: pytest -s)."""
    from tutorial_utils.tasks import make_greater_than, make_ioi, make_sva

    tok = load_gpt2_tokenizer()
    counts = LMS.task_counts(tok)
    print("\nGPT-2 tokenizer task counts:", counts)
    assert counts["greater_than_start_years"] >= 50
    assert counts["sva_noun_pairs"] >= 24 and counts["sva_verb_pairs"] >= 2
    assert counts["ioi_names"] >= 50
    distinct = {
        "greater_than (canonical frame)": make_greater_than(tok, n=400, frames_split="canonical"),
        "sva (all frames, opposite attractor)": make_sva(tok, n=400, frames_split="all"),
        "sva (canonical frame)": make_sva(tok, n=400, frames_split="canonical"),
        "ioi (canonical frame)": make_ioi(tok, n=400, frames_split="canonical"),
    }
    for name, ds in distinct.items():
        n = len(set(ds.clean_prompts))
        print(f"  {name}: {n} distinct valid prompts of 400 drawn")
        assert n >= 50, name
        assert int(ds.clean_tokens.max()) < GPT2_VOCAB_SIZE


# --------------------------------------------------------------------------------------------
# Random-weight checkpoints of the published shapes
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("large_models")
    return {"gpt2": LMS.build_random_checkpoint("gpt2", root / "gpt2", seed=0),
            "bert": LMS.build_random_checkpoint("bert-base-uncased", root / "bert", seed=1)}


@pytest.fixture(scope="module")
def gpt2(checkpoints):
    from tutorial_utils.models import load_model

    torch.manual_seed(0)
    return load_model(str(checkpoints["gpt2"]), hooks=True, verbose=False)


@pytest.fixture  # per test: freed before the GPT-2 sections run (peak memory)
def bert(checkpoints):
    from tutorial_utils.models import load_encoder

    return load_encoder(str(checkpoints["bert"]), verbose=False)


@pytest.mark.large_model
@pytest.mark.slow
def test_section_00_through_run_section(checkpoints, capsys):
    """The notebook's entry point loads the checkpoints itself (as it loads gpt2 online); run
    first, before the module's models are loaded, to keep the peak memory low."""
    res = LMS.run_section("00", run=True, decoder=str(checkpoints["gpt2"]))
    out = capsys.readouterr().out
    assert "[published, not this run]" in out and "a6.h9" in out
    assert res.scores.shape == (N_LAYERS, N_HEADS) and _finite(res.scores)
    assert bool(((res.scores >= 0) & (res.scores <= 1)).all())
    assert math.isfinite(res.loss_first) and math.isfinite(res.loss_second)
    assert res.residual_error < 1e-3  # an identity of the architecture, not behaviour
    assert all(parse_head(h)[0] < N_LAYERS for h, _ in res.top)
    assert res.scores[parse_head(head_name(11, 11))].isfinite()


@pytest.mark.large_model
@pytest.mark.slow
def test_checkpoints_have_the_published_shapes(gpt2, bert):
    for m in (gpt2, bert):
        assert (m.cfg.n_layers, m.cfg.n_heads, m.cfg.d_model) == (N_LAYERS, N_HEADS, 768)
    assert gpt2.cfg.d_vocab == GPT2_VOCAB_SIZE and gpt2.cfg.n_ctx == 1024
    assert bert.cfg.d_vocab == 30522
    # GPT-2 has no <unk>: its unknown, BOS and EOS token is <|endoftext|>
    assert gpt2.tokenizer.unk_token == gpt2.tokenizer.bos_token == ENDOFTEXT
    assert gpt2.to_str_tokens("from the year 1741")[-2:] == [" 17", "41"]
    assert bert.to_str_tokens("The keys [MASK].")[0] == "[CLS]"


@pytest.mark.large_model
@pytest.mark.slow
def test_section_01(gpt2, capsys):
    res = LMS.section_01(gpt2, n_examples=16, n_attribution=2, ig_steps=8)
    assert "0.351" in capsys.readouterr().out
    for v in (res.sva_accuracy, res.gt_accuracy, res.probe_accuracy, res.control_accuracy):
        assert 0.0 <= v <= 1.0
    assert -1.0 <= res.sva_pd <= 1.0 and -1.0 <= res.gt_pd <= 1.0
    assert res.probe_layer == N_LAYERS // 2
    assert res.occlusion_token == ENDOFTEXT
    for v in res.attributions.values():
        assert v.shape[0] == 2 and _finite(v)
    assert res.agreement.shape == (4, 4) and math.isfinite(res.ig_error)


@pytest.mark.large_model
@pytest.mark.slow
def test_section_02(bert, gpt2, capsys):
    res = LMS.section_02(bert, gpt2, n_examples=4, verbose=False)
    assert "Loading weights" not in capsys.readouterr().err  # no progress bar in a notebook
    assert set(res.encoder.share) == set(methods_for(bert))
    assert set(res.decoder.share) == set(methods_for(gpt2))
    assert "decompx" in res.encoder.share and "decompx" not in res.decoder.share
    for e in (res.encoder, res.decoder):
        assert e.n == 4
        assert all(0.0 <= v <= 1.0 for v in e.share.values())
        assert all(math.isfinite(v) for v in list(e.rho_grad.values()) + list(e.rho_occ.values()))
    assert res.special_weight.shape == res.special_norm.shape == (N_LAYERS,)
    assert "[published, not this run]" in res.summary()


@pytest.mark.large_model
@pytest.mark.slow
def test_section_03(gpt2):
    res = LMS.section_03(gpt2, n_examples=4, verbose=False)
    assert res.heads.shape == (N_LAYERS, N_HEADS) and _finite(res.heads)
    assert res.mlps.shape == (N_LAYERS,) and _finite(res.mlps)
    assert res.lens_pd.shape == (N_LAYERS + 1,) and _finite(res.lens_pd)
    assert res.lens_labels[0] == "embed" and res.lens_labels[-1] == f"L{N_LAYERS - 1}"
    assert all(parse_head(h) < (N_LAYERS, N_HEADS) for h, _ in res.top_heads)
    assert "0.817" in res.summary()
    assert res.dla_upweight.shape == (len(res.dla_labels),) and _finite(res.dla_upweight)
    assert "a11.h11" in res.dla_labels and f"m{N_LAYERS - 1}" in res.dla_labels


@pytest.mark.large_model
@pytest.mark.slow
def test_section_04(gpt2):
    res = LMS.section_04(gpt2, n_ioi=4, batch=4, verbose=False)
    half = N_LAYERS // 2
    assert res.direct.shape == (N_LAYERS, N_HEADS)
    assert _finite(res.direct[half:]) and bool(res.direct[:half].isnan().all())
    for grid in list(res.attention.values()) + [res.prev_token, res.induction_scores]:
        assert grid.shape == (N_LAYERS, N_HEADS) and _finite(grid)
    assert set(res.composition) == {"q", "k", "v"}
    assert 0.0 <= res.k_composition <= 1.0 and 0.0 < res.k_composition_baseline < 1.0
    assert parse_head(res.prev_heads[0])[0] < parse_head(res.induction_heads[0])[0]
    assert all(math.isfinite(v) for v in res.composition.values())
    for h in res.prev_heads + res.induction_heads:
        assert parse_head(h)[0] < N_LAYERS
    # Wang et al.'s heads, including layer 10, are read from the 12-layer grids
    assert "a10.h0" in res.published["name mover"] and "a4.h11" in res.published["previous token"]
    assert "n/a" not in "".join(res.published.values())


@pytest.mark.large_model
@pytest.mark.slow
def test_section_05(gpt2):
    res = LMS.section_05(gpt2, n_examples=4, ig_steps=2, n_edges=[0, 100, 32491])
    assert res.n_edges_total == 32491 and res.n_nodes == 158  # GPT-2 small's graph
    assert res.n_edges == [0, 100, 32491]
    for s in res.scores.values():
        assert s.ndim == 2 and _finite(s)
    for f in res.faithfulness.values():
        assert f.shape == (3,) and _finite(f)
        # by definition the empty circuit is the corrupted run and the full graph the clean one
        assert abs(float(f[0])) < 1e-3 and abs(float(f[2]) - 1.0) < 1e-3
    assert all(e.startswith(("embed", "a", "m")) for e, _ in res.top_edges)


@pytest.mark.large_model
@pytest.mark.slow
def test_section_06(gpt2):
    """A TopK SAE trained for a few steps on the random GPT-2 small's residual stream: the
    numbers are finite and in range, and the unfolded model the section trains on computes the
    bridge's logits (the same checkpoint read without folding)."""
    from tutorial_utils.features.unfolded import UnfoldedGPT2

    res = LMS.section_06(gpt2, n_features=64, k=4, n_prompts=4, n_eval=3, steps=3, batch_size=16,
                         verbose=False)
    assert res.layer == N_LAYERS // 2 and (res.n_features, res.k, res.steps) == (64, 4, 3)
    assert res.n_train_tokens > 3 * 4 and res.n_eval_tokens > 3 * 3
    assert 0.0 < res.l0 <= 4.0 and 0.0 <= res.dead_fraction <= 1.0
    for v in (res.fve, res.loss_clean, res.loss_spliced, res.loss_zero, res.loss_recovered):
        assert math.isfinite(v)
    assert set(res.task_metric) == {"greater_than", "sva", "ioi"}
    assert all(math.isfinite(a) and math.isfinite(b) for a, b in res.task_metric.values())
    assert 0 <= res.number_feature < 64
    text = res.summary()
    assert "[published, not this run]" in text and "24,576" in text
    lm = UnfoldedGPT2.from_model(gpt2)
    tokens = gpt2.to_tokens("The keys on the cabinet")
    with torch.no_grad():   # the bridge centres the unembedding: compare log-probabilities
        assert torch.allclose(lm.logits(tokens).log_softmax(-1),
                              gpt2(tokens).float().log_softmax(-1), atol=1e-3)
