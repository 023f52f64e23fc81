"""A battery of bad and edge-case inputs to the modules of the input-side checks (issue 23):
validation, model_checks, models, input_attribution, probing, concept_erasure, logit_lens, dla,
readout, induction, plotting, gpt2_tokenizer. Organised by the class of failure each case
would be without its check:

* ``silent``: a plausible wrong number (now refused, or handled to the correct result);
* ``nan``: NaN or inf flowing through (now refused where it enters);
* ``obscure``: a traceback from inside torch/transformers, or a message that does not say what
  to change (now a TutorialError naming the argument);
* ``unbounded``: a run with no end in sight (now bounded);
* ``accepted``: a correct answer of another reasonable type (a list, a NumPy array, a uint8
  mask, a Path) that used to be rejected (now accepted, with the same result).

Each case asserts the clear error (its message) or the correct handled result, never only
"does not crash".
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tutorial_utils import dla as D
from tutorial_utils import input_attribution as A
from tutorial_utils import induction as I
from tutorial_utils import logit_lens as LL
from tutorial_utils import model_checks as MC
from tutorial_utils import models as M
from tutorial_utils import plotting
from tutorial_utils import probing as P
from tutorial_utils import validation as V
from tutorial_utils.concept_erasure import (NullspaceEraser, inlp, nullspace_projection,
                                            random_eraser, run_with_eraser)
from tutorial_utils.errors import TutorialError
from tutorial_utils.paths import DATA_DIR

NAN = float("nan")
SHIPPED = DATA_DIR / "models" / "tiny-gpt2-tasks"


class Ctx:
    """Everything the cases need, built once and lazily."""

    def __init__(self, model, tmp_root: Path):
        self.model = model
        self.tmp_root = tmp_root
        self._enc = self._other = None
        self.toks = model.to_tokens("The keys on the cabinet")
        self.are, self.is_ = model.to_single_token(" are"), model.to_single_token(" is")
        self.target = A.contrastive_target(self.are, self.is_)
        self.bos = model.tokenizer.bos_token_id
        self.left = torch.cat([torch.full((1, 2), self.bos), self.toks], 1)
        self.left_mask = torch.cat([torch.zeros(1, 2), torch.ones_like(self.toks)], 1).long()
        self.right = torch.cat([self.toks, torch.full((1, 2), self.bos)], 1)
        self.hook = "blocks.1.hook_resid_post"
        self.u = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
        self.rep = I.model_repeated_tokens(model, seq_len=5, batch=2)

    @property
    def encoder(self):
        if self._enc is None:
            self._enc = M.load_encoder("tiny-bert-tasks", device="cpu", verbose=False)
        return self._enc

    @property
    def other(self):
        """Another decoder (the attention-only course model)."""
        if self._other is None:
            self._other = M.load_model("tiny-attn-tasks", device="cpu", verbose=False)
        return self._other

    def checkpoint(self, name: str, edit=None) -> str:
        """A copy of the shipped decoder, edited by ``edit(path)``."""
        path = self.tmp_root / name
        if not path.exists():
            shutil.copytree(SHIPPED, path)
            if edit is not None:
                edit(path)
        return str(path)


@pytest.fixture(scope="module")
def ctx(model, tmp_path_factory):
    return Ctx(model, tmp_path_factory.mktemp("battery"))


def _config(key, value):
    def edit(path):
        cfg = json.loads((path / "config.json").read_text())
        cfg[key] = value
        (path / "config.json").write_text(json.dumps(cfg))
    return edit


def _nan_weight(path):
    from safetensors.torch import load_file, save_file

    sd = load_file(path / "model.safetensors")
    key = next(k for k in sd if k.endswith("h.1.mlp.c_fc.weight"))
    sd[key][0, 0] = NAN
    save_file(sd, path / "model.safetensors", metadata={"format": "pt"})


def _eq(want):
    """A check that the result equals ``want(ctx)`` (a tensor)."""
    def check(result, ctx):
        torch.testing.assert_close(result, want(ctx), atol=1e-5, rtol=1e-4)
    return check


def _real_equal_alone(method, **kw):
    """Encoder [PAD]-padded row: equals the sentence alone at its real positions, 0 at pads."""
    def run(ctx):
        enc = ctx.encoder
        toks = enc.to_tokens("the keys to the cabinet [MASK] old")
        pos = int((toks[0] == enc.tokenizer.mask_token_id).nonzero()[0, 0])
        tgt = A.logit_target(enc.tokenizer.convert_tokens_to_ids("are"), pos=pos)
        padded = torch.cat([toks, torch.full((1, 3), enc.tokenizer.pad_token_id)], 1)
        alone = A.attribute(enc, toks, tgt, method, **kw)
        got = A.attribute(enc, padded, tgt, method, **kw)
        return got, alone

    def check(result, ctx):
        got, alone = result
        T = alone.shape[1]
        torch.testing.assert_close(got[:, :T], alone, atol=2e-4, rtol=1e-3)
        assert float(got[:, T:].abs().max()) == 0.0
    return run, check


def _unknown_words_warned(ctx):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        toks = ctx.model.to_tokens("The xylophone quietly lasted from the year 1741 to the year 17")
    return toks, [str(x.message) for x in w if issubclass(x.category, MC.UnknownWordWarning)]


def _check_unknown(result, ctx):
    toks, messages = result
    assert int((toks == ctx.model.tokenizer.unk_token_id).sum()) == 2
    assert len(messages) == 1 and "'xylophone', 'quietly'" in messages[0]
    assert "in_vocabulary" in messages[0]


def _stalled_dns(ctx):
    real = socket.getaddrinfo

    def slow(*a, **k):
        time.sleep(20)
        return real(*a, **k)

    old_env = M.os.environ.pop("HF_HUB_OFFLINE", None)
    socket.getaddrinfo = slow
    try:
        t0 = time.time()
        ok = M.hub_reachable(timeout=1.0)
        return ok, time.time() - t0
    finally:
        socket.getaddrinfo = real
        if old_env is not None:
            M.os.environ["HF_HUB_OFFLINE"] = old_env


def _check_bounded(result, ctx):
    ok, elapsed = result
    assert ok is False and elapsed < 2.5, elapsed


def _ig_bounded(ctx):
    t0 = time.time()
    with pytest.raises(TutorialError, match=r"n_steps must be an integer in \[2, 4096\]"):
        A.integrated_gradients(ctx.model, ctx.toks, ctx.target, n_steps=10**7)
    return time.time() - t0


def _foreign_cache(ctx):
    with torch.no_grad():
        _, cache = ctx.other.run_with_cache(ctx.toks)
    cache.tokens = ctx.toks
    return LL.logit_lens(ctx.model, ctx.toks, -1, [ctx.are], cache=cache)


def _foreign_cache_dict(ctx):
    with torch.no_grad():
        _, cache = ctx.other.run_with_cache(ctx.toks)
    return LL.logit_lens(ctx.model, ctx.toks, -1, [ctx.are], cache=dict(cache.items()))


def _same_result(fn_a, fn_b):
    def run(ctx):
        return fn_a(ctx), fn_b(ctx)

    def check(result, ctx):
        a, b = result
        if isinstance(a, tuple):
            for x, y in zip(a, b):
                torch.testing.assert_close(x, y)
        elif isinstance(a, dict):
            for k in a:
                torch.testing.assert_close(a[k], b[k])
        elif isinstance(a, Tensor):
            torch.testing.assert_close(a, b)
        else:
            assert a == b
    return run, check


Tensor = torch.Tensor
sal = lambda ctx, toks, **kw: A.saliency(ctx.model, toks, ctx.target, **kw)  # noqa: E731

# (class, id, run(ctx), expected: a regex of the TutorialError, or a check(result, ctx))
CASES = [
    # ------------------------------------------------------------------ silent wrong answers
    ("silent", "config-3-layers-over-4",
     lambda c: M.load_model(c.checkpoint("l3", _config("n_layer", 3)), verbose=False),
     r"does not match its config.json: the config describes 3 layers.*in the weights but not"),
    ("silent", "config-5-layers-over-4",
     lambda c: M.load_model(c.checkpoint("l5", _config("n_layer", 5)), verbose=False),
     r"config describes 5 layers and these parameters are missing from the weights"),
    ("silent", "config-mlp-width-mismatch",
     lambda c: M.load_model(c.checkpoint("wide", _config("n_inner", 1024)), verbose=False),
     r"other shapes than the config describes .*\[128, 512\] in the file"),
    ("silent", "encoder-padded-saliency", *_real_equal_alone("saliency")),
    ("silent", "encoder-padded-ig", *_real_equal_alone("integrated_gradients", n_steps=8)),
    ("silent", "encoder-padded-occlusion", *_real_equal_alone("occlusion")),
    ("silent", "encoder-padded-grad-x-input", *_real_equal_alone("grad_x_input")),
    ("silent", "decoder-left-padded-saliency-refused",
     lambda c: sal(c, c.left), r"row 0 has the pad id 0 at position 1.*pass attention_mask"),
    ("silent", "decoder-left-padded-saliency-with-mask",
     lambda c: sal(c, c.left, attention_mask=c.left_mask)[:, 2:],
     _eq(lambda c: sal(c, c.toks))),
    ("silent", "decoder-left-padded-logit-lens-refused",
     lambda c: LL.logit_lens(c.model, c.left, -1, [c.are]), r"pass attention_mask"),
    ("silent", "decoder-left-padded-logit-lens-with-mask",
     lambda c: LL.logit_lens(c.model, c.left, -1, [c.are], attention_mask=c.left_mask).logits,
     _eq(lambda c: LL.logit_lens(c.model, c.toks, -1, [c.are]).logits)),
    ("silent", "decoder-left-padded-activations-with-mask",
     lambda c: P.collect_activations(c.model, c.left, c.hook, pos=-1,
                                     attention_mask=c.left_mask)[c.hook],
     _eq(lambda c: P.collect_activations(c.model, c.toks, c.hook, pos=-1)[c.hook])),
    ("silent", "right-padded-pos-minus-one-logit-lens",
     lambda c: LL.logit_lens(c.model, c.right, -1, [c.are]),
     r"pos\[0\] = 7 is a padded position of row 0 \(its last real token is at 5\)"),
    ("silent", "right-padded-target-reads-padding",
     lambda c: sal(c, c.right), r"the target's position\[0\] = 7 is a padded position of row 0"),
    ("silent", "right-padded-dla-pos-on-padding",
     lambda c: D.direct_logit_attribution(c.model, c.right, -1, [c.are]),
     r"is a padded position"),
    ("silent", "right-padded-activations-nan-at-pads",
     lambda c: P.collect_activations(c.model, c.right, c.hook)[c.hook],
     lambda r, c: (torch.isnan(r[:, -2:]).all() and torch.isfinite(r[:, :-2]).all())
     or pytest.fail("padded positions must be NaN, real ones finite")),
    ("silent", "ig-without-bos-first-word-attributed",
     lambda c: A.integrated_gradients(c.model, c.toks[:, 1:], c.target, n_steps=16),
     lambda r, c: float(r[0, 0].abs()) > 1e-3 or pytest.fail("first word got 0")),
    ("silent", "occlusion-without-bos-first-word-occluded",
     lambda c: A.occlusion(c.model, c.toks[:, 1:], c.target, replacement=1),
     lambda r, c: float(r[0, 0].abs()) > 0 or pytest.fail("first word not occluded")),
    ("silent", "logit-lens-another-models-cache-with-tokens", _foreign_cache,
     r"cache: it comes from another model"),
    ("silent", "logit-lens-another-models-cache-as-dict", _foreign_cache_dict,
     r"token embeddings differ from this model's embedding"),
    ("silent", "logit-lens-cache-of-other-tokens",
     lambda c: LL.logit_lens(c.model, c.toks, -1, [c.are],
                             cache=c.model.run_with_cache(c.model.to_tokens("The doctor near the windows"))[1]),
     r"token embeddings differ"),
    ("silent", "unknown-words-named", _unknown_words_warned, _check_unknown),
    ("silent", "unknown-word-single-token",
     lambda c: c.model.to_single_token(" xylophone"), r"' xylophone' is not in the vocabulary"),
    ("silent", "in-vocabulary",
     lambda c: M.in_vocabulary(c.model, "xylophone war"),
     lambda r, c: r == {"xylophone": False, "war": True} or pytest.fail(str(r))),
    ("silent", "vocabulary-size",
     lambda c: M.vocabulary(c.model),
     lambda r, c: (len(r) == c.model.cfg.d_vocab and r[c.are] == " are") or pytest.fail(r[:5])),
    ("silent", "float-token-ids-for-copying", lambda c: V.check_int_ids([3.7], "token_ids"),
     r"token_ids must be integer ids, got torch.float32 values such as \[3.7"),
    ("silent", "whole-float-ids", lambda c: V.check_int_ids(torch.tensor([3.0]), "ids"),
     r"ids must be integer ids"),
    ("silent", "float-position", lambda c: V.check_positions(2.5, 1, 6),
     r"pos must hold integer positions"),
    ("silent", "float-occlusion-position",
     lambda c: A.occlusion(c.model, c.toks, c.target, positions=[1.5]),
     r"positions\[i\] must be an integer, got 1.5"),
    ("silent", "float-target-position", lambda c: A.logit_target(3, pos=2.5),
     r"logit_target: pos must be an int or integer positions"),
    ("silent", "float-dla-correct-ids",
     lambda c: D.logit_diff_attribution(
         D.direct_logit_attribution(c.model, c.toks, -1, [c.are, c.is_]), [float(c.are)], [c.is_]),
     r"correct_ids must be integer ids"),
    ("silent", "float-probe-labels",
     lambda c: P.train_probe(torch.randn(6, 3), torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 1.0])),
     r"y must hold integer class labels"),
    ("silent", "float-control-labels", lambda c: P.control_labels([1, 2], [0.5, 1.0]),
     r"labels must hold integer class labels"),
    ("silent", "scores-as-mask",
     lambda c: A.spearman(torch.rand(1, 4), torch.rand(1, 4), torch.tensor([[0.3, 1, 1, 1]])),
     r"mask must hold only 0/1 or True/False"),
    ("silent", "layer-as-float", lambda c: MC.check_layer(c.model, 1.5),
     r"layer must be an integer, got 1.5"),
    ("silent", "bool-as-choice", lambda c: V.check_choice(1, (True, False), "flag"),
     r"flag must be one of \[True, False\], got 1"),
    # ------------------------------------------------------------------------------- NaN/inf
    ("nan", "ig-nan-target",
     lambda c: A.integrated_gradients(c.model, c.toks, lambda o: o[:, -1, 0] * NAN, n_steps=4),
     r"target_fn returned nan for example 0"),
    ("nan", "saliency-nan-target", lambda c: A.saliency(c.model, c.toks, lambda o: o[:, -1, 0] / 0 * 0),
     r"target_fn returned nan"),
    ("nan", "occlusion-inf-target",
     lambda c: A.occlusion(c.model, c.toks, lambda o: o[:, -1, 0] * math.inf),
     r"target_fn returned (inf|-inf)"),
    ("nan", "target-values-nan",
     lambda c: A.target_values(c.model, c.toks, lambda o: o[:, -1, 0].log() * NAN),
     r"non-finite target"),
    ("nan", "probe-nan-features",
     lambda c: P.train_probe(torch.tensor([[0.0], [NAN], [1.0], [2.0]]), torch.tensor([0, 0, 1, 1])),
     r"X \(features\) contains 1 non-finite value\(s\) \(1 NaN, 0 inf\).*index \(1, 0\)"),
    ("nan", "probe-inf-features",
     lambda c: P.train_probe(torch.tensor([[0.0], [math.inf], [1.0], [2.0]]), torch.tensor([0, 0, 1, 1])),
     r"0 NaN, 1 inf"),
    ("nan", "inlp-nan-features",
     lambda c: inlp(torch.full((6, 4), NAN), torch.tensor([0, 1] * 3), 1), r"non-finite"),
    ("nan", "ablate-nan-direction",
     lambda c: P.ablate_direction(c.model, c.toks, c.hook, c.u * NAN), r"direction .*NaN"),
    ("nan", "ablate-inf-value",
     lambda c: P.ablate_direction(c.model, c.toks, c.hook, c.u, value=math.inf),
     r"value must be finite"),
    ("nan", "ablate-nan-value-per-example",
     lambda c: P.ablate_direction(c.model, c.toks, c.hook, c.u, value=torch.tensor([NAN])),
     r"value contains 1 non-finite"),
    ("nan", "project-out-nan-direction",
     lambda c: P.project_out(torch.ones(2, 3), torch.tensor([NAN, 0.0, 1.0])), r"non-finite"),
    ("nan", "nullspace-nan", lambda c: nullspace_projection(torch.tensor([[NAN, 1.0]])),
     r"directions contains 1 non-finite"),
    ("nan", "random-eraser-nan-mean", lambda c: random_eraser(3, 1, torch.tensor([0.0, NAN, 0.0])),
     r"mean contains"),
    ("nan", "probe-layers-nan-acts",
     lambda c: P.probe_layers(torch.full((2, 4, 3), NAN), torch.tensor([0, 1, 0, 1]),
                              torch.tensor([0, 1]), torch.tensor([2, 3])), r"acts contains"),
    ("nan", "probe-predict-nan",
     lambda c: P.train_probe(torch.randn(8, 2), torch.tensor([0, 1] * 4)).predict(torch.tensor([[NAN, 0.0]])),
     r"X contains 1 non-finite"),
    ("nan", "spearman-nan-scores",
     lambda c: A.spearman(torch.tensor([[1.0, NAN, 3.0]]), torch.tensor([[1.0, 2.0, 3.0]])),
     r"a contains 1 non-finite"),
    ("nan", "bar-nan", lambda c: plotting.bar([1.0, NAN], ["a", "b"], "t", "y"),
     r"bar values contain 1 NaN"),
    ("nan", "bar-inf", lambda c: plotting.bar([1.0, math.inf], ["a", "b"], "t", "y"),
     r"infinite value"),
    ("nan", "heatmap-all-nan", lambda c: plotting.heatmap(torch.full((2, 2), NAN), "t", "x", "y"),
     r"\(all of them\)"),
    ("nan", "heatmap-inf", lambda c: plotting.heatmap(torch.tensor([[1.0, math.inf]]), "t", "x", "y"),
     r"heatmap values contain 1 infinite"),
    ("nan", "plot-dla-nan",
     lambda c: plotting.plot_dla(torch.tensor([NAN, 1.0]), ["a0.h0", "m0"]),
     r"plot_dla values contain 1 NaN"),
    ("nan", "plot-logit-lens-nan",
     lambda c: plotting.plot_logit_lens(D.ComponentLensResult(["a"], torch.full((1, 1, 2), NAN),
                                                              None, torch.zeros(1), "final")),
     r"logit-lens values contain 2 NaN"),
    ("nan", "ig-nan-baseline",
     lambda c: A.integrated_gradients(c.model, c.toks, c.target,
                                      baseline=torch.full((c.model.cfg.d_model,), NAN)),
     r"baseline contains"),
    ("nan", "nan-weights-at-load",
     lambda c: M.load_model(c.checkpoint("nanw", _nan_weight), verbose=False),
     r"weight '.*h\.1.*c_fc.*' holds 1 non-finite value"),
    ("nan", "induction-nan-patterns",
     lambda c: I.induction_scores_from_patterns(torch.full((1, 1, 5, 5), NAN), 2),
     r"patterns contains 25 non-finite"),
    ("nan", "dla-project-nan-weights",
     lambda c: D.direct_logit_attribution(c.model, c.toks, -1, [c.are, c.is_]).project(
         torch.tensor([1.0, NAN])), r"weights contains 1 non-finite"),
    ("nan", "run-from-embeddings-nan",
     lambda c: A.target_values(c.model, c.toks, c.target,
                               embeds=torch.full((1, c.toks.shape[1], c.model.cfg.d_model), NAN)),
     r"embeds contains"),
    # --------------------------------------------------------------------------- obscure errors
    ("obscure", "activations-ids-beyond-vocab",
     lambda c: P.collect_activations(c.model, c.toks + c.model.cfg.d_vocab, c.hook),
     r"outside the vocabulary \[0, 956\)"),
    ("obscure", "activations-float-tokens",
     lambda c: P.collect_activations(c.model, c.toks.float(), c.hook), r"integer tensor of token ids"),
    ("obscure", "activations-too-long",
     lambda c: P.collect_activations(c.model, torch.zeros(1, c.model.cfg.n_ctx + 1, dtype=torch.long), c.hook),
     r"exceeds the model's context of 64"),
    ("obscure", "activations-batch-size-zero",
     lambda c: P.collect_activations(c.model, c.toks, c.hook, batch_size=0),
     r"batch_size must be an integer >= 1"),
    ("obscure", "activations-names-filter-int",
     lambda c: P.collect_activations(c.model, c.toks, 5), r"names_filter must be a hook name"),
    ("obscure", "activations-string-tokens",
     lambda c: P.collect_activations(c.model, "The keys", c.hook), r"use model.to_tokens"),
    ("obscure", "ablate-ids-beyond-vocab",
     lambda c: P.ablate_direction(c.model, c.toks + 10**4, c.hook, c.u), r"outside the vocabulary"),
    ("obscure", "ablate-float-tokens",
     lambda c: P.ablate_direction(c.model, c.toks.double(), c.hook, c.u), r"integer tensor"),
    ("obscure", "ablate-too-long",
     lambda c: P.ablate_direction(c.model, torch.zeros(1, 65, dtype=torch.long), c.hook, c.u),
     r"exceeds the model's context"),
    ("obscure", "ablate-direction-wrong-size",
     lambda c: P.ablate_direction(c.model, c.toks, c.hook, torch.ones(5)),
     r"direction \(of size d_model=128\) must be a vector of size 128, got \(5,\)"),
    ("obscure", "ablate-batch-size-zero",
     lambda c: P.ablate_direction(c.model, c.toks, c.hook, c.u, batch_size=0), r"batch_size"),
    ("obscure", "induction-ids-beyond-vocab",
     lambda c: I.induction_scores(c.model, c.rep + c.model.cfg.d_vocab, 5), r"outside the vocabulary"),
    ("obscure", "induction-float-tokens",
     lambda c: I.induction_scores(c.model, c.rep.float(), 5), r"integer tensor"),
    ("obscure", "induction-1d-wrong-length",
     lambda c: I.induction_scores(c.model, c.rep[0, :7], 5), r"7 positions do not fit BOS \+ 2 x 5"),
    ("obscure", "induction-too-long",
     lambda c: I.induction_scores(c.model, torch.zeros(1, 81, dtype=torch.long), 40),
     r"exceeds the model's context"),
    ("obscure", "induction-not-repeated",
     lambda c: I.induction_scores(c.model, c.rep.flip(1), 5), r"does not repeat the first"),
    ("obscure", "induction-seq-len-beyond-context",
     lambda c: I.model_repeated_tokens(c.model, seq_len=40), r"use seq_len <= 31"),
    ("obscure", "per-token-loss-shapes",
     lambda c: I.per_token_loss(torch.zeros(1, 4, 10), torch.zeros(1, 5, dtype=torch.long)),
     r"tokens must be integer ids \[batch, pos\] = \(1, 4\)"),
    ("obscure", "ig-fractional-steps",
     lambda c: A.integrated_gradients(c.model, c.toks, c.target, n_steps=2.5),
     r"n_steps must be an integer, got 2.5"),
    ("obscure", "ig-string-steps",
     lambda c: A.integrated_gradients(c.model, c.toks, c.target, n_steps="8"),
     r"n_steps must be an integer, got '8'"),
    ("obscure", "ig-one-trapezoid-step",
     lambda c: A.integrated_gradients(c.model, c.toks, c.target, n_steps=1),
     r"n_steps must be an integer in \[2, 4096\], got 1"),
    ("obscure", "ig-target-hook-typo",
     lambda c: A.integrated_gradients(c.model, c.toks, c.target, target_hook="blocks.0.hook_resid_typo"),
     r"no hook 'blocks.0.hook_resid_typo'"),
    ("obscure", "ig-target-not-callable",
     lambda c: A.saliency(c.model, c.toks, 5), r"target_fn must be a function"),
    ("obscure", "load-model-int", lambda c: M.load_model(123, verbose=False),
     r"model name must be a string .* got 123 \(int\)"),
    ("obscure", "load-encoder-float", lambda c: M.load_encoder(3.5, verbose=False),
     r"got 3.5 \(float\)"),
    ("obscure", "load-model-no-tokenizer",
     lambda c: M.load_model(c.checkpoint("notok", lambda p: (p / "tokenizer.json").unlink()),
                            verbose=False),
     r"has no tokenizer \(none of tokenizer.json"),
    ("obscure", "load-model-corrupt-json",
     lambda c: M.load_model(c.checkpoint("badjson", lambda p: (p / "tokenizer_config.json").write_text("{")),
                            verbose=False),
     r"tokenizer_config.json is not valid JSON"),
    ("obscure", "load-model-dir-without-config",
     lambda c: M.load_model(str(c.tmp_root), verbose=False), r"a directory without config.json"),
    ("obscure", "check-head-string", lambda c: MC.check_head(c.model, 0, "1"),
     r"head must be an integer, got '1'"),
    ("obscure", "eraser-not-an-eraser",
     lambda c: run_with_eraser(c.model, c.toks, c.hook, torch.eye(128)), r"eraser must be a NullspaceEraser"),
    ("obscure", "eraser-float-positions",
     lambda c: run_with_eraser(c.model, c.toks, c.hook,
                               random_eraser(128, 2, torch.zeros(128)), positions=[0.5]),
     r"positions\[i\] must be an integer"),
    ("obscure", "random-split-one", lambda c: P.random_split(1), r"n must be an integer >= 2"),
    ("obscure", "split-test-frac", lambda c: P.split_by_group(["a", "b"], test_frac=1.5),
     r"test_frac must be <= 1.0"),
    ("obscure", "probe-one-class",
     lambda c: P.train_probe(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), n_classes=1),
     r"n_classes must be an integer >= 2, got 1"),
    ("obscure", "probe-float-labels-tensor", lambda c: P.train_probe(torch.randn(4, 2), torch.zeros(4)),
     r"y must hold integer class labels 0..C-1, got dtype torch.float32"),
    ("obscure", "probe-negative-decay",
     lambda c: P.train_probe(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), weight_decay=-1),
     r"weight_decay must be >= 0.0"),
    ("obscure", "probe-direction-class",
     lambda c: P.train_probe(torch.randn(4, 2), torch.tensor([0, 1, 0, 1])).direction(5),
     r"positive must be an integer in \[0, 1\], got 5"),
    ("obscure", "logit-lens-fractional-top-k",
     lambda c: LL.logit_lens(c.model, c.toks, -1, [c.are], top_k=2.5), r"top_k must be an integer"),
    ("obscure", "dla-chunk-zero",
     lambda c: D.direct_path_removal(c.model, None, chunk=0), r"chunk must be an integer >= 1"),
    ("obscure", "gpt2-tokenizer-missing", lambda c: __import__(
        "tutorial_utils.gpt2_tokenizer", fromlist=["x"]).load_gpt2_tokenizer(str(c.tmp_root)),
     r"encoder.json is missing"),
    ("obscure", "mask-wrong-shape",
     lambda c: sal(c, c.toks, attention_mask=torch.ones(1, 3)), r"attention_mask has shape \(1, 3\)"),
    ("obscure", "mask-values",
     lambda c: sal(c, c.toks, attention_mask=torch.full_like(c.toks, 2)),
     r"attention_mask must hold only 0/1"),
    ("obscure", "mask-empty-row",
     lambda c: sal(c, c.toks, attention_mask=torch.zeros_like(c.toks)), r"row 0 has no real token"),
    ("obscure", "delete-left-padded",
     lambda c: A.occlusion(c.model, c.left, c.target, replacement="delete", attention_mask=c.left_mask),
     r"replacement='delete' shifts every row right"),
    ("obscure", "erasure-answer-on-padding",
     lambda c: A.contrastive_erasure(c.model, c.right, [c.are], [c.is_], [7]),
     r"answer_pos\[0\] = 7 is a padded position"),
    ("obscure", "not-a-model", lambda c: A.saliency("gpt2", c.toks, c.target),
     r"saliency needs a model from tutorial_utils.models.load_model"),
    ("obscure", "cascade-mode-typo",
     lambda c: A.cascading_randomization(c.model, c.toks, c.target, "saliency", mode="cascade"),
     r"mode must be one of \['cascading', 'independent'\], got 'cascade' \(did you mean"),
    ("obscure", "eraser-width",
     lambda c: NullspaceEraser(torch.eye(3)[:1].double(), torch.zeros(3).double())(torch.ones(2, 4)),
     r"activations of size 4, eraser fitted on size 3"),
    ("obscure", "run-from-embeddings-float-tokens",
     lambda c: A.run_from_embeddings(c.model, c.toks.float(),
                                     torch.zeros(1, c.toks.shape[1], c.model.cfg.d_model)),
     r"integer tensor of token ids"),
    ("obscure", "logit-diff-attribution-not-a-result",
     lambda c: D.logit_diff_attribution(torch.zeros(3, 1, 2), [1], [2]),
     r"dla must be the result of direct_logit_attribution"),
    ("obscure", "seed-fraction", lambda c: M.seed_everything(1.5),
     r"seed must be a non-negative integer, got 1.5"),
    # ------------------------------------------------------------------------------- unbounded
    ("unbounded", "ig-ten-million-steps", _ig_bounded,
     lambda elapsed, c: elapsed < 1.0 or pytest.fail(f"{elapsed:.1f}s")),
    ("unbounded", "quadrature-ten-million", lambda c: A.ig_alphas_and_weights(10**7),
     r"n_steps must be an integer in \[2, 4096\]"),
    ("unbounded", "hub-probe-with-stalled-dns", _stalled_dns, _check_bounded),
    # --------------------------------------------------- correct answers of another type
    ("accepted", "tokens-as-list", *_same_result(lambda c: sal(c, c.toks.tolist()),
                                                 lambda c: sal(c, c.toks))),
    ("accepted", "tokens-as-numpy", *_same_result(lambda c: sal(c, c.toks.numpy()),
                                                  lambda c: sal(c, c.toks))),
    ("accepted", "mask-as-uint8", *_same_result(
        lambda c: sal(c, c.left, attention_mask=c.left_mask.to(torch.uint8)),
        lambda c: sal(c, c.left, attention_mask=c.left_mask))),
    ("accepted", "mask-as-bool-numpy", *_same_result(
        lambda c: sal(c, c.left, attention_mask=c.left_mask.bool().numpy()),
        lambda c: sal(c, c.left, attention_mask=c.left_mask))),
    ("accepted", "mask-as-list", *_same_result(
        lambda c: LL.logit_lens(c.model, c.left, -1, [c.are], attention_mask=c.left_mask.tolist()).logits,
        lambda c: LL.logit_lens(c.model, c.left, -1, [c.are], attention_mask=c.left_mask).logits)),
    ("accepted", "spearman-int-mask", *_same_result(
        lambda c: A.spearman(torch.arange(4.0)[None], torch.tensor([[0.0, 2, 1, 3]]),
                             torch.tensor([[1, 1, 0, 1]])),
        lambda c: A.spearman(torch.arange(4.0)[None], torch.tensor([[0.0, 2, 1, 3]]),
                             torch.tensor([[True, True, False, True]])))),
    ("accepted", "numpy-target-id", *_same_result(
        lambda c: A.saliency(c.model, c.toks, A.logit_target(np.int64(c.are))),
        lambda c: A.saliency(c.model, c.toks, A.logit_target(c.are)))),
    ("accepted", "numpy-position", *_same_result(
        lambda c: V.check_positions(np.int64(-1), 2, 5), lambda c: V.check_positions(-1, 2, 5))),
    ("accepted", "probe-labels-as-list", *_same_result(
        lambda c: P.train_probe(torch.arange(8.0)[:, None], [0, 0, 0, 0, 1, 1, 1, 1]).weight,
        lambda c: P.train_probe(torch.arange(8.0)[:, None], torch.tensor([0] * 4 + [1] * 4)).weight)),
    ("accepted", "logit-lens-numpy-ids", *_same_result(
        lambda c: LL.logit_lens(c.model, c.toks, -1, np.array([c.are, c.is_])).logits,
        lambda c: LL.logit_lens(c.model, c.toks, -1, [c.are, c.is_]).logits)),
    ("accepted", "activations-pos-as-list", *_same_result(
        lambda c: P.collect_activations(c.model, c.toks, c.hook, pos=[3])[c.hook],
        lambda c: P.collect_activations(c.model, c.toks, c.hook, pos=3)[c.hook])),
    ("accepted", "occlusion-positions-as-tensor", *_same_result(
        lambda c: A.occlusion(c.model, c.toks, c.target, positions=torch.tensor([1, 2])),
        lambda c: A.occlusion(c.model, c.toks, c.target, positions=[1, 2]))),
    ("accepted", "every-token-real-overrides-bos-padding", *_same_result(
        lambda c: sal(c, c.left, attention_mask=torch.ones_like(c.left)),
        lambda c: A.saliency(c.model, c.left, c.target,
                             attention_mask=np.ones(tuple(c.left.shape), dtype=np.int64)))),
    ("accepted", "load-model-pathlib", lambda c: M.load_model(SHIPPED, verbose=False).cfg.n_layers,
     lambda r, c: r == 4 or pytest.fail(str(r))),
    ("accepted", "check-int-numpy", lambda c: V.check_int(np.int32(3), "n", 1),
     lambda r, c: (r == 3 and type(r) is int) or pytest.fail(repr(r))),
]


def test_battery_size_and_classes():
    classes = {cls for cls, *_ in CASES}
    assert classes == {"silent", "nan", "obscure", "unbounded", "accepted"}
    assert len(CASES) >= 80
    assert len({case_id for _, case_id, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("cls,case_id,run,expected", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_case(ctx, cls, case_id, run, expected):
    if isinstance(expected, str):
        with pytest.raises(TutorialError, match=expected):
            run(ctx)
    else:
        expected(run(ctx), ctx)
