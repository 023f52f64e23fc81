"""UnfoldedGPT2.from_model reads the bridge's weights in memory (not the checkpoint on disk):
unedited, they are the checkpoint's own tensors; edited in place, through ``.data`` or by
:func:`~tutorial_utils.input_attribution.randomized_weights`, the unfolded model computes what
the edited bridge computes (same next-token distribution)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import fields

import pytest
import torch
import transformers

from tutorial_utils.course.offline_model.corpus import CorpusGenerator
from tutorial_utils.features.unfolded import GPT2Weights, UnfoldedGPT2
from tutorial_utils.input_attribution import randomized_weights
from tutorial_utils.paths import DATA_DIR

MODEL_DIR = DATA_DIR / "models" / "tiny-gpt2-tasks"


@pytest.fixture(scope="module")
def tokens(model):
    return torch.tensor(CorpusGenerator(seed=7).batch(model.tokenizer.get_vocab(), 4))


@contextmanager
def edited(model, name_part, edit):
    """Apply ``edit(param)`` to every bridge parameter whose name contains ``name_part``, then
    restore them (the model fixture is shared by the session)."""
    params = {n: p for n, p in model.named_parameters() if name_part in n}
    assert params, name_part
    saved = {n: p.detach().clone() for n, p in params.items()}
    try:
        with torch.no_grad():
            for p in params.values():
                edit(p)
        yield
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(saved[n])


def _same_distribution(model, tokens) -> float:
    """Largest difference of next-token log-probabilities, bridge vs. unfolded from_model."""
    with torch.no_grad():
        bridge = model(tokens).float().log_softmax(-1)
        ours = UnfoldedGPT2.from_model(model).logits(tokens).log_softmax(-1)
    return float((bridge - ours).abs().max())


def test_unedited_from_model_is_the_checkpoint(model):
    ours = UnfoldedGPT2.from_model(model).w
    ckpt = GPT2Weights.from_hf(transformers.GPT2LMHeadModel.from_pretrained(str(MODEL_DIR)))
    for f in fields(GPT2Weights):
        a, b = getattr(ours, f.name), getattr(ckpt, f.name)
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b), f.name
        else:
            assert a == b, f.name


@pytest.mark.parametrize("name_part, edit", [
    ("h.1._original_component.mlp._original_component.c_proj._original_component.weight",
     lambda p: p.mul_(-2.0)),                                       # an MLP's output (in place)
    ("h.2._original_component.attn.o._original_component.weight", lambda p: p.zero_()),
    ("ln_f._original_component", lambda p: p.add_(0.3)),            # the final LayerNorm
    ("lm_head._original_component.weight", lambda p: p[:, :5].mul_(3.0)),
])
def test_an_in_place_edit_is_seen(model, tokens, name_part, edit):
    base = UnfoldedGPT2.from_model(model).logits(tokens)
    with edited(model, name_part, edit):
        assert _same_distribution(model, tokens) < 1e-4
        changed = UnfoldedGPT2.from_model(model).logits(tokens)
        assert (changed - base).abs().max() > 1e-2
    assert torch.equal(UnfoldedGPT2.from_model(model).logits(tokens), base)


def test_an_edit_through_data_is_seen(model, tokens):
    """``p.data`` bypasses torch's version counter: from_model must not serve a stale cache."""
    base = UnfoldedGPT2.from_model(model).logits(tokens)
    name = "h.0._original_component.mlp._original_component.c_fc._original_component.bias"
    with edited(model, name, lambda p: p.data.add_(1.0)):
        assert _same_distribution(model, tokens) < 1e-4
        assert (UnfoldedGPT2.from_model(model).logits(tokens) - base).abs().max() > 1e-2


def test_randomized_weights_are_seen(model, tokens):
    base = UnfoldedGPT2.from_model(model).logits(tokens)
    with randomized_weights(model, seed=3):
        assert _same_distribution(model, tokens) < 1e-3
        assert (UnfoldedGPT2.from_model(model).logits(tokens) - base).abs().max() > 1e-1
