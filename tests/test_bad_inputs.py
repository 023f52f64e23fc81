"""A new user's mistakes get a TutorialError naming the argument, what was expected and the fix,
raised before any heavy work: never an obscure torch/transformers traceback, never a silent
wrong answer (issue 10). One test per case."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tutorial_utils import input_attribution as A
from tutorial_utils import patching as P
from tutorial_utils import path_patching as PP
from tutorial_utils.circuits import Graph, eap_scores, evaluate_graph
from tutorial_utils.faithfulness import circuit_faithfulness
from tutorial_utils.tasks import TaskDataset, make_task
from tutorial_utils.errors import TutorialError


@pytest.fixture(scope="module")
def gt(hooked_model):
    return make_task("greater_than", hooked_model, n=4, seed=5)


def _mean_logit(logits, ds):
    return logits[:, -1].float().mean(-1).reshape(-1, len(ds)).mean(1)


def test_token_ids_outside_the_vocabulary(hooked_model, gt):
    V = hooked_model.cfg.d_vocab
    bad = TaskDataset.from_tokens(gt.clean_tokens + V, gt.corrupted_tokens, _mean_logit)
    with pytest.raises(TutorialError, match=r"outside the vocabulary \[0, \d+\).*to_tokens"):
        P.patching_sweep(hooked_model, bad, "z", ("layer", "head"), progress=False)
    with pytest.raises(TutorialError, match="outside the vocabulary"):
        evaluate_graph(hooked_model, Graph.from_model(hooked_model), bad)
    with pytest.raises(TutorialError, match="outside the vocabulary"):
        A.saliency(hooked_model, gt.clean_tokens + V, A.logit_target(5))


def test_prompts_longer_than_the_context(hooked_model):
    n_ctx = hooked_model.cfg.n_ctx
    toks = torch.zeros(1, n_ctx + 1, dtype=torch.long)
    long = TaskDataset.from_tokens(toks, toks, _mean_logit)
    with pytest.raises(TutorialError, match="exceeds the model's context"):
        PP.edge_patching(hooked_model, long, [[("a0.h0", "logits")]])
    with pytest.raises(TutorialError, match="exceeds the model's context"):
        A.saliency(hooked_model, toks, A.logit_target(5))


def test_float_tokens(hooked_model, gt):
    with pytest.raises(TutorialError, match="integer token ids"):
        TaskDataset.from_tokens(gt.clean_tokens.float(), gt.corrupted_tokens, _mean_logit)
    with pytest.raises(TutorialError, match="integer tensor"):
        A.saliency(hooked_model, gt.clean_tokens.float(), A.logit_target(5))


def test_empty_datasets(hooked_model, gt):
    empty = gt.subset([])
    with pytest.raises(TutorialError, match="empty"):
        eap_scores(hooked_model, Graph.from_model(hooked_model), empty)
    with pytest.raises(TutorialError, match="empty"):
        P.patching_sweep(hooked_model, empty, "z", ("layer", "head"), progress=False)
    with pytest.raises(TutorialError, match="empty"):
        circuit_faithfulness(hooked_model, empty, ["a0.h0"])
    with pytest.raises(TutorialError, match="empty"):
        empty.metric(torch.zeros(0, 3, hooked_model.cfg.d_vocab))
    with pytest.raises(TutorialError, match="positive integer number of examples"):
        make_task("greater_than", hooked_model, n=0)


def test_batch_size_zero(hooked_model, gt):
    g = Graph.from_model(hooked_model)
    for call in (lambda: evaluate_graph(hooked_model, g, gt, batch_size=0),
                 lambda: eap_scores(hooked_model, g, gt, batch_size=0),
                 lambda: A.integrated_gradients(hooked_model, gt.clean_tokens, A.logit_target(5),
                                                batch_size=0)):
        with pytest.raises(TutorialError, match="batch_size must be an integer >= 1"):
            call()


@pytest.fixture
def no_boot(monkeypatch):
    """Loading weights fails the test: every check must come before it."""
    import tutorial_utils.models as M

    def boom(*args, **kwargs):
        raise AssertionError("weights were loaded before the arguments were checked")

    monkeypatch.setattr(M, "_boot", boom)
    return M


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps", "gpu"])
def test_unavailable_device_is_refused_before_loading(no_boot, device):
    if device.startswith("cuda") and torch.cuda.device_count() > 3:
        pytest.skip("this machine has the CUDA devices")
    with pytest.raises(TutorialError, match=f"device={device!r}"):
        no_boot.load_model("offline", device=device, verbose=False)


def test_unknown_hook_options_are_refused_before_loading(no_boot):
    with pytest.raises(TutorialError, match=r"unknown hook options \['attn_results'\]"):
        no_boot.load_model("offline", hooks={"attn_results": True}, verbose=False)
    with pytest.raises(TutorialError, match="hooks must be True/False or a dict"):
        no_boot.load_model("offline", hooks="all", verbose=False)


def test_model_without_hooks_is_refused_by_edge_methods(model, hooked_model, gt):
    g = Graph.from_model(model)
    for call in (lambda: eap_scores(model, g, gt),
                 lambda: evaluate_graph(model, g, gt),
                 lambda: PP.path_patching(model, gt, None, ["logits"]),
                 lambda: circuit_faithfulness(model, gt, ["a0.h0"])):
        with pytest.raises(TutorialError, match=r"load_model\(\.\.\., hooks=True\)"):
            call()


def test_foreign_logit_target_id(model):
    toks = model.to_tokens("The war lasted from the year 1741 to the year 17")
    V = model.cfg.d_vocab
    with pytest.raises(TutorialError, match="outside the vocabulary.*another tokenizer"):
        A.saliency(model, toks, A.logit_target(V + 7))
    with pytest.raises(TutorialError, match="outside the vocabulary"):
        A.integrated_gradients(model, toks, A.prob_target(50256 if V < 50256 else V), n_steps=2)
    with pytest.raises(TutorialError, match="must be integer ids.*3.5"):
        A.logit_target(3.5)


def test_cache_of_other_prompts_of_the_same_shape(model, gt):
    """Compared by token ids (tests/test_logit_lens.py covers the cache without hook_embed)."""
    from tutorial_utils import logit_lens as LL

    other = gt.corrupted_tokens
    assert other.shape == gt.clean_tokens.shape and not torch.equal(other, gt.clean_tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(other)
    with pytest.raises(TutorialError, match="token embeddings differ"):
        LL.logit_lens(model, gt.clean_tokens, -1, [5, 6], cache=cache)


def test_truncated_checkpoint_files(tmp_path, no_boot):
    from tutorial_utils.paths import DATA_DIR

    src = DATA_DIR / "models" / "tiny-gpt2-tasks"
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(TutorialError, match=r"model\.safetensors is truncated"):
        no_boot.load_model(str(dst), verbose=False)
    weights.write_bytes(data)
    (dst / "config.json").write_text("{ not json")
    with pytest.raises(TutorialError, match=r"config\.json is not valid JSON"):
        no_boot.load_model(str(dst), verbose=False)


def test_corrupt_notebook_given_to_the_exercise_generator(tmp_path, capsys):
    from tutorial_utils.course.exercises import generate_all, main

    (tmp_path / "01_broken.ipynb").write_text('{"cells": [')
    with pytest.raises(TutorialError, match=r"01_broken\.ipynb: not a readable notebook"):
        generate_all(tmp_path, tmp_path / "exercises", check=False)
    problems = generate_all(tmp_path, tmp_path / "exercises", check=True)
    assert any("01_broken.ipynb" in p for p in problems)
    assert main(["--notebooks-dir", str(tmp_path)]) == 1
    assert "01_broken.ipynb" in capsys.readouterr().err


def test_more_mistakes(hooked_model, gt):
    g = Graph.from_model(hooked_model)
    with pytest.raises(TutorialError, match="TaskDataset.from_tokens"):
        PP.edge_patching(hooked_model, (gt.clean_tokens, gt.corrupted_tokens),
                         [[("a0.h0", "logits")]])
    with pytest.raises(TutorialError, match="metric returned shape"):
        evaluate_graph(hooked_model, g, gt, metric=lambda logits, ds: logits.mean(-1))
    with pytest.raises(TutorialError, match="graph is for 2 layers"):
        eap_scores(hooked_model, Graph(2, 4), gt)
    with pytest.raises(TutorialError, match="unknown sender 'a0.h9'"):
        PP.path_patching(hooked_model, gt, ["a0.h9"], ["logits"])
    with pytest.raises(TutorialError, match="not an edge"):
        g.edge_index("m3->a0.h0.q")
    with pytest.raises(TutorialError, match="n_layers must be an integer"):
        Graph(0, 4)
    with pytest.raises(TutorialError, match="not a saved circuit"):
        Graph.from_dict(json.loads('{"n_layers": 2}'))


def test_encoder_edge_methods_refuse_clearly():
    """TransformerLens has no per-head outputs for BERT-family encoders: hooks=True and the
    edge methods say so (instead of a NotImplementedError from inside the bridge, or advice to
    load with hooks=True, which cannot work)."""
    from tutorial_utils.circuits.edge_attribution import eap_scores
    from tutorial_utils.graph import Graph
    from tutorial_utils.models import load_encoder
    from tutorial_utils.tasks.base import TaskDataset
    from tutorial_utils.errors import TutorialError

    with pytest.raises(TutorialError, match="per-head attention outputs"):
        load_encoder("tiny-bert-tasks", hooks=True, verbose=False)
    enc = load_encoder("tiny-bert-tasks", verbose=False)
    toks = enc.to_tokens("The keys on the cabinet [MASK] old")
    corr = enc.to_tokens("The key on the cabinet [MASK] old")
    data = TaskDataset.from_tokens(toks, corr, lambda logits, ds: logits[:, 5, 10].reshape(-1))
    with pytest.raises(TutorialError, match="decoders only"):
        eap_scores(enc, Graph.from_model(enc), data)


def test_encoder_activation_patching_runs_on_hook_z():
    """What the README's table claims for encoders: head patching on hook_z runs; patching the
    clean run into itself changes nothing (the invariant), a real corruption moves the metric."""
    import torch

    from tutorial_utils import patching
    from tutorial_utils.models import load_encoder
    from tutorial_utils.tasks.base import TaskDataset

    enc = load_encoder("tiny-bert-tasks", verbose=False)
    toks = enc.to_tokens("The keys on the cabinet [MASK] old")
    corr = enc.to_tokens("The key on the cabinet [MASK] old")
    are = enc.tokenizer.convert_tokens_to_ids("are")

    def metric(logits, ds):
        return logits[:, 6, are].reshape(-1, len(ds)).mean(-1)

    same = patching.patch_heads(enc, TaskDataset.from_tokens(toks, toks.clone(), metric))
    clean = float(metric(enc(toks), TaskDataset.from_tokens(toks, toks, metric))[0])
    assert same.values.shape == (enc.cfg.n_layers, enc.cfg.n_heads)
    assert torch.allclose(same.values, torch.full_like(same.values, clean), atol=1e-5)
    moved = patching.patch_heads(enc, TaskDataset.from_tokens(toks, corr, metric))
    assert torch.isfinite(moved.values).all() and (moved.values - clean).abs().max() > 1e-3
