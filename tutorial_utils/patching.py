"""Ablation and activation patching on a TransformerBridge, batched along the batch axis.

Activation patching (Meng et al. 2022; Vig et al. 2020; Wang et al. 2023; Heimersheim & Nanda
2024) runs the model on one input (the *base* run) while replacing one activation by its value
from another run (the *source*), and measures a task metric:

* ``direction="noise"`` (default): base = clean prompts, source = corrupted run. A component
  matters if patching it *destroys* the behaviour (Hanna et al. 2023 patch this way).
* ``direction="denoise"``: base = corrupted prompts, source = clean run (the convention of
  ``transformer_lens.patching``). A component suffices if patching it *restores* the behaviour.

Ablation is the same operation with another source: ``"zero"`` (the activation set to 0),
``"mean"`` (its mean over a reference dataset, per position) or ``"resample"`` (its value on the
paired corrupted prompt, an interchange intervention).

One generic mechanism
---------------------
Every intervention here is a *masked set*: ``act <- where(mask, source, act)``. The activation
of a run of ``n`` stacked variants has shape ``[n*B, *S]`` (``n`` copies of the ``B`` examples),
the source ``[B, *S]`` (or ``[1, *S]`` for a mean/zero), and the mask ``[n, *M]`` with ``M``
broadcastable to ``S``: variant ``i`` patches where ``mask[i]`` is true. One batched forward
evaluates ``n`` different patches; :func:`run_patch_variants` chunks the variants to bound
memory. :func:`patching_sweep` builds one variant per component and skips components whose
source and base activations are identical (e.g. positions before the first token where clean
and corrupted prompts differ: a causal model computes the same there), whose value is then
exactly the base metric.

Public API
----------
Components and setters
    ``Component(site, layer, head=None, pos=None)`` -- one patchable piece; ``Component.parse``
    reads ``"a1.h2"`` (head 2 of layer 1), ``"m3"`` (MLP 3), ``"embed"``, ``"resid_pre.2"``,
    ``"z.1.3@5"`` (site.layer.head@pos). ``SITES`` lists the sites and their layouts.
    ``masked_set(act, source, mask)`` -- the generic setter.
    ``set_positions``, ``set_heads``, ``set_pattern_rows`` -- single-patch setters
    (activation, source, index) -> patched activation, in the spirit of
    ``transformer_lens.patching``'s setters.
    ``patch_hook(source, mask)`` -- a hook function for ``model.run_with_hooks``.
Activations and ablation sources
    ``get_activations(model, tokens, names)`` -> ``(logits, {name: activation})``.
    ``ablation_source(method, base_act, corrupted_act=None, reference_act=None)``.
    ``ablate(model, tokens, components, method, corrupted_tokens=None, reference_tokens=None)``
    -> logits with the components ablated.
Batched patching
    ``run_patch_variants(model, base_tokens, variants, sources, metric_fn, ...)`` -- the engine:
    one metric value per variant (a variant is a list of components patched together).
    ``patching_sweep(model, data, site, by, direction=..., metric=...)`` -> ``PatchingResult``
    over the product of the axes ``by`` (``"layer"``, ``"pos"``, ``"head"``, ``"dest_pos"``).
    Shortcuts: ``patch_resid_by_layer_pos``, ``patch_layer_outputs``, ``patch_heads``,
    ``patch_heads_every``.

``data`` is a :class:`~tutorial_utils.tasks.TaskDataset` (raw token pairs:
``TaskDataset.from_tokens(clean, corrupted, metric)``); a metric is
``metric(logits[n*B, T, V], dataset) -> [n]``, vectorised over the stacked variants
(:mod:`tutorial_utils.metrics`; default the dataset's task metric).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from .hook_names import SITES as ALL_SITES
from .interchange import default_batch_rows
from .metrics import Metric, check_metric_output, default_metric, normalize
from .tasks.base import TaskDataset
from .errors import TutorialError
from .model_checks import check_hook_names, check_layer
from .validation import check_dataset, check_same_shape

__all__ = ["ablate", "ablation_source", "ablation_sources", "AblationMethod", "Component",
           "default_batch_rows", "Direction", "get_activations", "LAYOUT_AXES", "masked_set",
           "NODE_SITES", "patch_heads", "patch_heads_every", "patch_hook", "patch_layer_outputs",
           "patch_resid_by_layer_pos", "patching_sweep", "PatchingResult", "run_patch_variants",
           "set_heads", "set_pattern_rows", "set_positions", "SITES", "validate_components"]

Direction = Literal["noise", "denoise"]
AblationMethod = Literal["zero", "mean", "resample"]

#: site -> (hook-name template, layout). Layouts: ``"pos"`` for ``[B, T, d]`` activations,
#: ``"pos_head"`` for ``[B, T, H, x]``, ``"head_dest"`` for attention patterns ``[B, H, Tq, Tk]``.
#: (the templates come from :data:`tutorial_utils.hook_names.SITES`, where every hook name of the
#: package is written; these are the per-block sites a sweep may patch)
SITES: dict[str, tuple[str, str]] = {
    s: ALL_SITES[s] for s in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out",
                              "z", "q", "k", "v", "result", "pattern")
}
#: graph node kind -> the site of its output (tutorial_utils.graph.Node.out_hook; a test checks
#: that ``Component.parse(node).hook_name == graph.node(node).out_hook`` for every node)
NODE_SITES = {"embed": "resid_pre", "head": "result", "mlp": "mlp_out"}
#: the axes a sweep over each layout may use
LAYOUT_AXES = {
    "pos": ("layer", "pos"),
    "pos_head": ("layer", "pos", "head"),
    "head_dest": ("layer", "head", "dest_pos"),
}


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


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
            return f"a{self.layer}.h{self.head}"
        if self.site == "mlp_out" and self.pos is None:
            return f"m{self.layer}"
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
        ``out_hook`` there (:data:`NODE_SITES`): ``aL.hH`` a head's output (the per-head
        ``hook_result``, which needs ``load_model(..., hooks=True)``), ``mL`` an MLP's output,
        ``embed`` the token + position embedding (the residual stream entering block 0).
        """
        if isinstance(spec, Component):
            return spec
        s = spec.strip()
        pos = None
        if "@" in s:
            s, p = s.split("@", 1)
            pos = int(p)
        if m := re.fullmatch(r"a(\d+)\.h(\d+)", s):
            return Component(NODE_SITES["head"], int(m[1]), int(m[2]), pos)
        if m := re.fullmatch(r"m(\d+)", s):
            return Component(NODE_SITES["mlp"], int(m[1]), None, pos)
        if s == "embed":
            return Component(NODE_SITES["embed"], 0, None, pos)
        parts = s.split(".")
        if parts[0] in SITES and 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts[1:]):
            head = int(parts[2]) if len(parts) == 3 else None
            return Component(parts[0], int(parts[1]), head, pos)
        raise TutorialError(
            f"cannot parse component {spec!r}: use 'aL.hH' (head), 'mL' (MLP), 'embed', or "
            f"'site.layer[.head][@pos]' with site in {sorted(SITES)}"
        )

    def mask(self, seq_len: int, n_heads: int) -> Tensor:
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


#: sites computed once per key/value head: under grouped-query attention (Llama, Qwen2,
#: Mistral, Gemma) they have ``n_key_value_heads`` heads, shared by ``H/G`` query heads each
KV_SITES = ("k", "v", "k_input", "v_input")


def site_heads(model: Any, site: str) -> int:
    """How many heads the activation of ``site`` has: ``n_key_value_heads`` for the key and
    value sites of a grouped-query-attention model (so ``("layer", "head")`` sweeps of ``k``/``v``
    index key/value heads there), else ``n_heads``."""
    kv = getattr(model.cfg, "n_key_value_heads", None)
    return int(kv) if kv and site in KV_SITES else int(model.cfg.n_heads)


def validate_components(model: Any, components: Sequence[Component], seq_len: int) -> None:
    """Raise ``TutorialError`` for a layer, head or position out of range, or a missing hook."""
    for c in components:
        check_layer(model, c.layer)
        if not 0 <= c.layer < model.cfg.n_layers:
            raise TutorialError(f"{c}: use a non-negative layer index (got {c.layer})")
        n_h = site_heads(model, c.site)
        if c.head is not None and not 0 <= c.head < n_h:
            kind = "key/value heads (grouped-query attention)" if n_h != model.cfg.n_heads \
                else "heads"
            raise TutorialError(f"{c}: head {c.head} out of range for {n_h} {kind}")
        if c.pos is not None and not 0 <= c.pos < seq_len:
            raise TutorialError(f"{c}: position {c.pos} out of range for sequence length {seq_len}")
    check_hook_names(model, sorted({c.hook_name for c in components}))


# --------------------------------------------------------------------------------------------
# Setters and hooks
# --------------------------------------------------------------------------------------------


def masked_set(act: Tensor, source: Tensor, mask: Tensor) -> Tensor:
    """``where(mask, source, act)`` for ``n`` stacked variants.

    Args:
        act: ``[n*B, *S]`` the activation of the stacked run.
        source: ``[B, *S]``, ``[1, *S]`` or ``[n*B, *S]`` the values to patch in.
        mask: ``[n, *M]`` boolean, ``M`` broadcastable to ``S``; row ``i`` says where variant
            ``i`` is patched.

    Returns:
        A new tensor of ``act``'s shape (``act`` is not modified).
    """
    n = mask.shape[0]
    if act.shape[0] % n:
        raise TutorialError(f"activation batch {act.shape[0]} is not a multiple of {n} variants")
    B = act.shape[0] // n
    S = act.shape[1:]
    a = act.view(n, B, *S)
    if source.shape[0] == act.shape[0]:
        src = source.view(n, B, *S)
    else:
        src = source.unsqueeze(0)  # [1, B or 1, *S]
    m = mask.to(act.device).view(n, 1, *mask.shape[1:])
    return torch.where(m, src.to(act.dtype), a).reshape(act.shape)


def set_positions(act: Tensor, source: Tensor, pos: int | Sequence[int] | slice | None) -> Tensor:
    """Patch ``act[:, pos] <- source[:, pos]`` for ``[B, T, ...]`` activations (resid, attn/MLP out)."""
    m = torch.zeros(act.shape[1], dtype=torch.bool)
    m[slice(None) if pos is None else pos] = True
    return masked_set(act, source, m.view(1, -1, *([1] * (act.ndim - 2))))


def set_heads(act: Tensor, source: Tensor, head: int | Sequence[int] | None,
              pos: int | Sequence[int] | slice | None = None) -> Tensor:
    """Patch heads (at positions) of ``[B, T, H, x]`` activations (z, q, k, v, result)."""
    m = torch.zeros(act.shape[1], act.shape[2], dtype=torch.bool)
    m[slice(None) if pos is None else pos, slice(None) if head is None else head] = True
    return masked_set(act, source, m.view(1, *m.shape, *([1] * (act.ndim - 3))))


def set_pattern_rows(act: Tensor, source: Tensor, head: int | Sequence[int] | None,
                     dest: int | Sequence[int] | slice | None = None) -> Tensor:
    """Patch attention-pattern rows ``[:, head, dest, :]`` of ``[B, H, Tq, Tk]`` patterns."""
    m = torch.zeros(act.shape[1], act.shape[2], dtype=torch.bool)
    m[slice(None) if head is None else head, slice(None) if dest is None else dest] = True
    return masked_set(act, source, m.view(1, *m.shape, 1))


def patch_hook(source: Tensor, mask: Tensor) -> Callable[[Tensor, Any], Tensor]:
    """A ``run_with_hooks`` hook applying :func:`masked_set` with a fixed source and mask."""

    def hook(act: Tensor, hook: Any = None) -> Tensor:
        new = masked_set(act, source.to(act.device), mask)
        # Write in place as well as returning: on the bridge an out-of-place return at
        # ``hook_resid_mid`` reaches the MLP branch but not the residual skip connection.
        if not act.requires_grad:
            try:
                act.copy_(new)
                return act
            except RuntimeError:  # e.g. an expanded, non-writable view
                pass
        return new

    return hook


# --------------------------------------------------------------------------------------------
# Activations and ablation sources
# --------------------------------------------------------------------------------------------


def get_activations(model: Any, tokens: Tensor, names: Sequence[str],
                    fwd_hooks: Sequence[tuple[str, Callable]] = ()) -> tuple[Tensor, dict[str, Tensor]]:
    """Run ``model`` on ``tokens`` and return ``(logits, {name: activation})`` for ``names``.

    Activations are recorded by hooks registered under the names asked for (the bridge may
    report an alias such as ``blocks.1.hook_in`` to hook functions; we never rely on it).
    Extra ``fwd_hooks`` run before the recording hooks, so patched values are recorded.
    """
    names = list(dict.fromkeys(names))
    check_hook_names(model, names)
    store: dict[str, Tensor] = {}

    def grab(name: str) -> Callable:
        def hook(act: Tensor, hook: Any = None) -> Tensor:
            store[name] = act.detach().clone()
            return act

        return hook

    with torch.no_grad():
        logits = model.run_with_hooks(
            tokens.to(model.cfg.device),
            fwd_hooks=list(fwd_hooks) + [(n, grab(n)) for n in names],
        )
    missing = [n for n in names if n not in store]
    if missing:
        raise RuntimeError(f"hooks did not fire: {missing}")
    return logits, store


def ablation_source(method: AblationMethod, base_act: Tensor, corrupted_act: Tensor | None = None,
                    reference_act: Tensor | None = None) -> Tensor:
    """The values an ablation patches in.

    * ``zero``: ``zeros_like(base_act[:1])``;
    * ``mean``: ``reference_act.mean(0, keepdim=True)``, the mean over a reference dataset at each
      position (shape ``[1, *S]``; reference and base must have the same sequence length);
    * ``resample``: ``corrupted_act``, the activation on the paired corrupted prompt
      (an interchange intervention, Geiger et al. 2021; "resample ablation", Chan et al. 2022).
    """
    if method == "zero":
        return torch.zeros_like(base_act[:1])
    if method == "mean":
        if reference_act is None:
            raise TutorialError("mean ablation needs reference activations (reference_tokens)")
        if reference_act.shape[1:] != base_act.shape[1:]:
            raise TutorialError(
                f"reference activations {tuple(reference_act.shape)} and base activations "
                f"{tuple(base_act.shape)} differ beyond the batch axis (same sequence length needed)"
            )
        return reference_act.mean(0, keepdim=True)
    if method == "resample":
        if corrupted_act is None:
            raise TutorialError("resample ablation needs the corrupted run (corrupted_tokens)")
        if corrupted_act.shape != base_act.shape:
            raise TutorialError(f"corrupted activations {tuple(corrupted_act.shape)} and base "
                             f"activations {tuple(base_act.shape)} differ in shape")
        return corrupted_act
    raise TutorialError(f"unknown ablation method {method!r}; valid: 'zero', 'mean', 'resample'")


def ablation_sources(model: Any, base_tokens: Tensor, hook_names: Sequence[str],
                     method: AblationMethod, corrupted_tokens: Tensor | None = None,
                     reference_tokens: Tensor | None = None) -> dict[str, Tensor]:
    """:func:`ablation_source` for several hooks at once (one forward per token set needed)."""
    hook_names = list(dict.fromkeys(hook_names))
    if method not in ("zero", "mean", "resample"):
        raise TutorialError(f"unknown ablation method {method!r}; valid: 'zero', 'mean', 'resample'")
    if method == "resample":
        if corrupted_tokens is None:
            raise TutorialError("resample ablation needs corrupted_tokens")
        check_same_shape(base_tokens, corrupted_tokens)
    if method == "mean":
        if reference_tokens is None:
            raise TutorialError("mean ablation needs reference_tokens (e.g. the corrupted prompts)")
        if reference_tokens.shape[1] != base_tokens.shape[1]:
            raise TutorialError(f"reference tokens have length {reference_tokens.shape[1]}, base "
                             f"tokens {base_tokens.shape[1]}: mean ablation is per position")
    _, base = get_activations(model, base_tokens, hook_names)
    corr = ref = None
    if method == "resample":
        _, corr = get_activations(model, corrupted_tokens, hook_names)
    if method == "mean":
        _, ref = get_activations(model, reference_tokens, hook_names)
    return {n: ablation_source(method, base[n], corr and corr[n], ref and ref[n])
            for n in hook_names}


def _group_masks(components: Sequence[Component], seq_len: int, model: Any) -> dict[str, Tensor]:
    """OR the masks of components that share a hook."""
    out: dict[str, Tensor] = {}
    for c in components:
        m = c.mask(seq_len, site_heads(model, c.site))
        out[c.hook_name] = out[c.hook_name] | m if c.hook_name in out else m
    return out


def ablate(model: Any, tokens: Tensor, components: Sequence[Component | str],
           method: AblationMethod = "resample", *, corrupted_tokens: Tensor | None = None,
           reference_tokens: Tensor | None = None) -> Tensor:
    """Logits ``[B, T, V]`` of ``model`` on ``tokens`` with ``components`` ablated together.

    ``method``: ``zero``, ``mean`` (over ``reference_tokens``) or ``resample`` (from the paired
    ``corrupted_tokens``); see :func:`ablation_source`.
    """
    comps = [Component.parse(c) for c in components]
    validate_components(model, comps, tokens.shape[1])
    masks = _group_masks(comps, tokens.shape[1], model)
    sources = ablation_sources(model, tokens, list(masks), method, corrupted_tokens, reference_tokens)
    hooks = [(name, patch_hook(sources[name], mask.unsqueeze(0))) for name, mask in masks.items()]
    with torch.no_grad():
        return model.run_with_hooks(tokens.to(model.cfg.device), fwd_hooks=hooks)


# --------------------------------------------------------------------------------------------
# Batched engine
# --------------------------------------------------------------------------------------------


def _metric_fn(data: TaskDataset, metric: Metric | None, per_example: bool = False
               ) -> Callable[[Tensor, int], Tensor]:
    """``(logits [n*B, ...], n) -> [n]`` (``[n, B]`` with ``per_example``) from the package's one
    metric convention ``metric(logits[n*B, ...], dataset) -> [n]`` (default: the task metric)."""
    if per_example:
        if metric is not None:
            raise TutorialError("per_example=True needs the dataset's own task metric "
                                "(metric=None)")
        return lambda logits, n: data.metric(logits, per_example=True).reshape(n, -1)
    if metric is not None and not callable(metric):
        raise TutorialError(f"metric must be a function (logits[n*B, T, V], dataset) -> [n], "
                            f"got {type(metric).__name__}")
    m = metric or default_metric
    return lambda logits, n: check_metric_output(m(logits, data), n)


def _tokens(model: Any, data: Any) -> tuple[Tensor, Tensor]:
    """``(clean_tokens, corrupted_tokens)`` of a validated TaskDataset."""
    check_dataset(data, model, "data")
    return data.clean_tokens, data.corrupted_tokens


def run_patch_variants(
    model: Any,
    base_tokens: Tensor,
    variants: Sequence[Sequence[Component]],
    sources: Mapping[str, Tensor],
    metric_fn: Callable[[Tensor, int], Tensor],
    *,
    batch_rows: int | None = None,
    progress: bool = False,
    desc: str = "patching",
) -> Tensor:
    """Metric of every variant: variant ``i`` patches all its components (from ``sources``).

    The variants are stacked along the batch, ``n = batch_rows // B`` per forward; each stacked
    forward applies, at every hook touched, :func:`masked_set` with one mask row per variant.

    Args:
        base_tokens: ``[B, T]`` the base run's prompts.
        variants: a list of component lists (already validated).
        sources: ``{hook_name: [B or 1, *S]}`` the values to patch in.
        metric_fn: ``(logits [n*B, ...], n) -> [n]`` (or ``[n, B]``).

    Returns:
        ``[n_variants]`` (or ``[n_variants, B]``).
    """
    from tqdm.auto import tqdm

    B, T = base_tokens.shape
    dev = model.cfg.device
    rows = batch_rows or default_batch_rows(T, model.cfg.d_vocab)
    n_per = max(1, rows // B)
    masks = [_group_masks(v, T, model) for v in variants]
    for m in masks:
        for name in m:
            if name not in sources:
                raise TutorialError(f"no source activation for hook {name!r}")
    out: list[Tensor] = []
    chunks = range(0, len(variants), n_per)
    base_tokens = base_tokens.to(dev)
    with torch.no_grad():
        for start in tqdm(chunks, desc=desc, disable=not progress):
            chunk = masks[start:start + n_per]
            n = len(chunk)
            names = sorted({name for m in chunk for name in m})
            hooks = []
            for name in names:
                shape = next(m[name].shape for m in chunk if name in m)
                stacked = torch.zeros(n, *shape, dtype=torch.bool)
                for i, m in enumerate(chunk):
                    if name in m:
                        stacked[i] = m[name]
                hooks.append((name, patch_hook(sources[name], stacked)))
            logits = model.run_with_hooks(base_tokens.repeat(n, 1), fwd_hooks=hooks)
            out.append(metric_fn(logits, n).detach().float().cpu())
    if not out:
        return torch.zeros(0)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------


@dataclass
class PatchingResult:
    """Result of a patching sweep.

    Attributes:
        values: ``[*axis sizes]`` metric after each patch (``[*axis sizes, B]`` per example).
        axis_names: names of the swept axes, in order.
        site, direction: what was patched and which way.
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

    @property
    def metric_base(self) -> Tensor:
        """The unpatched metric of the base run (clean for noising, corrupted for denoising)."""
        return self.metric_clean if self.direction == "noise" else self.metric_corrupted

    def effect(self) -> Tensor:
        """``values - metric_base``: how much each patch moves the metric."""
        base = self.metric_base
        return self.values - (base if self.values.ndim == 0 or base.ndim == 0 else base)

    def normalized(self) -> Tensor:
        """``(values - metric_corrupted) / (metric_clean - metric_corrupted)``: 1 = clean
        behaviour, 0 = corrupted behaviour; :func:`tutorial_utils.metrics.normalize` (NaN where
        clean == corrupted)."""
        return torch.as_tensor(normalize(self.values, self.metric_clean, self.metric_corrupted),
                               dtype=torch.float32)


def _axis_sizes(model: Any, seq_len: int, site: str = "z") -> dict[str, int]:
    return {"layer": model.cfg.n_layers, "pos": seq_len, "head": site_heads(model, site),
            "dest_pos": seq_len}


def patching_sweep(
    model: Any,
    data: Any,
    site: str,
    by: Sequence[str] = ("layer", "pos"),
    *,
    direction: Direction = "noise",
    metric: Metric | None = None,
    per_example: bool = False,
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
            the ``n_key_value_heads`` key/value heads (:func:`site_heads`).
        direction: ``noise`` (corrupted into clean) or ``denoise`` (clean into corrupted).
        metric: ``metric(logits[n*B, T, V], dataset) -> [n]`` (:mod:`tutorial_utils.metrics`);
            default the TaskDataset's task metric.
        per_example: keep one value per example (last axis ``B``).
        batch_rows: rows per stacked forward (default: bounded by logits memory).
        skip_noops: components whose source equals the base activation everywhere are not run
            (their value is exactly the base metric).

    Returns:
        :class:`PatchingResult` with ``values`` of shape ``[size of each axis in by]``.

    Cross-checked against ``transformer_lens.patching`` (tests/test_patching.py).
    """
    if site not in SITES:
        raise TutorialError(f"unknown site {site!r}; valid sites: {sorted(SITES)}")
    if direction not in ("noise", "denoise"):
        raise TutorialError(f"direction must be 'noise' or 'denoise', got {direction!r}")
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
    clean, corr = _tokens(model, data)
    metric_fn = _metric_fn(data, metric, per_example)
    B, T = clean.shape
    L = model.cfg.n_layers
    names = [SITES[site][0].format(layer=l) for l in range(L)]
    check_hook_names(model, names)
    base_tokens, src_tokens = (clean, corr) if direction == "noise" else (corr, clean)
    base_logits, base_acts = get_activations(model, base_tokens, names)
    src_logits, src_acts = get_activations(model, src_tokens, names)
    m_base = metric_fn(base_logits, 1)[0]
    m_src = metric_fn(src_logits, 1)[0]
    m_clean, m_corr = (m_base, m_src) if direction == "noise" else (m_src, m_base)

    sizes = _axis_sizes(model, T, site)
    cells = list(itertools.product(*[range(sizes[a]) for a in by]))
    comps = []
    for cell in cells:
        idx = dict(zip(by, cell))
        comps.append(Component(site, idx["layer"], idx.get("head"),
                               idx.get("pos", idx.get("dest_pos"))))
    # differs[name]: bool of mask shape M, True where source != base for some example
    run_idx = list(range(len(comps)))
    if skip_noops:
        differs = {}
        for name in names:
            d = (src_acts[name] != base_acts[name]).any(0)  # [*S]
            if layout == "pos":
                d = d.any(-1, keepdim=True)
            elif layout == "pos_head":
                d = d.any(-1, keepdim=True)
            else:  # head_dest [H, Tq, Tk]: a row differs
                d = d.any(-1, keepdim=True)
            differs[name] = d.cpu()
        run_idx = [i for i, c in enumerate(comps)
                   if bool((c.mask(T, site_heads(model, site)) & differs[c.hook_name]).any())]
    vals = run_patch_variants(
        model, base_tokens, [[comps[i]] for i in run_idx], src_acts, metric_fn,
        batch_rows=batch_rows, progress=progress, desc=f"patching {site} by {'x'.join(by)}",
    )
    shape = (len(comps), B) if per_example else (len(comps),)
    flat = m_base.detach().float().cpu().expand(shape).clone()
    if run_idx:
        flat[torch.tensor(run_idx)] = vals
    values = flat.reshape(*[sizes[a] for a in by], *shape[1:])
    return PatchingResult(values, by, site, direction, m_clean.detach().float().cpu(),
                          m_corr.detach().float().cpu(), comps)


def patch_resid_by_layer_pos(model: Any, data: Any, which: str = "resid_pre", **kwargs: Any
                             ) -> PatchingResult:
    """Residual stream (``resid_pre``/``resid_mid``/``resid_post``) patched at each layer x
    position: ``values`` ``[n_layers, T]``."""
    if which not in ("resid_pre", "resid_mid", "resid_post"):
        raise TutorialError(f"which must be resid_pre, resid_mid or resid_post, got {which!r}")
    return patching_sweep(model, data, which, ("layer", "pos"), **kwargs)


def patch_layer_outputs(model: Any, data: Any, by_pos: bool = True, **kwargs: Any
                        ) -> dict[str, PatchingResult]:
    """``resid_pre``, ``attn_out`` and ``mlp_out`` patched by layer (x position)."""
    by = ("layer", "pos") if by_pos else ("layer",)
    sites = ("resid_pre", "attn_out", "mlp_out")
    return {s: patching_sweep(model, data, s, by, **kwargs) for s in sites}


def patch_heads(model: Any, data: Any, by_pos: bool = False, site: str = "z", **kwargs: Any
                ) -> PatchingResult:
    """Every head's output (``site="z"``; or its ``q``/``k``/``v``/``result``) patched, at all
    positions (``[n_layers, n_heads]``) or per position (``[n_layers, T, n_heads]``)."""
    if SITES.get(site, ("", ""))[1] != "pos_head":
        raise TutorialError(f"site must be a head site (z, q, k, v, result), got {site!r}")
    by = ("layer", "pos", "head") if by_pos else ("layer", "head")
    return patching_sweep(model, data, site, by, **kwargs)


def patch_heads_every(model: Any, data: Any, **kwargs: Any) -> dict[str, PatchingResult]:
    """Each head's output, query, key, value and attention pattern patched at all positions
    (``[n_layers, n_heads]`` each; ``k`` and ``v`` are ``[n_layers, n_key_value_heads]`` under
    grouped-query attention, where query heads share them)."""
    out = {s: patching_sweep(model, data, s, ("layer", "head"), **kwargs)
           for s in ("z", "q", "k", "v")}
    out["pattern"] = patching_sweep(model, data, "pattern", ("layer", "head"), **kwargs)
    return out
