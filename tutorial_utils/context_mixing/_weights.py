"""The weights every context-mixing method computes with: the model's weights **in memory**,
written in the parameterisation the papers use (the checkpoint's).

Why not simply the bridge's weights. ``enable_compatibility_mode()`` rewrites the bridge's
weights in place. It folds the value bias into the output bias (``b_O' = b_O + sum_h b_V^h
W_O^h``, ``b_V' = 0``), centres the writing weights (``W_E``, ``W_pos``, ``W_O``, ``b_O``,
``W_out``, ``b_out``: the mean over ``d_model`` of each row is removed) and the unembedding
(its mean over the vocabulary), and in pre-LN models (GPT-2) folds each LayerNorm's gain and
bias into the weights that read it. The model computes the same function (a LayerNorm ignores
a constant vector, a softmax a constant logit), but the per-token pieces the papers define do
not survive: ``alpha_ij b_V W_O`` would move from token ``j``'s piece into the bias, and the
residual stream of a pre-LN model loses its mean.

Why not simply the checkpoint. A researcher edits weights in memory (an ablation, the
model-randomisation check of :func:`tutorial_utils.input_attribution.randomized_weights`);
re-reading the file would describe the original model instead.

So every call reads the bridge's current tensors and writes them back in the checkpoint's
parameterisation, a change of coordinates that keeps the in-memory model's function exactly:

* value bias: ``b_V`` is the checkpoint's; ``b_O = b_O^mem + sum_h b_V^{h,mem} W_O^{h,mem} -
  sum_h b_V^h W_O^h`` (the attention block's output is unchanged);
* each component the next LayerNorm ignores (the row mean of a writing weight, the mean of a
  bias written to the residual stream, the vocabulary mean of the unembedding) is the
  checkpoint's: ``W = W^mem - mean(W^mem) + mean(W^ckpt)``;
* pre-LN LayerNorms (GPT-2): the gain ``gamma`` and bias ``beta`` are the checkpoint's, and the
  weights that read them (``W_Q, W_K, W_V, W_in``) absorb the change,
  ``W = diag(gamma^mem / gamma) W^mem``, ``b = b^mem + (beta^mem - gamma^mem beta / gamma) W^mem``;
  their one invisible direction (``W + diag(1/gamma) 1 m^T`` with ``b - (beta . 1/gamma) m^T``
  computes the same function on a LayerNorm's output) is set to the checkpoint's.

Each group of tensors (the embeddings, every block, the masked-LM head) whose result equals
the checkpoint's to ``1e-5`` of the group's largest entry (the order of the rounding of
compatibility mode's folding) is replaced by the checkpoint's own tensors, so an unedited model
gives exactly the papers' numbers (an edit smaller than that counts as none); a group that differs (an edit, or MiniLM's
masked-LM head, which ``from_pretrained`` initialises at random on every load) is used as
computed. Cached per model and keyed on every parameter's storage and in-place version
counter, so an edit with any in-place torch operation (``copy_``, ``p[...] = 0``,
``mul_``) is seen on the next call. An edit through ``p.data`` bypasses the version counter:
call :func:`forget_weights` after one.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import torch
from torch import Tensor

from ..errors import TutorialError

#: Architectures (HF class names, substrings) and their block layout.
_LAYOUTS = {"Bert": "post_ln", "Roberta": "post_ln", "GPT2": "pre_ln"}

LN = tuple  # (gamma [d], beta [d], eps: float)

_CHECKPOINTS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
_WEIGHTS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()

#: Relative tolerance under which a group of in-memory tensors counts as the checkpoint's.
SAME_AS_CHECKPOINT = 1e-5


def layout(model: Any) -> str:
    """``"post_ln"`` (BERT-style encoder) or ``"pre_ln"`` (GPT-2-style decoder); a clear
    ``TutorialError`` for any other architecture."""
    cfg = model.cfg
    arch = str(getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
               or "")
    for key, kind in _LAYOUTS.items():
        if key in arch:
            return kind
    raise TutorialError(
        f"context-mixing methods support BERT/RoBERTa encoders (post-LN) and GPT-2 decoders "
        f"(pre-LN); this model's architecture is {arch or 'unknown'!r}. They re-run each layer "
        f"from its Hugging Face weights and decompose it through LayerNorm (GlobEnc, ALTI, "
        f"DecompX) and learned position embeddings; rotary positions, RMSNorm, gated MLPs, "
        f"grouped-query attention and parallel attention+MLP (Pythia, Llama, Qwen2, Mistral, "
        f"Gemma) would each need their own layer re-implementation, which is not written"
    )


def is_post_ln(model: Any) -> bool:
    return layout(model) == "post_ln"


# --- the containers -------------------------------------------------------------------------
@dataclass
class LayerWeights:
    """One block's weights, per head: ``W_Q/W_K/W_V [d, H, d_head]``, ``b_Q/b_K/b_V
    [H, d_head]``, ``W_O [H, d_head, d]``, ``b_O [d]``, ``ln1``/``ln2`` = (gamma, beta, eps),
    FFN ``W_in [d, d_ff]``, ``b_in``, ``W_out [d_ff, d]``, ``b_out``, ``act`` its activation;
    ``scale`` multiplies ``q . k``."""

    W_Q: Tensor
    b_Q: Tensor
    W_K: Tensor
    b_K: Tensor
    W_V: Tensor
    b_V: Tensor
    W_O: Tensor
    b_O: Tensor
    ln1: LN
    ln2: LN
    W_in: Tensor
    b_in: Tensor
    W_out: Tensor
    b_out: Tensor
    act: Any
    act_name: str
    scale: float
    #: ``[W_Q | W_K | W_V]`` as one ``[d, 3 H d_head]`` matrix and its bias (one product).
    W_QKV: Tensor = field(init=False, repr=False)
    b_QKV: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        d = self.W_Q.shape[0]
        self.W_QKV = torch.cat([W.reshape(d, -1) for W in (self.W_Q, self.W_K, self.W_V)], 1)
        self.b_QKV = torch.cat([b.reshape(-1) for b in (self.b_Q, self.b_K, self.b_V)])


@dataclass
class EmbeddingWeights:
    """``W_E [V, d]``, ``W_pos [P, d]``; post-LN encoders also ``W_type [n_types, d]`` and the
    embedding LayerNorm ``ln``; ``pos_offset``: added to the positions (RoBERTa: pad id + 1)."""

    W_E: Tensor
    W_pos: Tensor
    W_type: Tensor | None
    ln: LN | None
    pos_offset: int


@dataclass
class MLMHeadWeights:
    """The masked-LM head, ``logits = LN_t(act(h W_t + b_t)) W_U + b_U``: ``W_t [d, d]``,
    ``b_t [d]``, ``ln`` = (gamma, beta, eps), ``W_U [d, V]``, ``b_U [V]``."""

    W_t: Tensor
    b_t: Tensor
    act: Any
    act_name: str
    ln: LN
    W_U: Tensor
    b_U: Tensor


@dataclass
class ModelWeights:
    """Everything a context-mixing method reads. ``checkpoint``: for each group (``embed``,
    ``layer{l}``, ``head``) whether its tensors are the checkpoint's own (the model is unedited
    there) or were rewritten from the weights in memory."""

    embed: EmbeddingWeights
    layers: list[LayerWeights]
    head: MLMHeadWeights | None
    checkpoint: dict[str, bool]


# --- the checkpoint ------------------------------------------------------------------------
def _checkpoint_model(model: Any) -> Any:
    """The full Hugging Face model (head included) loaded from the checkpoint the bridge was
    booted from, eager attention, eval mode, on the bridge's device; cached per bridge."""
    cache = _CHECKPOINTS.setdefault(model, {})
    if "full" in cache:
        return cache["full"]
    hf = getattr(model, "original_model", None)
    source = getattr(getattr(hf, "config", None), "_name_or_path", None)
    if not source:
        raise TutorialError("cannot find the checkpoint this bridge was loaded from "
                            "(original_model.config._name_or_path is empty)")
    import transformers
    from transformers.utils import logging as hf_logging

    post = is_post_ln(model)
    cls_name = type(hf).__name__
    cls = getattr(transformers, cls_name, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        cls = transformers.AutoModelForMaskedLM if post else transformers.AutoModelForCausalLM
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar would be saved in the notebooks
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # MiniLM's untrained MLM head would print a load report
    try:
        full = cls.from_pretrained(source, attn_implementation="eager")
    except Exception as exc:  # pragma: no cover - depends on the environment
        raise TutorialError(f"could not load the original weights from {source!r}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(level)
        if bar_was_on:
            hf_logging.enable_progress_bar()
    full = full.to(model.cfg.device).eval()
    for p in full.parameters():
        p.requires_grad_(False)
    base = full.base_model
    cfg = base.config
    if post and getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        raise TutorialError("only absolute position embeddings are supported")
    if not post and (getattr(cfg, "reorder_and_upcast_attn", False)
                     or getattr(cfg, "add_cross_attention", False)):
        raise TutorialError("GPT-2 variants with reordered attention or cross-attention are not "
                            "supported")
    cache["full"] = full
    return full


def original_hf_model(model: Any, dtype: torch.dtype = torch.float32) -> Any:
    """The unprocessed Hugging Face base model (``BertModel``/``RobertaModel``/``GPT2Model``,
    eager attention, eval mode) loaded from the checkpoint the bridge ``model`` was booted from
    (``config._name_or_path``: a local directory or a model in the local cache). It is the
    checkpoint: it does not see edits made to the bridge's weights in memory (the methods
    themselves do, see the module docstring). Cached per bridge and ``dtype``."""
    cache = _CHECKPOINTS.setdefault(model, {})
    if dtype not in cache:
        base = _checkpoint_model(model).base_model
        cache[dtype] = base if dtype == torch.float32 else copy.deepcopy(base).to(dtype)
    return cache[dtype]


def _ln_of(mod: Any) -> LN:
    return mod.weight.detach(), mod.bias.detach(), float(mod.eps)


def _read_base(raw: Any, post: bool) -> tuple[EmbeddingWeights, list[LayerWeights]]:
    """The embeddings and blocks of a Hugging Face base model (``BertModel``/``RobertaModel``
    when ``post``, else ``GPT2Model``) as they are stored: no folding, nothing centred."""
    from transformers.activations import ACT2FN

    cfg = raw.config
    H = cfg.num_attention_heads
    d = cfg.hidden_size
    dh = d // H
    layers = []
    if post:
        emb = raw.embeddings
        offset = cfg.pad_token_id + 1 if "Roberta" in type(raw).__name__ else 0
        embed = EmbeddingWeights(emb.word_embeddings.weight.detach(),
                                 emb.position_embeddings.weight.detach(),
                                 emb.token_type_embeddings.weight.detach(), _ln_of(emb.LayerNorm),
                                 offset)
        for lay in raw.encoder.layer:
            sa, so = lay.attention.self, lay.attention.output

            def per_head(lin: Any) -> tuple[Tensor, Tensor]:
                return (lin.weight.detach().T.reshape(d, H, dh), lin.bias.detach().reshape(H, dh))

            (WQ, bQ), (WK, bK), (WV, bV) = per_head(sa.query), per_head(sa.key), per_head(sa.value)
            layers.append(LayerWeights(
                WQ, bQ, WK, bK, WV, bV, so.dense.weight.detach().T.reshape(H, dh, d),
                so.dense.bias.detach(), _ln_of(so.LayerNorm), _ln_of(lay.output.LayerNorm),
                lay.intermediate.dense.weight.detach().T, lay.intermediate.dense.bias.detach(),
                lay.output.dense.weight.detach().T, lay.output.dense.bias.detach(),
                ACT2FN[cfg.hidden_act], str(cfg.hidden_act), dh ** -0.5))
    else:
        embed = EmbeddingWeights(raw.wte.weight.detach(), raw.wpe.weight.detach(), None, None, 0)
        for l, blk in enumerate(raw.h):
            W = blk.attn.c_attn.weight.detach()  # Conv1D: [d, 3d]
            b = blk.attn.c_attn.bias.detach()

            def heads(k: int) -> tuple[Tensor, Tensor]:
                return (W[:, k * d:(k + 1) * d].reshape(d, H, dh),
                        b[k * d:(k + 1) * d].reshape(H, dh))

            (WQ, bQ), (WK, bK), (WV, bV) = heads(0), heads(1), heads(2)
            scale = dh ** -0.5 if cfg.scale_attn_weights else 1.0
            if cfg.scale_attn_by_inverse_layer_idx:
                scale /= float(l + 1)
            layers.append(LayerWeights(
                WQ, bQ, WK, bK, WV, bV, blk.attn.c_proj.weight.detach().reshape(H, dh, d),
                blk.attn.c_proj.bias.detach(), _ln_of(blk.ln_1), _ln_of(blk.ln_2),
                blk.mlp.c_fc.weight.detach(), blk.mlp.c_fc.bias.detach(),
                blk.mlp.c_proj.weight.detach(), blk.mlp.c_proj.bias.detach(),
                ACT2FN[cfg.activation_function], str(cfg.activation_function), scale))
    return embed, layers


def _checkpoint_weights(model: Any) -> ModelWeights:
    """:class:`ModelWeights` read from the checkpoint (cached)."""
    cache = _CHECKPOINTS.setdefault(model, {})
    if "weights" in cache:
        return cache["weights"]
    full = _checkpoint_model(model)
    post = is_post_ln(model)
    embed, layers = _read_base(full.base_model, post)
    head = _checkpoint_mlm_head(full, full.base_model.config) if post else None
    names = ["embed"] + [f"layer{l}" for l in range(len(layers))] + (["head"] if head else [])
    cache["weights"] = ModelWeights(embed, layers, head, {n: True for n in names})
    return cache["weights"]


def _mlm_head_modules(hf: Any) -> tuple[Any, Any, Any, str] | None:
    """``(dense, layer_norm, decoder, activation name)`` of a BERT/RoBERTa masked-LM head, or
    None if ``hf`` has none."""
    cls = getattr(hf, "cls", None)
    if cls is not None and hasattr(cls, "predictions"):
        t = cls.predictions.transform
        return t.dense, t.LayerNorm, cls.predictions.decoder, str(hf.config.hidden_act)
    lm = getattr(hf, "lm_head", None)
    if lm is not None and hasattr(lm, "layer_norm"):
        return lm.dense, lm.layer_norm, lm.decoder, "gelu"  # RobertaLMHead applies gelu
    return None


def _checkpoint_mlm_head(full: Any, cfg: Any) -> MLMHeadWeights | None:
    from transformers.activations import ACT2FN

    mods = _mlm_head_modules(full)
    if mods is None:
        return None
    dense, ln, dec, act = mods
    bias = dec.bias if dec.bias is not None else torch.zeros(dec.weight.shape[0])
    return MLMHeadWeights(dense.weight.detach().T, dense.bias.detach(), ACT2FN[act], act,
                          _ln_of(ln), dec.weight.detach().T, bias.detach())


# --- the weights in memory, in the checkpoint's parameterisation ------------------------------
def _swap_mean(w: Tensor, ref: Tensor, dim: int) -> Tensor:
    """``w`` with its mean along ``dim`` replaced by ``ref``'s (a component the following
    LayerNorm, or the softmax over the vocabulary, ignores)."""
    return w - w.mean(dim, keepdim=True) + ref.mean(dim, keepdim=True)


def _relayer_norm(W: Tensor, b: Tensor, ln_mem: LN, ln_ref: LN) -> tuple[Tensor, Tensor]:
    """Rewrite a weight ``W [d, ...]`` (bias ``b [...]``) that reads a LayerNorm with the
    in-memory gain/bias ``ln_mem`` as one that reads the same LayerNorm with ``ln_ref``'s, for
    the same function of the normalised input ``n`` (mean 0): ``(g n + be) W + b``."""
    g_mem, be_mem, _ = ln_mem
    g, be, _ = ln_ref
    g_safe = torch.where(g == 0, torch.ones_like(g), g)
    shape = (-1,) + (1,) * (W.ndim - 1)
    W_new = (g_mem / g_safe).reshape(shape) * W
    b_new = b + torch.tensordot(be_mem - g_mem * be / g_safe, W, dims=1)
    return W_new, b_new


def _set_invisible_direction(W: Tensor, b: Tensor, W_ref: Tensor, ln_ref: LN) -> tuple[Tensor, Tensor]:
    """Set the component of ``W`` that a LayerNorm's output cannot see to ``W_ref``'s: with
    ``e = 1 / gamma``, ``W + e m^T`` and ``b - (beta . e) m^T`` compute the same function of
    ``gamma n + beta`` (``n . 1 = 0``); ``m`` is chosen so that ``sum_d gamma_d W[d]`` equals
    ``W_ref``'s."""
    g, be, _ = ln_ref
    g_safe = torch.where(g == 0, torch.ones_like(g), g)
    shape = (-1,) + (1,) * (W.ndim - 1)
    e = (1.0 / g_safe).reshape(shape)
    m = torch.tensordot(g_safe, W_ref - W, dims=1) / float(g.numel())
    return W + e * m, b - (be * e.flatten()).sum() * m


def _embed_in_checkpoint_coordinates(w: EmbeddingWeights, ref: EmbeddingWeights
                                     ) -> EmbeddingWeights:
    """``w`` with the mean over ``d_model`` of each row of ``W_E``, ``W_pos`` (and ``W_type``)
    set to ``ref``'s (the LayerNorm that reads them ignores it)."""
    return replace(w, W_E=_swap_mean(w.W_E, ref.W_E, -1), W_pos=_swap_mean(w.W_pos, ref.W_pos, -1),
                   W_type=None if w.W_type is None or ref.W_type is None
                   else _swap_mean(w.W_type, ref.W_type, -1))


def _layer_in_checkpoint_coordinates(w: LayerWeights, ref: LayerWeights) -> LayerWeights:
    """``w`` (LayerNorms already ``ref``'s in a pre-LN block) with the value bias set to
    ``ref``'s, the output bias absorbing the change (``b_O + sum_h (b_V^h - b_V^{h,ref})
    W_O^h``: the attention block's output is unchanged), and the means the next LayerNorm
    ignores (``W_O``, ``b_O``, ``W_out``, ``b_out`` over ``d_model``) set to ``ref``'s."""
    b_O = (w.b_O + torch.einsum("hk,hkd->d", w.b_V, w.W_O)
           - torch.einsum("hk,hkd->d", ref.b_V.to(w.b_V), w.W_O))
    return LayerWeights(
        w.W_Q, w.b_Q, w.W_K, w.b_K, w.W_V, ref.b_V.to(w.b_V), _swap_mean(w.W_O, ref.W_O, -1),
        _swap_mean(b_O, ref.b_O, -1), w.ln1, w.ln2, w.W_in, w.b_in,
        _swap_mean(w.W_out, ref.W_out, -1), _swap_mean(w.b_out, ref.b_out, -1),
        w.act, w.act_name, w.scale)


def _memory_weights(model: Any, ck: ModelWeights) -> ModelWeights:
    """The bridge's current tensors, rewritten in the checkpoint's parameterisation (module
    docstring): the in-memory model's function, exactly."""
    post = is_post_ln(model)
    with torch.no_grad():
        if post:
            W_type = getattr(getattr(model, "token_type_embed", None), "W_E", None)
            ln = getattr(model, "embed_ln", None)
            embed = EmbeddingWeights(
                model.W_E.detach().float(), model.W_pos.detach().float(),
                None if W_type is None else W_type.detach().float(),
                None if ln is None else (ln.w.detach().float(), ln.b.detach().float(), ck.embed.ln[2]),
                ck.embed.pos_offset)
        else:
            embed = EmbeddingWeights(model.W_E.detach().float(), model.W_pos.detach().float(),
                                     None, None, 0)
        embed = _embed_in_checkpoint_coordinates(embed, ck.embed)
        layers = []
        for l, ref in enumerate(ck.layers):
            blk = model.blocks[l]
            a, mlp = blk.attn, blk.mlp
            t = lambda x: x.detach().float()  # noqa: E731
            WQ, WK, WV = (t(a.W_Q).permute(1, 0, 2).contiguous(),
                          t(a.W_K).permute(1, 0, 2).contiguous(),
                          t(a.W_V).permute(1, 0, 2).contiguous())
            bQ, bK, bV_mem = t(a.b_Q), t(a.b_K), t(a.b_V)
            W_O_mem, b_O_mem = t(a.W_O), t(a.b_O)
            ln1 = (t(blk.ln1.w), t(blk.ln1.b), ref.ln1[2])
            ln2 = (t(blk.ln2.w), t(blk.ln2.b), ref.ln2[2])
            W_in, b_in = t(mlp.W_in), t(mlp.b_in)
            if not post:  # LayerNorms folded into their readers: back to the checkpoint's
                WQ, bQ = _set_invisible_direction(*_relayer_norm(WQ, bQ, ln1, ref.ln1), ref.W_Q, ref.ln1)
                WK, bK = _set_invisible_direction(*_relayer_norm(WK, bK, ln1, ref.ln1), ref.W_K, ref.ln1)
                WV, bV_mem = _set_invisible_direction(*_relayer_norm(WV, bV_mem, ln1, ref.ln1),
                                                      ref.W_V, ref.ln1)
                W_in, b_in = _set_invisible_direction(*_relayer_norm(W_in, b_in, ln2, ref.ln2),
                                                      ref.W_in, ref.ln2)
                ln1, ln2 = ref.ln1, ref.ln2
            layers.append(_layer_in_checkpoint_coordinates(LayerWeights(
                WQ, bQ, WK, bK, WV, bV_mem, W_O_mem, b_O_mem, ln1, ln2, W_in, b_in,
                t(mlp.W_out), t(mlp.b_out), ref.act, ref.act_name, ref.scale), ref))
        head = None
        if ck.head is not None:
            mods = _mlm_head_modules(model.original_model)
            if mods is None:
                raise TutorialError("the bridge has no masked-LM head to read")
            dense, ln_t, _, _ = mods
            head = MLMHeadWeights(
                dense.weight.detach().float().T, dense.bias.detach().float(), ck.head.act,
                ck.head.act_name,
                (ln_t.weight.detach().float(), ln_t.bias.detach().float(), ck.head.ln[2]),
                _swap_mean(model.W_U.detach().float(), ck.head.W_U, -1),
                _swap_mean(model.b_U.detach().float(), ck.head.b_U, -1))
    return ModelWeights(embed, layers, head, {})


def _tensors(group: Any) -> list[Tensor]:
    out = []
    for f in fields(group):
        if not f.init:
            continue
        v = getattr(group, f.name)
        if isinstance(v, Tensor):
            out.append(v)
        elif isinstance(v, tuple):
            out += [x for x in v if isinstance(x, Tensor)]
    return out


def _same(group: Any, ref: Any) -> bool:
    """Every tensor of ``group`` within ``SAME_AS_CHECKPOINT`` times the largest entry of the
    group of ``ref`` (folding a LayerNorm into a bias sums terms as large as the weights, so a
    bias's rounding is relative to them, not to the bias)."""
    pairs = list(zip(_tensors(group), _tensors(ref)))
    if any(a.shape != b.shape for a, b in pairs):
        return False
    scale = max((float(b.abs().max()) for _, b in pairs if b.numel()), default=0.0)
    tol = SAME_AS_CHECKPOINT * max(scale, 1e-12)
    return all(float((a - b.to(a.dtype)).abs().max()) <= tol for a, b in pairs if a.numel())


_PARAMS: "weakref.WeakKeyDictionary[Any, list]" = weakref.WeakKeyDictionary()


def _state_key(model: Any) -> tuple:
    """Storage, in-place version counter and dtype of every parameter (the list of parameters
    is walked once per model: walking the bridge's module tree costs milliseconds)."""
    params = _PARAMS.get(model)
    if params is None:
        params = _PARAMS[model] = list(model.parameters())
    return tuple((p.data_ptr(), p._version, p.dtype) for p in params)


def _cast(group: Any, dtype: torch.dtype, device: Any = None) -> Any:
    changes = {}
    for f in fields(group):
        if not f.init:
            continue
        v = getattr(group, f.name)
        if isinstance(v, Tensor) and v.is_floating_point():
            changes[f.name] = v.to(device=device, dtype=dtype)
        elif isinstance(v, tuple):
            changes[f.name] = tuple(x.to(device=device, dtype=dtype) if isinstance(x, Tensor)
                                    else x for x in v)
    return replace(group, **changes)


def model_weights(model: Any, dtype: torch.dtype = torch.float32) -> ModelWeights:
    """The weights of ``model`` in memory, in the checkpoint's parameterisation (module
    docstring), as ``dtype`` tensors. Groups equal to the checkpoint's (to ``1e-5`` of their
    scale) are the checkpoint's own tensors; ``.checkpoint`` says which."""
    key = _state_key(model)
    cache = _WEIGHTS.get(model)
    if cache is None or cache["key"] != key:
        ck = _checkpoint_weights(model)
        mem = _memory_weights(model, ck)
        same = {"embed": _same(mem.embed, ck.embed)}
        layers = []
        for l, (m, c) in enumerate(zip(mem.layers, ck.layers)):
            same[f"layer{l}"] = _same(m, c)
            layers.append(c if same[f"layer{l}"] else m)
        head = mem.head
        if ck.head is not None:
            same["head"] = _same(mem.head, ck.head)
            head = ck.head if same["head"] else mem.head
        w = ModelWeights(ck.embed if same["embed"] else mem.embed, layers, head, same)
        cache = {"key": key, torch.float32: w}
        _WEIGHTS[model] = cache
    if dtype not in cache:
        w = cache[torch.float32]
        cache[dtype] = ModelWeights(_cast(w.embed, dtype), [_cast(x, dtype) for x in w.layers],
                                    None if w.head is None else _cast(w.head, dtype), w.checkpoint)
    return cache[dtype]


def forget_weights(model: Any) -> None:
    """Drop the cached weights of ``model`` (needed only after editing a parameter through
    ``.data``, which torch's version counter does not see, or replacing a parameter object)."""
    _WEIGHTS.pop(model, None)
    _PARAMS.pop(model, None)


def is_unedited(model: Any, head: bool = False) -> bool:
    """True when the embeddings and every block of ``model`` (and, with ``head``, its masked-LM
    head) equal the checkpoint's (see :func:`model_weights`)."""
    return all(v for k, v in model_weights(model).checkpoint.items() if head or k != "head")


_MISMATCHES: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()


def encoder_mismatches(model: Any, hf: Any) -> list[str]:
    """The groups (``"embed"``, ``"layer{l}"``) in which the encoder of the Hugging Face model
    ``hf`` (its ``base_model``: e.g. the encoder of a ``BertForSequenceClassification``) differs
    from ``model``'s weights **in memory**; ``[]`` when they are the same encoder. ``hf``'s
    tensors are written in the checkpoint's parameterisation like the bridge's (value bias,
    the means a LayerNorm ignores) and compared with :func:`model_weights` at its tolerance
    (``SAME_AS_CHECKPOINT`` of each group's largest entry), together with each group's shapes,
    activation, LayerNorm epsilons and attention scale. Cached per ``hf`` and keyed on both
    models' parameters (storage and in-place version counter, as :func:`model_weights`)."""
    key = (_state_key(model), _state_key(hf))
    cached = _MISMATCHES.get(hf)
    if cached is not None and cached[0]() is model and cached[1] == key:
        return list(cached[2])
    bad = _encoder_mismatches(model, hf)
    _MISMATCHES[hf] = (weakref.ref(model), key, tuple(bad))
    return bad


def _encoder_mismatches(model: Any, hf: Any) -> list[str]:
    base = getattr(hf, "base_model", hf)
    post = is_post_ln(model)
    try:
        embed, layers = _read_base(base, post)
    except AttributeError as exc:
        raise TutorialError(f"cannot read the encoder of {type(hf).__name__}: expected a Hugging "
                            f"Face {'BERT/RoBERTa' if post else 'GPT-2'} model ({exc})") from exc
    mem = model_weights(model)
    ck = _checkpoint_weights(model)
    if len(layers) != len(mem.layers):
        return [f"{len(layers)} layers against the model's {len(mem.layers)}"]
    dev = ck.embed.W_E.device
    bad = []
    embed = _cast(embed, torch.float32, dev)
    if mem.embed.W_type is None:
        embed = replace(embed, W_type=None)
    if (embed.pos_offset != mem.embed.pos_offset
            or (embed.ln is None) != (mem.embed.ln is None)
            or (embed.ln is not None and embed.ln[2] != mem.embed.ln[2])
            or not _same(_embed_in_checkpoint_coordinates(embed, ck.embed), mem.embed)):
        bad.append("embed")
    for l, (theirs, ours, ref) in enumerate(zip(layers, mem.layers, ck.layers)):
        theirs = _cast(theirs, torch.float32, dev)
        if (theirs.act_name != ours.act_name or theirs.scale != ours.scale
                or theirs.ln1[2] != ours.ln1[2] or theirs.ln2[2] != ours.ln2[2]
                or not _same(_layer_in_checkpoint_coordinates(theirs, ref), ours)):
            bad.append(f"layer{l}")
    return bad


__all__ = ["EmbeddingWeights", "LayerWeights", "MLMHeadWeights", "ModelWeights",
           "encoder_mismatches", "forget_weights", "is_post_ln", "is_unedited", "layout",
           "model_weights", "original_hf_model"]
