"""Ablation and activation patching on a TransformerBridge, batched along the batch axis.

Activation patching (Meng et al. 2022; Vig et al. 2020; Wang et al. 2023; Heimersheim & Nanda
2024) runs the model on one input (the *base* run) while replacing one activation by another
value, and measures a task metric. The replacing value is the package's one ablation vocabulary
(:mod:`tutorial_utils.interchange`, ``ablation=``):

* ``"corrupted"`` (default): its value on the paired corrupted prompt. ``direction="noise"``
  (default): base = clean prompts, values from the corrupted run; a component matters if
  patching it *destroys* the behaviour (Hanna et al. 2023 patch this way).
  ``direction="denoise"``: base = corrupted prompts, values from the clean run (the convention
  of ``transformer_lens.patching``); a component suffices if patching it *restores* it;
* ``"resample"``: its value on another, random prompt (Chan et al. 2022);
* ``"mean"``: its per-position mean over ``reference_tokens``; ``"zero"``: zero.

One generic mechanism
---------------------
Every intervention here is a *masked set*: ``act <- where(mask, source, act)``
(:func:`tutorial_utils.interchange.masked_set`). ``n`` variants are stacked along the batch and
evaluated in one forward by the package's one engine (:func:`tutorial_utils.interchange.run_stacked`).
:func:`patching_sweep` builds one variant per component and skips components whose source and base
activations are identical (e.g. positions before the first token where clean and corrupted
prompts differ: a causal model computes the same there), whose value is then exactly the base
metric.

Public API
----------
``Component(site, layer, head=None, pos=None)`` -- one patchable piece; ``Component.parse`` reads
    ``"a1.h2"`` (head 2 of layer 1), ``"m3"`` (MLP 3), ``"embed"``, ``"resid_pre.2"``, ``"z.1.3@5"``
    (site.layer.head@pos) (:func:`tutorial_utils.names.parse_component`).
``set_positions``, ``set_heads``, ``set_pattern_rows`` -- single-patch setters (activation,
    source, index) -> patched activation, in the spirit of ``transformer_lens.patching``'s setters.
``get_activations(model, tokens, names)`` -> ``(logits, {name: activation})``.
``ablate(model, tokens, components, ablation, ...)`` -> logits with the components ablated.
``patching_sweep(model, data, site, by, ...)`` -> ``PatchingResult`` over the product of the axes
    ``by`` (``"layer"``, ``"pos"``, ``"head"``, ``"dest_pos"``). Shortcuts:
    ``patch_resid_by_layer_pos``, ``patch_layer_outputs``, ``patch_heads``, ``patch_heads_every``.

``data`` is a :class:`~tutorial_utils.tasks.TaskDataset` (raw token pairs:
``TaskDataset.from_tokens(clean, corrupted, metric)``); a metric follows the package's one
contract (:mod:`tutorial_utils.tasks.metrics`; default the dataset's task metric).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .errors import TutorialError
from .interchange import (Ablation, Direction, SiteInterventions, ablation_runs,
                          ablation_runs_of_tokens, ablation_values, capture, check_ablation,
                          default_batch_rows, masked_set, masked_set_hook, run_stacked,
                          stacked_forward)
from .names import SITES as ALL_SITES
from .names import head_name, mlp_name, parse_component, site_heads
from .tasks.base import TaskDataset, check_dataset, metric_of_variants
from .tasks.metrics import Metric, check_metric, normalize
from .model_checks import check_hook_names, check_layer, check_tokens
from .validation import check_same_shape

__all__ = ["ablate", "ablation_sources", "Component", "get_activations", "LAYOUT_AXES",
           "patch_heads", "patch_heads_every", "patch_layer_outputs", "patch_resid_by_layer_pos",
           "patching_sweep", "PatchingResult", "set_heads", "set_pattern_rows", "set_positions",
           "SITES", "validate_components"]

#: the per-block sites a sweep may patch: site -> (hook-name template, layout), from
#: :data:`tutorial_utils.names.SITES` (``"pos"`` ``[B, T, d]``, ``"pos_head"`` ``[B, T, H, x]``,
#: ``"head_dest"`` attention patterns ``[B, H, Tq, Tk]``)
SITES: dict[str, tuple[str, str]] = {
    s: ALL_SITES[s] for s in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out",
                              "z", "q", "k", "v", "result", "pattern")
}
#: the axes a sweep over each layout may use
LAYOUT_AXES = {
    "pos": ("layer", "pos"),
    "pos_head": ("layer", "pos", "head"),
    "head_dest": ("layer", "head", "dest_pos"),
}


@dataclass(frozen=True)
class Component:
    """One patchable piece of the model: a site at a layer, optionally one head and/or position.

    ``pos`` is the (query/destination) position; ``None`` means every position. For the
    ``pattern`` site ``pos`` selects the destination row of the attention pattern.
    """

    site: str
    layer: int
    head: int | None = None
    pos: int | None = None

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise TutorialError(f"unknown site {self.site!r}; valid sites: {sorted(SITES)}")
        if self.head is not None and SITES[self.site][1] == "pos":
            raise TutorialError(f"site {self.site!r} has no heads; got head={self.head}")

    @property
    def hook_name(self) -> str:
        return SITES[self.site][0].format(layer=self.layer)

    @property
    def layout(self) -> str:
        return SITES[self.site][1]

    def __str__(self) -> str:
        if self.site == "result" and self.pos is None and self.head is not None:
            return head_name(self.layer, self.head)
        if self.site == "mlp_out" and self.pos is None:
            return mlp_name(self.layer)
        if self.site == "resid_pre" and self.layer == 0 and self.pos is None:
            return "embed"
        s = f"{self.site}.{self.layer}"
        if self.head is not None:
            s += f".{self.head}"
        if self.pos is not None:
            s += f"@{self.pos}"
        return s

    @staticmethod
    def parse(spec: "str | Component") -> "Component":
        """Read ``"a1.h2"``, ``"m3"``, ``"embed"``, ``"resid_pre.2"``, ``"z.1.3@5"``, ...

        Node names are those of :class:`tutorial_utils.graph.Graph` and patch the node's
        ``out_hook`` there: ``aL.hH`` a head's output (the per-head ``hook_result``, which
        needs ``load_model(..., hooks=True)``), ``mL`` an MLP's output, ``embed`` the token +
        position embedding (the residual stream entering block 0)."""
        if isinstance(spec, Component):
            return spec
        site, layer, head, pos = parse_component(spec)
        if site not in SITES:
            raise TutorialError(f"component {spec!r}: site {site!r} cannot be patched; valid "
                                f"sites: {sorted(SITES)}")
        return Component(site, layer, head, pos)

    def mask(self, seq_len: int, n_heads: int) -> Bool[Tensor, "..."]:
        """Boolean mask (shape ``M`` of the layout, broadcastable to one example's activation)."""
        if self.layout == "pos":
            m = torch.zeros(seq_len, 1, dtype=torch.bool)
            m[slice(None) if self.pos is None else self.pos] = True
        elif self.layout == "pos_head":
            m = torch.zeros(seq_len, n_heads, 1, dtype=torch.bool)
            m[slice(None) if self.pos is None else self.pos,
              slice(None) if self.head is None else self.head] = True
        else:  # head_dest: [H, Tq, Tk]
            m = torch.zeros(n_heads, seq_len, 1, dtype=torch.bool)
            m[slice(None) if self.head is None else self.head,
              slice(None) if self.pos is None else self.pos] = True
        return m


def validate_components(model: Any, components: Sequence[Component], seq_len: int) -> None:
    """Raise ``TutorialError`` for a layer, head or position out of range, or a missing hook."""
    for c in components:
        check_layer(model, c.layer)
        if not 0 <= c.layer < model.cfg.n_layers:
            raise TutorialError(f"{c}: use a non-negative layer index (got {c.layer})")
        n_h = site_heads(model.cfg, c.site)
        if c.head is not None and not 0 <= c.head < n_h:
            kind = "key/value heads (grouped-query attention)" if n_h != model.cfg.n_heads \
                else "heads"
            raise TutorialError(f"{c}: head {c.head} out of range for {n_h} {kind}")
        if c.pos is not None and not 0 <= c.pos < seq_len:
            raise TutorialError(f"{c}: position {c.pos} out of range for sequence length {seq_len}")
    check_hook_names(model, sorted({c.hook_name for c in components}))


# --------------------------------------------------------------------------------------------
# Setters
# --------------------------------------------------------------------------------------------


def set_positions(act: Float[Tensor, "batch pos ..."], source: Float[Tensor, "batch pos ..."],
                  pos: int | Sequence[int] | slice | None) -> Float[Tensor, "batch pos ..."]:
    """Patch ``act[:, pos] <- source[:, pos]`` for ``[B, T, ...]`` activations (resid, attn/MLP out)."""
    m = torch.zeros(act.shape[1], dtype=torch.bool)
    m[slice(None) if pos is None else pos] = True
    return masked_set(act, source, m.view(1, -1, *([1] * (act.ndim - 2))))


def set_heads(act: Float[Tensor, "batch pos head d"], source: Float[Tensor, "batch pos head d"],
              head: int | Sequence[int] | None, pos: int | Sequence[int] | slice | None = None
              ) -> Float[Tensor, "batch pos head d"]:
    """Patch heads (at positions) of ``[B, T, H, x]`` activations (z, q, k, v, result)."""
    m = torch.zeros(act.shape[1], act.shape[2], dtype=torch.bool)
    m[slice(None) if pos is None else pos, slice(None) if head is None else head] = True
    return masked_set(act, source, m.view(1, *m.shape, *([1] * (act.ndim - 3))))


def set_pattern_rows(act: Float[Tensor, "batch head dest src"],
                     source: Float[Tensor, "batch head dest src"],
                     head: int | Sequence[int] | None,
                     dest: int | Sequence[int] | slice | None = None
                     ) -> Float[Tensor, "batch head dest src"]:
    """Patch attention-pattern rows ``[:, head, dest, :]`` of ``[B, H, Tq, Tk]`` patterns."""
    m = torch.zeros(act.shape[1], act.shape[2], dtype=torch.bool)
    m[slice(None) if head is None else head, slice(None) if dest is None else dest] = True
    return masked_set(act, source, m.view(1, *m.shape, 1))


# --------------------------------------------------------------------------------------------
# Activations and ablation values
# --------------------------------------------------------------------------------------------


def get_activations(model: Any, tokens: Int[Tensor, "batch pos"], names: Sequence[str]
                    ) -> tuple[Float[Tensor, "batch pos vocab"], dict[str, Float[Tensor, "batch ..."]]]:
    """Run ``model`` on ``tokens`` and return ``(logits, {name: activation})`` for the hooks
    ``names`` (:func:`tutorial_utils.interchange.capture`)."""
    tokens = check_tokens(model, tokens)
    return capture(model, tokens, names)


def ablation_sources(model: Any, base_tokens: Int[Tensor, "batch pos"], hook_names: Sequence[str],
                     ablation: Ablation, corrupted_tokens: Int[Tensor, "batch pos"] | None = None,
                     reference_tokens: Int[Tensor, "n pos"] | None = None, seed: int = 0
                     ) -> dict[str, Float[Tensor, "batch ..."]]:
    """The values an ablation patches in at each hook
    (:func:`tutorial_utils.interchange.ablation_values`): ``[B, *S]`` for ``"corrupted"`` (the
    paired ``corrupted_tokens``' run) and ``"resample"`` (the run of another random prompt of
    ``reference_tokens``, default ``base_tokens``, for each example), ``[1, *S]`` for ``"mean"``
    (per-position mean over ``reference_tokens``, default ``corrupted_tokens``) and ``"zero"``."""
    check_ablation(ablation)
    names = list(dict.fromkeys(hook_names))
    if corrupted_tokens is not None and (ablation == "corrupted" or
                                         (ablation == "mean" and reference_tokens is None)):
        check_same_shape(base_tokens, check_tokens(model, corrupted_tokens, "corrupted_tokens"))
    if ablation in ("corrupted", "zero"):
        reference_tokens = None  # ablate() passes them along whatever the ablation: unused
    elif reference_tokens is not None:
        reference_tokens = check_tokens(model, reference_tokens, "reference_tokens")
    runs = ablation_runs_of_tokens(base_tokens, corrupted_tokens, ablation,
                                   reference_tokens=reference_tokens, seed=seed)
    return ablation_values(runs, lambda tokens: capture(model, tokens, names)[1])


def _group_masks(components: Sequence[Component], seq_len: int, model: Any) -> dict[str, Tensor]:
    """OR the masks of components that share a hook."""
    out: dict[str, Tensor] = {}
    for c in components:
        m = c.mask(seq_len, site_heads(model.cfg, c.site))
        out[c.hook_name] = out[c.hook_name] | m if c.hook_name in out else m
    return out


def ablate(model: Any, tokens: Int[Tensor, "batch pos"], components: Sequence[Component | str],
           ablation: Ablation = "corrupted", *,
           corrupted_tokens: Int[Tensor, "batch pos"] | None = None,
           reference_tokens: Int[Tensor, "n pos"] | None = None, seed: int = 0
           ) -> Float[Tensor, "batch pos vocab"]:
    """Logits ``[B, T, V]`` of ``model`` on ``tokens`` with ``components`` ablated together.

    ``ablation`` (:func:`ablation_sources`): ``"corrupted"`` (from the paired
    ``corrupted_tokens``), ``"resample"`` (from another random prompt of ``reference_tokens``,
    default the other ``tokens``), ``"mean"`` (over ``reference_tokens``) or ``"zero"``."""
    check_ablation(ablation)
    tokens = check_tokens(model, tokens)
    if isinstance(components, (str, Component)):
        components = [components]
    comps = [Component.parse(c) for c in components]
    validate_components(model, comps, tokens.shape[1])
    masks = _group_masks(comps, tokens.shape[1], model)
    sources = ablation_sources(model, tokens, list(masks), ablation, corrupted_tokens,
                               reference_tokens, seed)
    hooks = [(name, masked_set_hook(sources[name], mask.unsqueeze(0), name))
             for name, mask in masks.items()]
    return stacked_forward(model, tokens, 1, hooks)


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------


@dataclass
class PatchingResult:
    """Result of a patching sweep.

    Attributes:
        values: ``[*axis sizes]`` metric after each patch (``[*axis sizes, B]`` per example).
        axis_names: names of the swept axes, in order.
        site, direction: what was patched and which way; ``ablation`` what was patched in.
        metric_clean, metric_corrupted: the unpatched metric on clean and corrupted prompts.
        components: the component of each cell, flattened in the order of ``values``.
    """

    values: Tensor
    axis_names: tuple[str, ...]
    site: str
    direction: str
    metric_clean: Tensor
    metric_corrupted: Tensor
    components: list[Component] = field(default_factory=list, repr=False)
    ablation: str = "corrupted"

    @property
    def metric_base(self) -> Tensor:
        """The unpatched metric of the base run (clean for noising, corrupted for denoising)."""
        return self.metric_clean if self.direction == "noise" else self.metric_corrupted

    def effect(self) -> Float[Tensor, "..."]:
        """``values - metric_base``: how much each patch moves the metric."""
        return self.values - self.metric_base

    def normalized(self) -> Float[Tensor, "..."]:
        """``(values - metric_corrupted) / (metric_clean - metric_corrupted)``: 1 = clean
        behaviour, 0 = corrupted behaviour; :func:`tutorial_utils.tasks.metrics.normalize` (NaN
        where clean == corrupted)."""
        return torch.as_tensor(normalize(self.values, self.metric_clean, self.metric_corrupted),
                               dtype=torch.float32)


def _axis_sizes(model: Any, seq_len: int, site: str = "z") -> dict[str, int]:
    return {"layer": model.cfg.n_layers, "pos": seq_len, "head": site_heads(model.cfg, site),
            "dest_pos": seq_len}


def patching_sweep(
    model: Any,
    data: TaskDataset,
    site: str,
    by: Sequence[str] = ("layer", "pos"),
    *,
    ablation: Ablation = "corrupted",
    direction: Direction = "noise",
    metric: Metric | None = None,
    per_example: bool = False,
    reference_tokens: Int[Tensor, "n pos"] | None = None,
    seed: int = 0,
    batch_rows: int | None = None,
    skip_noops: bool = True,
    progress: bool = True,
) -> PatchingResult:
    """Patch every component of ``site`` over the product of the axes ``by``; one metric each.

    Args:
        model: a TransformerBridge (``load_model(..., hooks=True)`` for ``result``).
        data: a TaskDataset (raw tokens: ``TaskDataset.from_tokens(clean, corrupted, metric)``).
        site: one of :data:`SITES` (``resid_pre``, ``attn_out``, ``mlp_out``, ``z`` for a head's
            output, ``q``/``k``/``v``, ``pattern``, ...).
        by: the axes swept, in the order of the result: ``layer`` is required; ``pos`` for
            ``[B, T, ...]`` sites, ``head`` for head sites, ``dest_pos`` for ``pattern``.
            Axes left out are patched whole (e.g. ``("layer", "head")`` = each head at every
            position). Under grouped-query attention the ``head`` axis of ``k``/``v`` runs over
            the ``n_key_value_heads`` key/value heads (:func:`tutorial_utils.names.site_heads`).
        ablation, direction, reference_tokens, seed: the value patched in
            (:mod:`tutorial_utils.interchange`): by default the corrupted run into the clean one.
        metric: the metric contract (:mod:`tutorial_utils.tasks.metrics`); default the task metric.
        per_example: keep one value per example (last axis ``B``).
        batch_rows: rows per stacked forward (default: bounded by logits memory).
        skip_noops: components whose patched value equals the base activation everywhere are
            not run (their value is exactly the base metric).

    Returns:
        :class:`PatchingResult` with ``values`` of shape ``[size of each axis in by]``.

    Cross-checked against ``transformer_lens.patching`` (tests/test_patching.py).
    """
    if site not in SITES:
        raise TutorialError(f"unknown site {site!r}; valid sites: {sorted(SITES)}")
    check_dataset(data, model, "data")
    check_metric(metric)
    layout = SITES[site][1]
    by = tuple(by)
    allowed = LAYOUT_AXES[layout]
    if "layer" not in by or len(set(by)) != len(by) or not set(by) <= set(allowed):
        raise TutorialError(f"by={by} invalid for site {site!r}: use distinct axes from {allowed}, "
                            "including 'layer'")
    if site == "resid_mid" and getattr(model.cfg, "parallel_attn_mlp", False):
        raise TutorialError("site 'resid_mid' does not exist in a model with parallel attention "
                            "and MLP (GPT-NeoX/Pythia, GPT-J): both read resid_pre and write "
                            "into resid_post; patch 'resid_pre', 'attn_out' or 'mlp_out'")
    runs = ablation_runs(data, ablation, direction, reference_tokens, seed)
    N, T = data.clean_tokens.shape
    L = model.cfg.n_layers
    names = [SITES[site][0].format(layer=l) for l in range(L)]
    check_hook_names(model, names)
    base_logits, base_acts = capture(model, runs.base, names)
    source_logits: list[Tensor] = []

    def record(tokens: Tensor) -> dict[str, Tensor]:
        logits, acts = capture(model, tokens, names)
        source_logits.append(logits)
        return acts
    src_acts = ablation_values(runs, record, like=base_acts)
    # the metric of the other side of the pair: for "corrupted" the source run is that run
    other = data.corrupted_tokens if direction == "noise" else data.clean_tokens
    other_logits = source_logits[0] if ablation == "corrupted" else capture(model, other, [])[0]
    source_logits.clear()
    m_base = metric_of_variants(metric, base_logits, data, 1, per_example)[0].detach().float().cpu()
    m_other = metric_of_variants(metric, other_logits, data, 1,
                                 per_example)[0].detach().float().cpu()
    m_clean, m_corr = (m_base, m_other) if direction == "noise" else (m_other, m_base)

    sizes = _axis_sizes(model, T, site)
    comps = []
    for cell in itertools.product(*[range(sizes[a]) for a in by]):
        idx = dict(zip(by, cell))
        comps.append(Component(site, idx["layer"], idx.get("head"),
                               idx.get("pos", idx.get("dest_pos"))))
    run_idx = list(range(len(comps)))
    if skip_noops:
        # differs[name]: where the patched value differs from the base one for some example
        differs = {n: (src_acts[n] != base_acts[n]).any(0).any(-1, keepdim=True).cpu()
                   for n in names}
        run_idx = [i for i, c in enumerate(comps)
                   if bool((c.mask(T, site_heads(model.cfg, site)) & differs[c.hook_name]).any())]
    interventions = SiteInterventions([_group_masks([comps[i]], T, model) for i in run_idx],
                                      src_acts)
    rows = batch_rows or default_batch_rows(T, model.cfg.d_vocab)
    vals = run_stacked(model, data, interventions, runs.base, metric=metric,
                       per_example=per_example, batch_size=N, max_sequences=max(rows, N),
                       progress=progress, desc=f"patching {site} by {'x'.join(by)}")
    shape = (len(comps), N) if per_example else (len(comps),)
    flat = m_base.expand(shape).clone()
    if run_idx:
        flat[torch.tensor(run_idx)] = vals
    values = flat.reshape(*[sizes[a] for a in by], *shape[1:])
    return PatchingResult(values, by, site, direction, m_clean, m_corr, comps, ablation)


def patch_resid_by_layer_pos(model: Any, data: TaskDataset, which: str = "resid_pre",
                             **kwargs: Any) -> PatchingResult:
    """Residual stream (``resid_pre``/``resid_mid``/``resid_post``) patched at each layer x
    position: ``values`` ``[n_layers, T]``."""
    if which not in ("resid_pre", "resid_mid", "resid_post"):
        raise TutorialError(f"which must be resid_pre, resid_mid or resid_post, got {which!r}")
    return patching_sweep(model, data, which, ("layer", "pos"), **kwargs)


def patch_layer_outputs(model: Any, data: TaskDataset, by_pos: bool = True, **kwargs: Any
                        ) -> dict[str, PatchingResult]:
    """``resid_pre``, ``attn_out`` and ``mlp_out`` patched by layer (x position)."""
    by = ("layer", "pos") if by_pos else ("layer",)
    return {s: patching_sweep(model, data, s, by, **kwargs)
            for s in ("resid_pre", "attn_out", "mlp_out")}


def patch_heads(model: Any, data: TaskDataset, by_pos: bool = False, site: str = "z",
                **kwargs: Any) -> PatchingResult:
    """Every head's output (``site="z"``; or its ``q``/``k``/``v``/``result``) patched, at all
    positions (``[n_layers, n_heads]``) or per position (``[n_layers, T, n_heads]``)."""
    if SITES.get(site, ("", ""))[1] != "pos_head":
        raise TutorialError(f"site must be a head site (z, q, k, v, result), got {site!r}")
    by = ("layer", "pos", "head") if by_pos else ("layer", "head")
    return patching_sweep(model, data, site, by, **kwargs)


def patch_heads_every(model: Any, data: TaskDataset, **kwargs: Any) -> dict[str, PatchingResult]:
    """Each head's output, query, key, value and attention pattern patched at all positions
    (``[n_layers, n_heads]`` each; ``k`` and ``v`` are ``[n_layers, n_key_value_heads]`` under
    grouped-query attention, where query heads share them)."""
    out = {s: patching_sweep(model, data, s, ("layer", "head"), **kwargs)
           for s in ("z", "q", "k", "v")}
    out["pattern"] = patching_sweep(model, data, "pattern", ("layer", "head"), **kwargs)
    return out
