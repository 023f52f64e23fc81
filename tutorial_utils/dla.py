"""**Direct logit attribution** (Elhage et al. 2021, "A Mathematical Framework for Transformer
Circuits"; used in Wang et al. 2023 on IOI and Hanna et al. 2023 on Greater-Than). With the final
scale frozen from the same run, the read-out is linear, and the final residual stream is a sum of
the components' outputs, so the logits decompose exactly::

    logits = sum_c (c - mean(c)) / s(x_final) @ W_U  +  b_U,
    c in {tok_embed, pos_embed, head (l, h), b_O[l], mlp_out_l},
    head (l, h) = A_{l,h} (x W_V[l, h] + b_V[l, h]) W_O[l, h] = z_{l,h} W_O[l, h] + b_V[l, h] W_O[l, h].

A head's output is the papers' (Elhage et al. 2021): its value bias included (the attention
pattern's rows sum to 1, so the value bias adds ``b_V[l, h] W_O[l, h]`` at every position).
Compatibility mode folds every ``b_V`` into ``b_O`` (the bridge's ``b_V`` is 0, so its ``hook_z``
lacks it; in GPT-2 the first LayerNorm's bias ``beta`` is folded the same way, as
``beta W_V[l, h]``), so following the project rule that a method defined on the original weights
reads the unfolded ones, each head's row adds back its own ``(b_V[l, h] + beta_l W_V[l, h])
W_O[l, h]`` from the weights in memory written in the checkpoint's parameterisation
(:func:`tutorial_utils.context_mixing.model_weights`, GPT-2), and the row ``bias.attn`` holds the
rest of the folded output bias (the checkpoint's ``b_O``), so the rows still sum to the logits.
On an architecture :func:`~tutorial_utils.context_mixing.model_weights` does not read (other than
GPT-2), the folded value bias cannot be split by head and stays in ``bias.attn``, as in
TransformerLens's ``stack_head_results`` (a model with neither value biases nor LayerNorm biases,
such as Llama, Mistral or Gemma, loses nothing).

``hook_mlp_out`` already contains the MLP's output bias ``b_out``; the attention output biases
``b_O`` are not attributable to any single head and appear as the row ``bias.attn`` when heads are
split (inside ``a{l}`` when they are not), and ``b_U`` as ``bias.b_U``.

*Metrics.* Logit differences are linear in the logits, so projecting DLA onto a direction
(:meth:`DLAResult.project`, :func:`logit_diff_attribution`) decomposes them exactly. Probability
differences (Greater-Than, agreement) are not: :func:`task_metric_attribution` with
``linearise=True`` attributes the first-order term ``g . logits`` with ``g = d metric / d logits``
at the clean run, which tells how the metric would move, to first order, if a component's direct
contribution were removed; the rows then sum to ``g . logits``, not to the metric.

Everything is computed at one position per example (``pos``: an int or ``TaskDataset.answer_pos``),
in one batched forward pass (chunked by ``batch_size``), or from a cache you already have.

The read-out is :mod:`tutorial_utils.readout`; the figure :func:`tutorial_utils.plotting.plot_dla`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .context_mixing import layout, model_weights
from .errors import TutorialError
from .names import attention_layer_name, head_name, head_rows, hook_name, mlp_name
from .model_checks import check_additive_writers, check_hook_names, check_token_ids
from .readout import (MAX_FULL_VOCAB_VALUES, activations_at, check_decoder, has_pos_embed,
                      normalise, prepare_batch, project, read_out_weights)
from .validation import check_choice, check_finite, check_int, check_int_ids

if TYPE_CHECKING:
    from .models import Model

__all__ = ["ComponentLensResult", "DLAResult", "MetricAttribution", "component_logit_lens",
           "direct_logit_attribution", "direct_path_removal", "head_value_bias_outputs",
           "logit_diff_attribution", "task_metric_attribution"]


# --------------------------------------------------------------------------------------------
# Components: their outputs at pos, projected
# --------------------------------------------------------------------------------------------

def _component_names(model: Model) -> list[str]:
    L = model.cfg.n_layers
    names = [hook_name("embed")] + ([hook_name("pos_embed")] if has_pos_embed(model) else []) + \
        [hook_name("ln_final_scale"), hook_name("resid_post", L - 1)]
    for l in range(L):
        names += [hook_name("z", l), hook_name("attn_out", l), hook_name("mlp_out", l)]
    return names


def head_value_bias_outputs(model: Model) -> Float[Tensor, "layers heads d_model"] | None:
    """``[L, H, d_model]``: each head's constant output ``c[l, h] W_O[l, h]`` that the paper's
    head output ``A (LN(x) W_V + b_V) W_O`` holds and the bridge's ``hook_z`` does not (module
    docstring), or None on an architecture whose checkpoint weights are not read (not GPT-2).

    ``c[l, h] = b_V[l, h] + beta_l W_V[l, h]`` in the checkpoint's parameterisation of the
    weights in memory (:func:`tutorial_utils.context_mixing.model_weights`: an edit is seen),
    minus the same constant the bridge's own weights carry (``b_V`` and its LayerNorm's bias,
    both 0 in compatibility mode); ``W_O`` is the bridge's (the row mean it lacks is removed by
    DLA's centring anyway)."""
    try:
        if layout(model) != "pre_ln":
            return None
    except TutorialError:
        return None
    weights = model_weights(model)
    out = []
    with torch.no_grad():
        for l, lw in enumerate(weights.layers):
            attn, ln1 = model.blocks[l].attn, model.blocks[l].ln1
            W_O = attn.W_O.detach().float()                                  # [H, d_head, d]
            dev = W_O.device
            const = lw.b_V.to(dev) + torch.einsum("d,dhk->hk", lw.ln1[1].to(dev), lw.W_V.to(dev))
            b_V_mem = getattr(attn, "b_V", None)
            if b_V_mem is not None:
                const = const - b_V_mem.detach().float()
            beta_mem = getattr(ln1, "b", None)
            if beta_mem is not None:
                const = const - torch.einsum("d,hdk->hk", beta_mem.detach().float(),
                                             attn.W_V.detach().float())
            out.append(torch.einsum("hk,hkd->hd", const, W_O))
    return torch.stack(out)


def _component_stack(model: Model, acts: dict[str, Tensor], per_head: bool
                     ) -> tuple[list[str], Tensor]:
    """Labels and outputs ``[C, B, d_model]`` of every component writing to the final residual
    stream (before normalisation), bias rows included; they sum to resid_post of the last block.

    Head outputs are ``z[l, h] @ W_O[l, h]`` plus the head's folded value bias
    (:func:`head_value_bias_outputs`), which ``bias.attn`` (the summed ``b_O``) gives back."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    # token and position embeddings as separate rows; together they are the graph's node
    # ``embed`` (tutorial_utils.graph), which is why the token row is not called "embed".
    # A rotary model has no position embedding in the residual stream: no pos_embed row.
    labels, rows = ["tok_embed"], [acts[hook_name("embed")]]
    if has_pos_embed(model):
        labels.append("pos_embed")
        rows.append(acts[hook_name("pos_embed")])
    b_O_total = None
    value_bias = head_value_bias_outputs(model) if per_head else None
    for l in range(L):
        attn = model.blocks[l].attn
        if per_head:
            z = acts[hook_name("z", l)]                              # [B, H, d_head]
            W_O = attn.W_O.detach().float().to(z.device)             # [H, d_head, d_model]
            heads = torch.einsum("bhe,hed->hbd", z, W_O)
            b_O = getattr(attn, "b_O", None)
            b_O = None if b_O is None else b_O.detach().float().to(z.device)
            if value_bias is not None:
                vb = value_bias[l].to(z.device)                      # [H, d_model]
                heads = heads + vb[:, None, :]
                b_O = (-vb.sum(0)) if b_O is None else b_O - vb.sum(0)
            labels += [head_name(l, h) for h in range(H)]
            rows += list(heads)
            if b_O is not None:
                b_O_total = b_O if b_O_total is None else b_O_total + b_O
        else:
            labels.append(attention_layer_name(l))
            rows.append(acts[hook_name("attn_out", l)])
        labels.append(mlp_name(l))
        rows.append(acts[hook_name("mlp_out", l)])
    if per_head and b_O_total is not None:
        labels.append("bias.attn")
        rows.append(b_O_total.expand_as(rows[0]))
    return labels, torch.stack(rows, 0)


@dataclass
class ComponentLensResult:
    """Each component's output at ``pos`` read through the final LayerNorm and ``W_U``.

    Attributes:
        labels: ``tok_embed`` (token embedding), ``pos_embed`` (only for a model with a learned
            position embedding; rotary models have none), ``a{l}.h{h}`` (or ``a{l}``),
            ``m{l}`` and, for DLA with
            heads split, ``bias.attn`` (the summed ``b_O``, without the value biases the
            head rows carry: module docstring), then ``bias.b_U`` (and
            ``bias.ln_final`` outside compatibility mode).
        values: ``[n_components, B, K]`` (or ``[..., V]`` for the full vocabulary).
        token_ids: ``[K]``, ``[B, K]`` or None.
        pos: ``[B]``.
        scale: ``"final"`` (frozen final scale: DLA) or ``"own"``.
    """

    labels: list[str]
    values: Float[Tensor, "components batch k"]
    token_ids: Int[Tensor, "*batch k"] | None
    pos: Int[Tensor, "batch"]
    scale: str

    def index(self, label: str) -> int:
        if label not in self.labels:
            raise TutorialError(f"no component {label!r}; components: {self.labels}")
        return self.labels.index(label)

    def get(self, label: str) -> Float[Tensor, "batch k"]:
        """``[B, K]`` values of one component."""
        return self.values[self.index(label)]

    def head_grid(self) -> Float[Tensor, "layers heads batch k"]:
        """``[n_layers, n_heads, B, K]`` the per-head rows arranged by layer and head."""
        heads = head_rows(list(self.labels))
        if not heads:
            raise TutorialError("this result has no per-head rows (computed with per_head=False)")
        L, H = 1 + max(l for _, l, _ in heads), 1 + max(h for _, _, h in heads)
        grid = torch.zeros(L, H, *self.values.shape[1:], dtype=self.values.dtype,
                           device=self.values.device)
        for i, l, h in heads:
            grid[l, h] = self.values[i]
        return grid

    def project(self, weights: Any) -> Float[Tensor, "components batch"]:
        """``[n_components, B]``: ``sum_k weights[k] * values[..., k]`` (``weights`` ``[K]`` or
        ``[B, K]``). Exact for any linear function of the logits, e.g. a logit difference."""
        w = check_finite(weights, "weights")
        if w.dtype == torch.bool or not w.dtype.is_floating_point:
            w = w.to(self.values.dtype)
        w = w.to(self.values.device, self.values.dtype)
        K = self.values.shape[-1]
        if w.shape not in ((K,), (self.values.shape[1], K)):
            raise TutorialError(f"weights must have shape [K={K}] or [B, K] = "
                             f"{list(self.values.shape[1:])}, got {tuple(w.shape)}")
        return (self.values * w).sum(-1)


@dataclass
class DLAResult(ComponentLensResult):
    """Direct logit attribution: :class:`ComponentLensResult` with the final scale frozen and the
    bias rows, so that ``values.sum(0) == logits`` (the model's centred logits of ``token_ids``).

    Extra attributes:
        logits: ``[B, K]`` the model's logits of ``token_ids`` at ``pos`` (centred in
            compatibility mode).
    """

    logits: Float[Tensor, "batch k"] = field(default_factory=lambda: torch.zeros(0))

    def total(self) -> Float[Tensor, "batch k"]:
        """``[B, K]`` the sum over all rows; equals :attr:`logits` up to float error."""
        return self.values.sum(0)


def _components_projected(model: Model, tokens: Any, pos: Any, token_ids: Any, cache: Any,
                          per_head: bool, scale: str, batch_size: int, required_ids: bool,
                          what: str, with_bias: bool, attention_mask: Any = None):
    check_decoder(model, what)
    check_additive_writers(model, what)
    check_choice(scale, ("own", "final"), "scale")
    check_choice(per_head, (True, False), "per_head")
    tokens, p, fwd_mask = prepare_batch(model, tokens, pos, attention_mask, cache, batch_size)
    B, T = tokens.shape
    ids = check_token_ids(model, token_ids, B, required=required_ids)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    n_comp = 1 + int(has_pos_embed(model)) + L * ((H if per_head else 1) + 1) + 3
    if ids is None and n_comp * B * model.cfg.d_vocab > MAX_FULL_VOCAB_VALUES:
        raise TutorialError(f"projecting {n_comp} components x {B} examples onto the full vocabulary "
                         f"({model.cfg.d_vocab}) is too large: pass token_ids")
    names = _component_names(model)
    if cache is None:
        check_hook_names(model, names)
    acts = activations_at(model, tokens, p, names, cache, batch_size, fwd_mask)
    labels, stack = _component_stack(model, acts, per_head)          # [C, B, d]
    frozen = acts[hook_name("ln_final_scale")].reshape(B, 1)
    W_U, b_U, ln_bias = read_out_weights(model, stack.device)
    values = project(normalise(stack, model, frozen if scale == "final" else None), W_U, ids,
                      None)
    if with_bias:
        K_shape = values.shape[1:]
        extra = [("bias.b_U", b_U)] + ([("bias.ln_final", ln_bias)] if ln_bias is not None else [])
        for lab, vec in extra:
            if ids is None:
                row = vec.expand(K_shape)
            elif ids.ndim == 1:
                row = vec[ids.to(vec.device)].expand(K_shape)
            else:
                row = vec[ids.to(vec.device)]
            labels.append(lab)
            values = torch.cat([values, row[None]], 0)
    resid = acts[hook_name("resid_post", L - 1)]
    bias_all = b_U if ln_bias is None else b_U + ln_bias
    logits = project(normalise(resid, model, frozen), W_U, ids, bias_all)
    return labels, values, ids, p, logits


def component_logit_lens(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    pos: int | Int[Tensor, "batch"] = -1,
    token_ids: Any = None,
    cache: Any = None,
    per_head: bool = True,
    scale: str = "final",
    batch_size: int = 64,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> ComponentLensResult:
    """Each component's output at ``pos`` read out as logits (no ``b_U``):
    ``values[c, b] = LN_final(c[b, pos[b]]) @ W_U[:, token_ids]``.

    With ``scale="final"`` (default) each output is centred and divided by the final residual
    stream's frozen scale: these are the direct logit attributions (without bias rows; see
    :func:`direct_logit_attribution`). With ``scale="own"`` each output is normalised by its own
    RMS, as if it alone were the residual stream ("what does this component, on its own,
    predict?"): the magnitudes are then comparable across components but no longer add up.

    Components: ``tok_embed``, ``pos_embed`` (their sum is the graph node ``embed``), each
    head ``a{l}.h{h}`` (``z @ W_O`` plus its value bias ``b_V W_O``, no ``b_O``: see the module
    docstring) and,
    with heads split, ``bias.attn``; or each attention layer ``a{l}`` (``hook_attn_out``, with
    ``b_O``) when ``per_head=False``; each MLP ``m{l}`` (``hook_mlp_out``, with ``b_out``).
    Shapes and other arguments (``attention_mask`` for padded prompts included) as for
    :func:`~tutorial_utils.logit_lens.logit_lens`; ``values`` is ``[n_components, B, K]``.
    """
    labels, values, ids, p, _ = _components_projected(
        model, tokens, pos, token_ids, cache, per_head, scale, batch_size, False,
        "component_logit_lens", with_bias=False, attention_mask=attention_mask)
    return ComponentLensResult(labels=labels, values=values, token_ids=ids, pos=p, scale=scale)


def direct_logit_attribution(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    pos: int | Int[Tensor, "batch"],
    token_ids: Any,
    cache: Any = None,
    per_head: bool = True,
    batch_size: int = 64,
    attention_mask: Int[Tensor, "batch pos"] | None = None,
) -> DLAResult:
    """Direct logit attribution of every component to the logits of ``token_ids`` at ``pos``.

    ``values[c, b, k] = (c_b - mean(c_b)) / s_b @ W_U[:, t_k]`` with ``s_b`` the final LayerNorm
    scale of the same run (frozen), plus the rows ``bias.attn`` (summed ``b_O`` of the
    checkpoint, heads split only) and ``bias.b_U``. A head's row is its whole output,
    ``A (x W_V + b_V) W_O``, value bias included (module docstring). Exact decomposition: ``values.sum(0) == logits`` (the model's centred
    logits). A head's DLA is only its *direct* path to the logits: effects through later layers,
    and through the LayerNorm scale, are not counted (Elhage et al. 2021; Wang et al. 2023).

    Args:
        token_ids: ``[K]`` or per-example ``[B, K]`` ids (required), e.g. the year tokens or
            ``TaskDataset.candidate_ids``.
        per_head: one row per head (``a{l}.h{h}``) rather than per attention layer (``a{l}``).
        others as for :func:`logit_lens`.

    Returns:
        a :class:`DLAResult`: ``values`` ``[n_components, B, K]``, ``logits`` ``[B, K]``.
    """
    labels, values, ids, p, logits = _components_projected(
        model, tokens, pos, token_ids, cache, per_head, "final", batch_size, True,
        "direct logit attribution", with_bias=True, attention_mask=attention_mask)
    return DLAResult(labels=labels, values=values, token_ids=ids, pos=p, scale="final",
                     logits=logits)


def logit_diff_attribution(dla: ComponentLensResult, correct_ids: Any, wrong_ids: Any
                           ) -> Float[Tensor, "components batch"]:
    """``[n_components, B]`` each component's direct contribution to
    ``mean_{c in correct} logit_c - mean_{w in wrong} logit_w``.

    ``correct_ids`` and ``wrong_ids`` are token ids: an int or a list/tuple shared by all examples,
    or a tensor ``[B]`` / ``[B, n]`` giving each example its own ids (e.g. IOI's indirect object
    and subject); each must be among ``dla.token_ids`` for its example.
    Exact: summed over all rows (bias rows included) it equals the model's logit difference.
    """
    if not isinstance(dla, ComponentLensResult):
        raise TutorialError(f"dla must be the result of direct_logit_attribution (or "
                            f"component_logit_lens), got {type(dla).__name__}")
    ids = dla.token_ids
    if ids is None:
        raise TutorialError("this result covers the full vocabulary; index it directly")
    B, K = dla.values.shape[1], dla.values.shape[2]
    ids_bk = ids if ids.ndim == 2 else ids[None].expand(B, K)

    def weights(sel: Any, name: str) -> Tensor:
        if isinstance(sel, Tensor):                                   # per example
            s = check_int_ids(sel, name).cpu()
            s = s[:, None] if s.ndim == 1 else s
            if s.ndim != 2 or s.shape[0] != B:
                raise TutorialError(f"a tensor of {name} gives ids per example: shape [B={B}] or "
                                 f"[B, n], got {tuple(sel.shape)} (use a list for shared ids)")
        else:                                                         # shared by all examples
            s = check_int_ids(sel, name, allow_empty=True).reshape(1, -1).expand(B, -1)
        if s.shape[1] == 0:
            raise TutorialError(f"{name} is empty")
        match = ids_bk[:, None, :] == s[:, :, None]                   # [B, n, K]
        missing = ~match.any(-1)
        if missing.any():
            b, j = missing.nonzero()[0].tolist()
            raise TutorialError(f"{name} id {int(s[b, j])} (example {b}) is not among the "
                             "attribution's token_ids")
        return match.float().sum(1) / s.shape[1]                      # [B, K]

    w = weights(correct_ids, "correct_ids") - weights(wrong_ids, "wrong_ids")
    return dla.project(w)


# --------------------------------------------------------------------------------------------
# Task metrics
# --------------------------------------------------------------------------------------------

@dataclass
class MetricAttribution:
    """Each component's direct contribution to a task's metric direction.

    Attributes:
        labels: component labels (as :class:`DLAResult`).
        values: ``[n_components, B]``.
        target: ``[B]`` what the rows sum to: the metric itself when ``exact``, else the
            linearised score ``g . logits``.
        metric: ``[B]`` the task metric of the clean run.
        exact: True when ``values.sum(0) == metric`` (logit-difference metrics with
            :func:`task_metric_attribution`).
        weights: ``[B, K]`` the direction in candidate-logit space (``K`` candidates), or for a
            linearisation the gradient restricted to the candidates (the rest of the vocabulary
            also enters, through ``-p_j * metric``).
    """

    labels: list[str]
    values: Float[Tensor, "components batch"]
    target: Float[Tensor, "batch"]
    metric: Float[Tensor, "batch"]
    exact: bool
    weights: Float[Tensor, "batch k"]

    def head_grid(self) -> Float[Tensor, "layers heads batch"]:
        """``[n_layers, n_heads, B]``."""
        tmp = ComponentLensResult(self.labels, self.values[..., None], None, torch.zeros(0), "final")
        return tmp.head_grid()[..., 0]


def _metric_setup(model: Model, dataset: Any, cache: Any, per_head: bool, batch_size: int,
                  what: str):
    """Validate, run (or read the cache), and return the normalised component stack
    ``[C, B, d]`` (frozen final scale), the read-out, the full logits ``[B, V]`` at the answer
    positions, and the candidates."""
    check_decoder(model, what)
    check_additive_writers(model, what)
    for key in ("clean_tokens", "answer_pos", "candidate_ids", "candidate_sign", "metric_kind"):
        if not hasattr(dataset, key):
            raise TutorialError(f"dataset must be a TaskDataset (missing {key!r})")
    if dataset.metric_kind not in ("prob_diff", "logit_diff"):
        raise TutorialError(f"unknown metric kind {dataset.metric_kind!r}")
    sign = dataset.candidate_sign.float().cpu()
    ids = dataset.candidate_ids.long().cpu()
    tokens, p, fwd_mask = prepare_batch(model, dataset.clean_tokens, dataset.answer_pos, None,
                                        cache, batch_size)
    B, T = tokens.shape
    check_token_ids(model, ids, B, required=True)
    names = _component_names(model)
    if cache is None:
        check_hook_names(model, names)
    acts = activations_at(model, tokens, p, names, cache, batch_size, fwd_mask)
    labels, stack = _component_stack(model, acts, per_head)
    frozen = acts[hook_name("ln_final_scale")].reshape(B, 1)
    W_U, b_U, ln_bias = read_out_weights(model, stack.device)
    bias = b_U if ln_bias is None else b_U + ln_bias
    ids, sign = ids.to(stack.device), sign.to(stack.device)
    L = model.cfg.n_layers
    full = project(normalise(acts[hook_name("resid_post", L - 1)], model, frozen), W_U, None,
                    bias)                                            # [B, V]
    xn = normalise(stack, model, frozen)                            # [C, B, d]
    return labels, xn, W_U, b_U, ln_bias, full, ids, sign


def _metric_of(full: Tensor, ids: Tensor, sign: Tensor, kind: str) -> Tensor:
    """The task metric of logits ``[..., B, V]`` -> ``[..., B]`` (as ``TaskDataset.metric``)."""
    scores = full.softmax(-1) if kind == "prob_diff" else full
    idx = ids.expand(*full.shape[:-1], ids.shape[-1])
    return (scores.gather(-1, idx) * sign).sum(-1)


def direct_path_removal(model: Model, dataset: Any, cache: Any = None, per_head: bool = True,
                        batch_size: int = 64, chunk: int = 16) -> MetricAttribution:
    """The exact effect on the task metric of removing each component's *direct* contribution,
    with the final LayerNorm scale frozen::

        values[c, b] = metric(logits_b) - metric(logits_b - DLA_c,b)      (full vocabulary)

    Unlike :func:`task_metric_attribution` this is not a linearisation, so it captures
    saturation (a component whose removal barely moves an already-certain prediction scores
    near 0 even if its DLA is large), but the rows do not sum to anything in general
    (``exact`` is False and ``target`` is the metric). For logit-difference metrics it equals the
    exact DLA rows. It is not an ablation: the component still feeds later layers; only its
    direct path to the logits is removed (Wang et al. 2023 call this "direct effect").
    ``chunk`` components are evaluated at once (memory ``chunk x B x V``).
    """
    chunk = check_int(chunk, "chunk", 1)
    st = _metric_setup(model, dataset, cache, per_head, batch_size, "direct_path_removal")
    labels, xn, W_U, b_U, ln_bias, full, ids, sign = st
    kind = dataset.metric_kind
    metric = _metric_of(full, ids, sign, kind)
    rows = []
    for s in range(0, xn.shape[0], chunk):
        contrib = xn[s:s + chunk] @ W_U                              # [c, B, V]
        rows.append(metric - _metric_of(full - contrib, ids, sign, kind))
    extra = [("bias.b_U", b_U)] + ([("bias.ln_final", ln_bias)] if ln_bias is not None else [])
    for lab, vec in extra:
        labels = labels + [lab]
        rows.append((metric - _metric_of(full - vec, ids, sign, kind))[None])
    return MetricAttribution(labels=labels, values=torch.cat(rows, 0), target=metric,
                             metric=metric, exact=False, weights=sign)


def task_metric_attribution(model: Model, dataset: Any, cache: Any = None, per_head: bool = True,
                            linearise: bool | None = None, batch_size: int = 64
                            ) -> MetricAttribution:
    """Direct attribution of a :class:`~tutorial_utils.tasks.TaskDataset`'s metric on the clean run.

    * Logit-difference tasks (IOI): ``metric = sum_k sign_k logit_k`` is linear, so the rows are
      the exact decomposition: ``values.sum(0) == metric``.
    * Probability-difference tasks (Greater-Than, agreement), ``PD = sum_k sign_k p_k``. With
      ``linearise=True`` (their default), rows are ``g . DLA_c`` with
      ``g_j = dPD/dlogit_j = p_j (sign_j - PD)`` over the full vocabulary (``sign_j = 0`` off the
      candidates): to first order, removing component ``c``'s direct write changes PD by
      ``-g . DLA_c``. The rows sum to ``g . logits``, not to PD. With ``linearise=False`` the
      direction is the signed mean of candidate logits,
      ``mean_{k correct} logit_k - mean_{k wrong} logit_k`` (for Greater-Than: mean logit of the
      years above YY minus that of the years at or below), an exact decomposition of that logit
      score, which is a proxy for PD, not PD.

    A first-order term understates components when PD is saturated (p close to 0 or 1 makes
    ``g`` small); :func:`direct_path_removal` gives the exact, non-additive effect of removing
    each direct path.
    """
    kind = getattr(dataset, "metric_kind", None)
    if linearise is not None:
        check_choice(linearise, (True, False), "linearise")
    if linearise is None:
        linearise = kind == "prob_diff"
    if linearise and kind == "logit_diff":
        raise TutorialError("linearise=True applies to probability-difference metrics; "
                         f"{dataset.name} is a logit_diff task (already exact)")
    st = _metric_setup(model, dataset, cache, per_head, batch_size, "task_metric_attribution")
    labels, xn, W_U, b_U, ln_bias, full, ids, sign = st
    scores = full.softmax(-1) if kind == "prob_diff" else full
    metric = (scores.gather(-1, ids) * sign).sum(-1)
    if linearise:
        s_full = torch.zeros_like(full).scatter_add_(-1, ids, sign)
        g = scores * (s_full - metric[:, None])                      # [B, V]
        w_cand = g.gather(-1, ids)
    elif kind == "prob_diff":
        pos_n = (sign > 0).sum(-1, keepdim=True).clamp(min=1)
        neg_n = (sign < 0).sum(-1, keepdim=True).clamp(min=1)
        w_cand = torch.where(sign > 0, 1.0 / pos_n, torch.where(sign < 0, -1.0 / neg_n, 0.0))
        g = torch.zeros_like(full).scatter_add_(-1, ids, w_cand)
    else:
        w_cand = sign
        g = torch.zeros_like(full).scatter_add_(-1, ids, sign)
    direction = g @ W_U.T                                            # [B, d]
    values = (xn * direction).sum(-1)                                # [C, B]
    labels = labels + ["bias.b_U"]
    values = torch.cat([values, (g * b_U).sum(-1)[None]], 0)
    if ln_bias is not None:
        labels.append("bias.ln_final")
        values = torch.cat([values, (g * ln_bias).sum(-1)[None]], 0)
    target = (g * full).sum(-1)
    exact = kind == "logit_diff"
    return MetricAttribution(labels=labels, values=values, target=target, metric=metric,
                             exact=exact, weights=w_cand)
