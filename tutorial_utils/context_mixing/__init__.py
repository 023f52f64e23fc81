"""Context mixing: how much each token's representation draws on every other token.

Every method returns a ``[layer, query, source]`` tensor (``[batch, layer, query, source]`` for a
batch of token rows), rows normalised to sum to 1:

==========================  ===========================================================
``attention``               raw attention, head-averaged (``per_head=True``: per head)
``rollout``                 attention rollout with the residual, 0.5 A + 0.5 I (Abnar & Zuidema 2020)
``rollout_no_res``          attention rollout without the residual
``attention_norm``          ||sum_h alpha f(x)|| (Kobayashi et al. 2020)
``attention_norm_res``      + residual, RES1 (Kobayashi et al. 2021)
``attention_norm_res_ln``   + residual + LayerNorm, RES1+LN1 (Kobayashi et al. 2021; post-LN only)
``globenc``                 GlobEnc, rolled out (Modarressi et al. 2022)
``alti``                    ALTI, rolled out (Ferrando et al. 2022)
``value_zeroing``           Value Zeroing, per layer (Mohebbi et al. 2023)
``value_zeroing_rollout``   Value Zeroing, rolled out
``decompx``                 DecompX, propagated through every layer (Modarressi et al. 2023;
                            post-LN only)
==========================  ===========================================================

:func:`decompx_prediction` carries DecompX through the head to the prediction: each input
token's contribution to an output logit (masked-LM vocabulary entry, or a classifier's class).

All methods compute with the model's weights in memory (an in-place edit or
``input_attribution.randomized_weights`` is honoured), written in the checkpoint's
parameterisation the papers use (value bias ``b_V`` inside the value vectors, ``W_O``/``b_O``
unfolded and uncentred, the original residual stream), not the folded compatibility-mode
weights of the bridge: see :mod:`._weights`. All take ``attention_mask`` and, for encoders,
``token_type_ids`` (sentence pairs).

Works for BERT-style post-LN encoders (``load_encoder()``) and GPT-2-style pre-LN decoders
(``load_model()``); see :mod:`._base` for where the LayerNorms sit in each.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from ..errors import TutorialError

from ._base import (Inputs, LayerInternals, Maps, Mask, Tokens, collect_internals, layout,
                    original_hf_model, prepare, rollout, row_normalize)
from ._weights import ModelWeights, forget_weights, is_unedited, model_weights
from .alti import alti
from .attention import attention_rollout, raw_attention
from .norms import AttentionDecomposition, attention_norm, decompose_attention_block, globenc
from .decompx import (DecompXPrediction, DecompXResult, decompx, decompx_decomposition,
                      decompx_prediction)
from .value_zeroing import value_zeroed_outputs, value_zeroing, value_zeroing_loop

METHODS: dict[str, Callable[..., Tensor]] = {
    "attention": lambda m, t, **kw: raw_attention(m, t, **kw),
    "rollout": lambda m, t, **kw: attention_rollout(m, t, residual=True, **kw),
    "rollout_no_res": lambda m, t, **kw: attention_rollout(m, t, residual=False, **kw),
    "attention_norm": lambda m, t, **kw: attention_norm(m, t, "attn", **kw),
    "attention_norm_res": lambda m, t, **kw: attention_norm(m, t, "res", **kw),
    "attention_norm_res_ln": lambda m, t, **kw: attention_norm(m, t, "res_ln", **kw),
    "globenc": lambda m, t, **kw: globenc(m, t, **kw),
    "alti": lambda m, t, **kw: alti(m, t, **kw),
    "value_zeroing": lambda m, t, **kw: value_zeroing(m, t, **kw),
    "value_zeroing_rollout": lambda m, t, **kw: value_zeroing(m, t, rollout=True, **kw),
    "decompx": lambda m, t, **kw: decompx(m, t, **kw),
}

#: Methods whose layer ``l`` already aggregates layers ``0..l`` (the rest are layer-local).
AGGREGATED = ("rollout", "rollout_no_res", "globenc", "alti", "value_zeroing_rollout", "decompx")


#: Methods defined for post-LN encoders only.
ENCODER_ONLY = ("attention_norm_res_ln", "decompx")


def methods_for(model: Any) -> list[str]:
    """The method names defined for ``model`` (RES1+LN1 and DecompX need a post-LN encoder)."""
    post = layout(model) == "post_ln"
    return [m for m in METHODS if post or m not in ENCODER_ONLY]


def compute_mixing(model: Any, tokens: Tokens, method: str,
                   attention_mask: Mask = None,
                   token_type_ids: Mask = None) -> Maps:
    """Run the context-mixing method ``method`` (a key of :data:`METHODS`) on ``tokens``
    (``attention_mask [B, T]``: 1 = real token; see :mod:`._base` for padding;
    ``token_type_ids [B, T]``: segment ids of a sentence pair, encoders only)."""
    if method not in METHODS:
        raise TutorialError(f"unknown context-mixing method {method!r}; valid: {sorted(METHODS)}")
    if method not in methods_for(model):
        raise TutorialError(f"method {method!r} is not defined for this model; valid: "
                         f"{methods_for(model)}")
    kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
    return METHODS[method](model, tokens, attention_mask=attention_mask, **kw)


__all__ = [
    "AGGREGATED", "AttentionDecomposition", "DecompXPrediction", "DecompXResult", "ENCODER_ONLY",
    "Inputs", "LayerInternals", "METHODS", "ModelWeights", "alti", "decompx",
    "decompx_decomposition", "decompx_prediction", "forget_weights", "is_unedited",
    "model_weights", "original_hf_model", "prepare",
    "attention_norm", "attention_rollout", "collect_internals", "compute_mixing",
    "decompose_attention_block", "globenc", "layout", "methods_for", "raw_attention", "rollout",
    "row_normalize", "value_zeroed_outputs", "value_zeroing", "value_zeroing_loop",
]
