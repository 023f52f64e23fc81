"""A plain GPT-2 forward on the checkpoint's own (unfolded) weights, with the switches that
dictionary features need: capture any site, replace an MLP's output, edit the residual stream,
and freeze attention patterns and LayerNorm denominators at the values of another run.

Why not the bridge? TransformerLens's compatibility mode folds each LayerNorm's weight and bias
into the next matrices and centres every writing matrix, so its ``hook_mlp_in`` is the
*unweighted* normalised residual, its ``hook_mlp_out`` the *centred* MLP output, its residual
stream centred, and the original LayerNorm weights are gone from the loaded model. Dictionaries
are defined on the model's own numbers (what ``transformers.GPT2LMHeadModel`` computes, and what
``circuit-tracer`` and the published transcoders read), so this module reloads the checkpoint
and computes, in the notation of Radford et al. 2019 (pre-LayerNorm GPT-2):

    x_0          = W_E[t] + W_pos[p]                                 (resid_pre 0)
    ln(x)        = g * (x - mean(x)) / sigma(x) + b,   sigma(x) = sqrt(var(x) + eps)
    attn_l(x)    = sum_h softmax(q_h k_h^T / sqrt(d_head) + causal) v_h W_O,h + b_O
    x_mid        = x + attn_l(ln1_l(x))                               (resid_mid l)
    ln2_out      = ln2_l(x_mid)                                      (the MLP's input)
    mlp_out      = gelu_new(ln2_out W_in + b_in) W_out + b_out
    x_{l+1}      = x_mid + mlp_out                                   (resid_post l = resid_pre l+1)
    logits       = ln_f(x_L) W_E^T

Logits equal the Hugging Face model's to float precision
(``tests/test_features_dictionary.py::test_unfolded_model_equals_hugging_face``).

From a loaded course model (:meth:`UnfoldedGPT2.from_model`), the weights are the bridge's *in
memory* (an ablation or :func:`tutorial_utils.input_attribution.randomized_weights` is seen),
written back in the checkpoint's parameterisation by
:func:`tutorial_utils.context_mixing.model_weights` (the same change of coordinates the
context-mixing methods use; an unedited model gives the checkpoint's own tensors).

*Frozen* (Ameisen et al. 2025, Circuit Tracing, "local replacement model"): each attention
pattern and each LayerNorm's ``sigma`` is taken from a :class:`FrozenState` recorded on another
run instead of being recomputed; the centring ``x - mean(x)`` stays (it is linear). With
attention patterns, denominators and MLP outputs all fixed, the residual stream is an affine
function of whatever is written into it.

Only GPT-2-architecture checkpoints (``GPT2LMHeadModel``: LayerNorm, learned positions, GELU MLP,
multi-head attention) are supported; anything else is refused with a :class:`TutorialError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from jaxtyping import Float, Int
from torch import Tensor

from ..context_mixing._weights import (SAME_AS_CHECKPOINT, _checkpoint_model, _relayer_norm,
                                       _set_invisible_direction, _swap_mean, forget_weights,
                                       is_post_ln, model_weights)
from ..errors import TutorialError

__all__ = ["FrozenState", "GPT2Weights", "SITES", "UnfoldedGPT2", "gelu_new", "layer_norm"]

#: Sites a dictionary can read or write, per layer (the unfolded model's numbers).
SITES = ("resid_pre", "resid_mid", "resid_post", "ln2_out", "mlp_out")

MlpOverride = Callable[[int, Tensor, Tensor], Tensor]
ResidEdit = Callable[[int, Tensor], Tensor]


def gelu_new(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """GPT-2's tanh approximation of GELU (``gelu_new`` in transformers)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def layer_norm(x: Float[Tensor, "... d"], weight: Float[Tensor, "d"], bias: Float[Tensor, "d"],
               eps: float, sigma: Float[Tensor, "... 1"] | None = None
               ) -> tuple[Float[Tensor, "... d"], Float[Tensor, "... 1"]]:
    """``(g * (x - mean) / sigma + b, sigma)``; ``sigma`` given = frozen denominator."""
    centred = x - x.mean(-1, keepdim=True)
    if sigma is None:
        sigma = (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return centred / sigma * weight + bias, sigma


@dataclass
class GPT2Weights:
    """The checkpoint's weights, unfolded and uncentred, laid out as ``x @ W``.

    Shapes: ``W_E [V, d]``, ``W_pos [n_ctx, d]``, per layer (stacked on dim 0, L layers):
    ``ln1_w, ln1_b, ln2_w, ln2_b [L, d]``, ``W_Q, W_K, W_V [L, H, d, d_head]``,
    ``b_Q, b_K, b_V [L, H, d_head]``, ``W_O [L, H, d_head, d]``, ``b_O [L, d]``,
    ``W_in [L, d, d_mlp]``, ``b_in [L, d_mlp]``, ``W_out [L, d_mlp, d]``, ``b_out [L, d]``;
    ``lnf_w, lnf_b [d]``, ``W_U [d, V]``, ``b_U [V]``."""

    W_E: Tensor
    W_pos: Tensor
    ln1_w: Tensor
    ln1_b: Tensor
    W_Q: Tensor
    W_K: Tensor
    W_V: Tensor
    b_Q: Tensor
    b_K: Tensor
    b_V: Tensor
    W_O: Tensor
    b_O: Tensor
    ln2_w: Tensor
    ln2_b: Tensor
    W_in: Tensor
    b_in: Tensor
    W_out: Tensor
    b_out: Tensor
    lnf_w: Tensor
    lnf_b: Tensor
    W_U: Tensor
    b_U: Tensor
    eps: float

    @property
    def n_layers(self) -> int:
        return int(self.ln1_w.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.W_Q.shape[1])

    @property
    def d_model(self) -> int:
        return int(self.W_E.shape[1])

    @property
    def d_vocab(self) -> int:
        return int(self.W_E.shape[0])

    @property
    def n_ctx(self) -> int:
        return int(self.W_pos.shape[0])

    @classmethod
    def from_hf(cls, hf_model: Any) -> "GPT2Weights":
        """Read a ``transformers`` ``GPT2LMHeadModel`` (refusing other architectures)."""
        cfg = _check_gpt2(hf_model)
        tr = hf_model.transformer
        d, H = cfg.n_embd, cfg.n_head
        dh = d // H
        g = lambda t: t.detach().float().clone()
        L = len(tr.h)
        qkv_w = torch.stack([g(b.attn.c_attn.weight) for b in tr.h])       # [L, d, 3d]
        qkv_b = torch.stack([g(b.attn.c_attn.bias) for b in tr.h])         # [L, 3d]
        split_w = lambda i: qkv_w[:, :, i * d:(i + 1) * d].reshape(L, d, H, dh).permute(0, 2, 1, 3)
        split_b = lambda i: qkv_b[:, i * d:(i + 1) * d].reshape(L, H, dh)
        lm_head = hf_model.lm_head
        return cls(
            W_E=g(tr.wte.weight), W_pos=g(tr.wpe.weight),
            ln1_w=torch.stack([g(b.ln_1.weight) for b in tr.h]),
            ln1_b=torch.stack([g(b.ln_1.bias) for b in tr.h]),
            W_Q=split_w(0).contiguous(), W_K=split_w(1).contiguous(), W_V=split_w(2).contiguous(),
            b_Q=split_b(0).contiguous(), b_K=split_b(1).contiguous(), b_V=split_b(2).contiguous(),
            W_O=torch.stack([g(b.attn.c_proj.weight) for b in tr.h]).reshape(L, H, dh, d),
            b_O=torch.stack([g(b.attn.c_proj.bias) for b in tr.h]),
            ln2_w=torch.stack([g(b.ln_2.weight) for b in tr.h]),
            ln2_b=torch.stack([g(b.ln_2.bias) for b in tr.h]),
            W_in=torch.stack([g(b.mlp.c_fc.weight) for b in tr.h]),
            b_in=torch.stack([g(b.mlp.c_fc.bias) for b in tr.h]),
            W_out=torch.stack([g(b.mlp.c_proj.weight) for b in tr.h]),
            b_out=torch.stack([g(b.mlp.c_proj.bias) for b in tr.h]),
            lnf_w=g(tr.ln_f.weight), lnf_b=g(tr.ln_f.bias),
            W_U=g(lm_head.weight).T.contiguous(),
            b_U=(g(lm_head.bias) if getattr(lm_head, "bias", None) is not None
                 else torch.zeros(lm_head.weight.shape[0])),
            eps=float(cfg.layer_norm_epsilon),
        )


    @classmethod
    def from_bridge(cls, model: Any) -> "GPT2Weights":
        """The weights of a loaded course model (a ``TransformerBridge``) **in memory**, in the
        checkpoint's parameterisation. Compatibility mode folded each LayerNorm into the
        weights that read it and centred the writing weights, in place, in the Hugging Face
        modules themselves; :func:`tutorial_utils.context_mixing.model_weights` undoes that for
        the embeddings and the blocks (exactly the in-memory function; the checkpoint's own
        tensors where a group is unedited), and :func:`_final_weights` for ``ln_f`` and the
        unembedding. Re-read on every call, so an edit through ``p.data`` is seen too."""
        hf = getattr(model, "original_model", None)
        if hf is None:
            raise TutorialError(f"features: expected a loaded course model (a TransformerBridge "
                                f"from tutorial_utils.models.load_model), got "
                                f"{type(model).__name__}")
        _check_gpt2(hf)
        if is_post_ln(model):
            raise TutorialError("tutorial_utils.features supports GPT-2 decoders only")
        forget_weights(model)              # an edit through .data bypasses the version counter
        weights = model_weights(model)
        lay, embed = weights.layers, weights.embed

        def stack(name: str, index: int | None = None) -> Tensor:
            return torch.stack([getattr(x, name) if index is None else getattr(x, name)[index]
                                for x in lay])

        def heads(name: str) -> Tensor:    # [L, d, H, d_head] -> [L, H, d, d_head]
            return stack(name).permute(0, 2, 1, 3).contiguous()

        dh = lay[0].W_Q.shape[-1]
        if any(abs(x.scale - dh ** -0.5) > 1e-12 for x in lay):
            raise TutorialError("features: only GPT-2's default attention scaling "
                                "(1/sqrt(d_head)) is supported")
        lnf_w, lnf_b, W_U, b_U, eps = _final_weights(model)
        return cls(
            W_E=embed.W_E.clone(), W_pos=embed.W_pos.clone(),
            ln1_w=stack("ln1", 0), ln1_b=stack("ln1", 1),
            W_Q=heads("W_Q"), W_K=heads("W_K"), W_V=heads("W_V"),
            b_Q=stack("b_Q"), b_K=stack("b_K"), b_V=stack("b_V"),
            W_O=stack("W_O"), b_O=stack("b_O"),
            ln2_w=stack("ln2", 0), ln2_b=stack("ln2", 1),
            W_in=stack("W_in"), b_in=stack("b_in"), W_out=stack("W_out"), b_out=stack("b_out"),
            lnf_w=lnf_w, lnf_b=lnf_b, W_U=W_U, b_U=b_U, eps=eps)


def _check_gpt2(hf_model: Any) -> Any:
    """The config of a ``GPT2LMHeadModel`` whose forward :class:`UnfoldedGPT2` computes; a
    :class:`TutorialError` for any other architecture or variant."""
    cfg = getattr(hf_model, "config", None)
    if getattr(cfg, "model_type", None) != "gpt2" or not hasattr(hf_model, "transformer"):
        raise TutorialError(
            "tutorial_utils.features supports GPT-2-architecture checkpoints "
            "(GPT2LMHeadModel: LayerNorm, learned positions, GELU MLP); got "
            f"{getattr(cfg, 'model_type', type(hf_model).__name__)!r}")
    if cfg.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise TutorialError(f"features: MLP activation {cfg.activation_function!r} is not "
                            "supported (GPT-2's gelu_new only)")
    if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or \
            not getattr(cfg, "scale_attn_weights", True):
        raise TutorialError("features: only GPT-2's default attention scaling "
                            "(1/sqrt(d_head)) is supported")
    return cfg


@torch.no_grad()
def _final_weights(model: Any) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """``(lnf_w, lnf_b, W_U [d, V], b_U [V], eps)`` of the bridge in memory, in the
    checkpoint's parameterisation: the in-memory ``ln_f`` (gain ``g'``, bias ``b'``; folded:
    1 and 0) and unembedding ``W_U'``, ``b_U'`` rewritten for the checkpoint's ``ln_f``
    (``W_U = diag(g'/g) W_U'``, ``b_U = b_U' + (b' - g' b/g) W_U'``), the direction a LayerNorm's
    output cannot see and each logit's mean over the vocabulary (the softmax ignores it) set to
    the checkpoint's. The same logits as the bridge's up to a constant per position; the
    checkpoint's own tensors when they agree to ``SAME_AS_CHECKPOINT`` of their scale."""
    full = _checkpoint_model(model)
    ref_ln = full.transformer.ln_f
    ref = (ref_ln.weight.detach().float(), ref_ln.bias.detach().float(), float(ref_ln.eps))
    head = full.lm_head
    W_ref = head.weight.detach().float().T
    b_ref = (head.bias.detach().float() if getattr(head, "bias", None) is not None
             else torch.zeros(W_ref.shape[1], device=W_ref.device))
    mem = (model.ln_final.w.detach().float(), model.ln_final.b.detach().float(), ref[2])
    W, b = _relayer_norm(model.W_U.detach().float(), model.b_U.detach().float(), mem, ref)
    W, b = _set_invisible_direction(W, b, W_ref, ref)
    W, b = _swap_mean(W, W_ref, -1), _swap_mean(b, b_ref, -1)
    scale = max(float(W_ref.abs().max()), float(ref[0].abs().max()), 1e-12)
    if float((W - W_ref).abs().max()) <= SAME_AS_CHECKPOINT * scale and \
            float((b - b_ref).abs().max()) <= SAME_AS_CHECKPOINT * scale:
        W, b = W_ref, b_ref
    return ref[0].clone(), ref[1].clone(), W.contiguous().clone(), b.clone(), ref[2]


def _load_quietly(source: str) -> Any:
    """``GPT2LMHeadModel.from_pretrained(source)`` without transformers's "Loading weights"
    progress bar (a notebook would save it)."""
    bars = transformers.utils.logging
    was = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        return transformers.GPT2LMHeadModel.from_pretrained(source).eval()
    finally:
        if was:
            bars.enable_progress_bar()


@dataclass
class FrozenState:
    """What a frozen run reuses: attention patterns ``[L, B, H, T, T]`` and LayerNorm
    denominators ``ln1_sigma, ln2_sigma [L, B, T, 1]``, ``lnf_sigma [B, T, 1]``. A batch of 1
    broadcasts over any number of stacked variants of the same prompt. A field left ``None``
    is recomputed (e.g. only the attention patterns frozen)."""

    patterns: Tensor | None
    ln1_sigma: Tensor | None
    ln2_sigma: Tensor | None
    lnf_sigma: Tensor | None


@dataclass
class RunResult:
    """Logits ``[B, T, V]``, the captured sites (``"resid_pre.2"`` -> ``[B, T, d]``) and,
    when asked, the :class:`FrozenState` of the run."""

    logits: Tensor
    cache: dict[str, Tensor] = field(default_factory=dict)
    frozen: FrozenState | None = None


class UnfoldedGPT2:
    """GPT-2 on its own weights (see the module docstring), for dictionaries and graphs."""

    def __init__(self, weights: GPT2Weights, tokenizer: Any = None, name: str = "model"):
        self.w = weights
        self.tokenizer = tokenizer
        self.name = name

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, tokenizer: Any = None,
                        allow_hub: bool = False) -> "UnfoldedGPT2":
        """Load a local Hugging Face GPT-2 checkpoint directory; with ``allow_hub``, a name
        on the Hugging Face hub (``"gpt2"``) is loaded through ``transformers``'s cache too."""
        local = Path(path)
        if not (local / "config.json").exists():
            if not allow_hub or local.exists():
                raise TutorialError(f"features: {path} is not a Hugging Face checkpoint "
                                    "directory (no config.json)")
            try:
                hf = _load_quietly(str(path))
                if tokenizer is None:
                    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
            except (OSError, ValueError) as error:
                raise TutorialError(f"features: could not load {str(path)!r} from the Hugging "
                                    f"Face hub or its cache ({error})") from error
            return cls(GPT2Weights.from_hf(hf), tokenizer, name=str(path))
        hf = _load_quietly(str(local))
        if tokenizer is None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(local))
        return cls(GPT2Weights.from_hf(hf), tokenizer, name=local.name)

    @classmethod
    def from_model(cls, model: Any) -> "UnfoldedGPT2":
        """From a loaded course model (a ``TransformerBridge``): its weights **in memory**
        (:meth:`GPT2Weights.from_bridge`: an edit of the bridge's parameters is seen; an
        unedited model gives the checkpoint's own weights). The weights are copied: a later
        edit of the bridge needs another ``from_model``."""
        if isinstance(model, UnfoldedGPT2):
            return model
        source = getattr(getattr(getattr(model, "original_model", None), "config", None),
                         "_name_or_path", None) or "model"
        return cls(GPT2Weights.from_bridge(model), getattr(model, "tokenizer", None),
                   name=Path(source).name or str(source))

    # --- checks -----------------------------------------------------------------------------
    def check_tokens(self, tokens: Any) -> Int[Tensor, "batch pos"]:
        if not isinstance(tokens, Tensor) or tokens.ndim != 2:
            shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise TutorialError(f"tokens must be a LongTensor [batch, pos], got {shape}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise TutorialError(f"tokens must hold integer ids, got dtype {tokens.dtype}")
        if tokens.shape[1] > self.w.n_ctx:
            raise TutorialError(f"tokens: {tokens.shape[1]} positions exceed the model's "
                                f"context of {self.w.n_ctx}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.w.d_vocab):
            raise TutorialError(f"tokens: ids must lie in [0, {self.w.d_vocab}), got "
                                f"[{int(tokens.min())}, {int(tokens.max())}]")
        return tokens.long()

    def check_layer(self, layer: Any) -> int:
        L = self.w.n_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < L:
            raise TutorialError(f"layer must be an integer in [0, {L}) for this {L}-layer "
                                f"model, got {layer!r}")
        return layer

    def check_site(self, site: Any, layer: Any) -> str:
        if site not in SITES:
            raise TutorialError(f"unknown site {site!r}; valid sites of the unfolded model: "
                                f"{SITES}")
        self.check_layer(layer)
        return f"{site}.{layer}"

    # --- the forward ------------------------------------------------------------------------
    def run(self, tokens: Int[Tensor, "batch pos"], *, capture: tuple[str, ...] = (),
            mlp_override: MlpOverride | None = None, resid_edit: ResidEdit | None = None,
            frozen: FrozenState | None = None, record_frozen: bool = False,
            stop_at: str | None = None) -> RunResult:
        """One forward (see the module docstring).

        Args:
            capture: site names ``"{site}.{layer}"`` (sites :data:`SITES`) to return.
            mlp_override: ``f(layer, ln2_out, mlp_out) -> new mlp_out`` (``mlp_out`` is the
                real MLP's output on this run; return it unchanged to keep it).
            resid_edit: ``f(layer, resid_pre) -> new resid_pre`` before block ``layer``
                (``layer == n_layers``: the final residual stream, before ``ln_f``).
            frozen: reuse these attention patterns and LayerNorm denominators.
            record_frozen: return this run's patterns and denominators.
            stop_at: a captured site after which to stop (logits are then empty).
        """
        tokens = self.check_tokens(tokens)
        w = self.w
        B, T = tokens.shape
        cache: dict[str, Tensor] = {}
        rec = {"patterns": [], "ln1": [], "ln2": []}
        x = w.W_E[tokens] + w.W_pos[:T]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        for layer in range(w.n_layers):
            if resid_edit is not None:
                x = resid_edit(layer, x)
            if f"resid_pre.{layer}" in capture:
                cache[f"resid_pre.{layer}"] = x
            if stop_at == f"resid_pre.{layer}":
                return RunResult(torch.empty(0), cache)
            s1 = None if frozen is None or frozen.ln1_sigma is None else frozen.ln1_sigma[layer]
            h, s1 = layer_norm(x, w.ln1_w[layer], w.ln1_b[layer], w.eps, s1)
            v = torch.einsum("btd,hde->bthe", h, w.W_V[layer]) + w.b_V[layer]
            if frozen is None or frozen.patterns is None:
                q = torch.einsum("btd,hde->bthe", h, w.W_Q[layer]) + w.b_Q[layer]
                k = torch.einsum("btd,hde->bthe", h, w.W_K[layer]) + w.b_K[layer]
                scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
                scores = scores.masked_fill(~causal, float("-inf"))
                pattern = scores.softmax(-1)
            else:
                pattern = frozen.patterns[layer]
            z = torch.einsum("bhqk,bkhe->bqhe", pattern.expand(B, -1, -1, -1), v)
            x = x + torch.einsum("bqhe,hed->bqd", z, w.W_O[layer]) + w.b_O[layer]
            if f"resid_mid.{layer}" in capture:
                cache[f"resid_mid.{layer}"] = x
            s2 = None if frozen is None or frozen.ln2_sigma is None else frozen.ln2_sigma[layer]
            m_in, s2 = layer_norm(x, w.ln2_w[layer], w.ln2_b[layer], w.eps, s2)
            if f"ln2_out.{layer}" in capture:
                cache[f"ln2_out.{layer}"] = m_in
            if stop_at == f"ln2_out.{layer}":
                return RunResult(torch.empty(0), cache)
            m_out = gelu_new(m_in @ w.W_in[layer] + w.b_in[layer]) @ w.W_out[layer] + w.b_out[layer]
            if mlp_override is not None:
                m_out = mlp_override(layer, m_in, m_out)
            if f"mlp_out.{layer}" in capture:
                cache[f"mlp_out.{layer}"] = m_out
            x = x + m_out
            if f"resid_post.{layer}" in capture:
                cache[f"resid_post.{layer}"] = x
            if stop_at in (f"mlp_out.{layer}", f"resid_post.{layer}"):
                return RunResult(torch.empty(0), cache)
            if record_frozen:
                rec["patterns"].append(pattern)
                rec["ln1"].append(s1)
                rec["ln2"].append(s2)
        if resid_edit is not None:
            x = resid_edit(w.n_layers, x)
        sf = None if frozen is None else frozen.lnf_sigma
        out, sf = layer_norm(x, w.lnf_w, w.lnf_b, w.eps, sf)
        logits = out @ w.W_U + w.b_U
        state = None
        if record_frozen:
            state = FrozenState(torch.stack(rec["patterns"]), torch.stack(rec["ln1"]),
                                torch.stack(rec["ln2"]), sf)
        return RunResult(logits, cache, state)

    @torch.no_grad()
    def logits(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos vocab"]:
        """The model's logits (no switches)."""
        return self.run(tokens).logits

    @torch.no_grad()
    def activations(self, tokens: Int[Tensor, "batch pos"], names: tuple[str, ...],
                    batch_size: int = 64) -> dict[str, Float[Tensor, "batch pos d"]]:
        """The sites ``names`` on ``tokens``, in batches (no gradient)."""
        names = tuple(dict.fromkeys(names))
        for n in names:
            site, _, layer = n.rpartition(".")
            self.check_site(site, int(layer) if layer.isdigit() else layer)
        out: dict[str, list[Tensor]] = {n: [] for n in names}
        for i in range(0, tokens.shape[0], batch_size):
            res = self.run(tokens[i:i + batch_size], capture=tuple(names))
            for n in names:
                out[n].append(res.cache[n])
        return {n: torch.cat(v) for n, v in out.items()}
