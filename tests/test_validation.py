"""Validation helpers fail early with messages that name what is wrong and what is valid."""

from __future__ import annotations

import pytest
import torch

from tutorial_utils.model_checks import (available_hooks, check_head, check_hook_names,
                                         check_layer, check_tokens)
from tutorial_utils.validation import check_same_shape


def test_hook_names(model, hooked_model):
    check_hook_names(model, ["blocks.0.attn.hook_z", "blocks.3.hook_resid_post"])
    with pytest.raises(ValueError, match=r"no hook 'blocks.0.attn.hook_zz'.*blocks.0.attn.hook_z"):
        check_hook_names(model, ["blocks.0.attn.hook_zz"])
    with pytest.raises(ValueError, match="needs load_model\\(..., hooks=True\\)"):
        check_hook_names(model, ["blocks.9.attn.hook_result"])
    check_hook_names(hooked_model, ["blocks.1.hook_q_input", "blocks.1.attn.hook_result"])
    assert "blocks.0.attn.hook_pattern" in available_hooks(model)


def test_layer_and_head_ranges(model):
    assert check_layer(model, -1) == model.cfg.n_layers - 1
    assert check_head(model, 0, -1) == (0, model.cfg.n_heads - 1)
    with pytest.raises(ValueError, match="layer 4 out of range for a model with 4 layers"):
        check_layer(model, 4)
    with pytest.raises(ValueError, match="head 9 out of range"):
        check_head(model, 0, 9)


def test_token_batches(model):
    toks = model.to_tokens("The war lasted")
    assert torch.equal(check_tokens(model, toks[0]), toks)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        check_tokens(model, torch.tensor([[0, model.cfg.d_vocab]]))
    with pytest.raises(ValueError, match="integer tensor"):
        check_tokens(model, toks.float())
    with pytest.raises(ValueError, match="exceeds the model's context"):
        check_tokens(model, torch.zeros(1, model.cfg.n_ctx + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="differ in shape"):
        check_same_shape(toks, toks[:, :-1])
