"""The one engine under every patched forward: stacked variants, ablation values, captures.

**Stacked variants.** ``K`` variants of a run over a batch of ``B`` examples are stacked along the
batch (``K*B`` rows, variant-major: rows ``k*B:(k+1)*B`` are variant ``k``) and evaluated in one
forward (:func:`stacked_forward`, the only place a patched forward runs). :func:`run_stacked`
chunks the examples and the variants to bound memory and applies the metric to each variant
(the metric contract of :mod:`tutorial_utils.tasks.metrics`). What a variant changes is given by
an *intervention set*, an object whose ``hooks(examples, variants)`` returns the forward hooks of
a chunk:

* :class:`GraphInterventions` (node patching and edge interchange on a
  :class:`~tutorial_utils.graph.Graph`). The residual stream a receiver ``r`` reads is the sum of
  what the senders before it wrote, plus constant biases (Elhage et al. 2021; exact in
  TransformerLens compatibility mode), so one edge ``s -> r`` can carry another value without
  touching any other path (Conmy et al. 2023, ACDC; Wang et al. 2023 and Goldowsky-Dill et al.
  2023; Hanna et al. 2024, EAP-IG's evaluation)::

      in_r  <-  in_r  +  sum_{s : removed[s, r]} ( src_s - out_s(current run) ),

  and a node ``s`` is patched by replacing its output, ``out_s <- src_s`` (then every edge out
  of it carries the source value).
* :class:`SiteInterventions` (activation patching over hook sites): each variant sets
  ``act <- where(mask, src, act)`` at the hooks its components name
  (:mod:`tutorial_utils.patching` builds them).

**Ablation values** (the package's one vocabulary, ``ablation=``): what replaces an activation.

* ``"corrupted"``: its value on the paired corrupted prompt (interchange, "paired corrupted
  patching"; Vig et al. 2020, Wang et al. 2023). ``direction="noise"`` (default): base run
  clean, values from the corrupted run; ``"denoise"``: base run corrupted, values from the clean
  run;
* ``"resample"``: its value on *another, random* prompt of ``reference_tokens`` (default the
  dataset's clean prompts), drawn once per example with a seed and never the example itself
  (resample ablation, Chan et al. 2022, causal scrubbing);
* ``"mean"``: its per-position mean over ``reference_tokens`` (default the corrupted prompts);
* ``"zero"``: zero.

Invariants (tests/test_interchange.py, tests/test_path_patching.py): no mask gives the base run;
every edge removed (or every node patched) from the corrupted run gives the corrupted run;
removing every edge out of a node equals patching the node; a single removed edge equals a
hand-written hook adding ``src_s - out_s`` to one receiver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from .errors import TutorialError
from .graph import Graph
from .tasks.base import TaskDataset, check_dataset, metric_of_variants
from .tasks.metrics import Metric, check_metric
from .model_checks import check_hook_names, check_tokens
from .names import SITES, STREAM_SITES
from .validation import check_batch_size

__all__ = ["ABLATIONS", "Ablation", "AblationRuns", "Direction", "GraphInterventions",
           "Hook", "SingleEdges", "SiteInterventions", "ablation_runs",
           "ablation_runs_of_tokens", "ablation_values", "baseline_metrics", "batches",
           "capture", "check_ablation", "default_batch_rows", "examples_per_forward",
           "is_stream_hook", "masked_set", "masked_set_hook", "metric_of_run",
           "model_device", "receiver_gradients_into", "replace_hook",
           "resample_indices", "run_stacked", "run_variants", "sender_activations",
           "set_activation", "stacked_forward"]

Ablation = Literal["corrupted", "resample", "mean", "zero"]
Direction = Literal["noise", "denoise"]
ABLATIONS = ("corrupted", "resample", "mean", "zero")
Hook = tuple[str, Callable[..., Tensor]]


# ---------------------------------------------------------------------------------- basics
def model_device(model: Any) -> torch.device:
    """The device of the model's parameters (CPU for a parameter-less model)."""
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def default_batch_rows(seq_len: int, d_vocab: int, budget_bytes: float = 1.5e8) -> int:
    """Rows per stacked forward so the float32 logits stay under ``budget_bytes`` (cap 1024)."""
    return int(max(1, min(1024, budget_bytes // (4 * seq_len * d_vocab))))


def batches(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    check_batch_size(batch_size)
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def check_ablation(ablation: Any, direction: Any = "noise") -> None:
    """Refuse an unknown ablation or direction, naming the valid ones."""
    if ablation not in ABLATIONS:
        hint = (" ('resample' is Chan et al.'s draw from other prompts; the paired corrupted "
                "prompt is 'corrupted')" if ablation in ("paired", "interchange") else "")
        raise TutorialError(f"ablation must be one of {ABLATIONS} (what replaces an ablated "
                            f"activation), got {ablation!r}{hint}")
    if direction not in ("noise", "denoise"):
        raise TutorialError(f"direction must be 'noise' (corrupted values into the clean run) or "
                            f"'denoise' (clean values into the corrupted run), got {direction!r}")
    if direction == "denoise" and ablation != "corrupted":
        raise TutorialError(f"direction='denoise' patches clean values into the corrupted run: "
                            f"it applies to ablation='corrupted' only, got {ablation!r}")


def resample_indices(n: int, n_reference: int, seed: int = 0) -> Int[Tensor, " n"]:
    """For each of ``n`` examples, the index of another prompt among ``n_reference`` reference
    prompts: uniform over the references, never the example's own index (when it is one)."""
    if n_reference < 2:
        raise TutorialError(f"resample ablation draws each example's values from another prompt: "
                            f"it needs at least 2 reference prompts, got {n_reference}")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, n_reference - 1, (n,), generator=g)
    own = torch.arange(n)
    return idx + (idx >= own).long() * (own < n_reference).long()


def stacked_forward(model: Any, tokens: Int[Tensor, "batch pos"], n_variants: int,
                    hooks: Sequence[Hook] = (), grad: bool | None = False,
                    attention_mask: Int[Tensor, "batch pos"] | None = None
                    ) -> Float[Tensor, "rows pos vocab"]:
    """Logits of ``n_variants`` copies of ``tokens`` stacked along the batch, with ``hooks``
    (which act on the stacked ``[n*B, ...]`` activations). The one place of the library where a
    patched forward runs. ``grad``: gradients on (``True``), off (``False``) or as the caller
    has them (``None``); ``attention_mask`` (padding) is stacked like the tokens."""
    dev = model_device(model)
    stacked = tokens.to(dev).repeat(n_variants, 1)
    kw = {} if attention_mask is None else {
        "attention_mask": attention_mask.to(dev).repeat(n_variants, 1)}
    with torch.set_grad_enabled(torch.is_grad_enabled() if grad is None else grad):
        return model.run_with_hooks(stacked, fwd_hooks=list(hooks), **kw)


def capture(model: Any, tokens: Int[Tensor, "batch pos"], names: Sequence[str],
            hooks: Sequence[Hook] = ()
            ) -> tuple[Float[Tensor, "batch pos vocab"], dict[str, Float[Tensor, "batch ..."]]]:
    """``(logits, {name: activation})`` of one forward of ``tokens`` (no gradient). ``hooks``
    run before the recording ones, so patched values are recorded. Activations are recorded by
    hooks registered under the names asked for (the bridge may report an alias such as
    ``blocks.1.hook_in`` to hook functions; it is never relied on)."""
    names = list(dict.fromkeys(names))
    check_hook_names(model, names)
    store: dict[str, Tensor] = {}

    def grab(name: str) -> Callable[..., Tensor]:
        def hook(act: Tensor, hook: Any = None) -> Tensor:
            store[name] = act.detach().clone()
            return act
        return hook

    logits = stacked_forward(model, tokens, 1, list(hooks) + [(n, grab(n)) for n in names])
    missing = [n for n in names if n not in store]
    if missing:  # pragma: no cover - a bridge whose hook did not fire
        raise TutorialError(f"hooks did not fire on this model: {missing}")
    return logits, store


def _as_nd(x: Tensor, per_head: bool) -> Tensor:
    """View a sender/receiver activation as ``[B, T, n, D]`` (n = heads, or 1)."""
    return x if per_head else x.unsqueeze(2)


def sender_activations(model: Any, graph: Graph, tokens: Int[Tensor, "batch pos"]
                       ) -> Float[Tensor, "batch pos sender d_model"]:
    """What every sender of ``graph`` writes, in one forward of ``tokens`` (``out_s`` in the
    module docstring; index ``s`` as in :class:`~tutorial_utils.graph.Graph`)."""
    B, T = tokens.shape
    out = torch.empty(B, T, graph.n_forward, model.cfg.d_model, device=model_device(model))
    hooks = []
    for h in graph.sender_hooks():
        def hook(x: Tensor, hook: Any, sl: slice = h.index, per_head: bool = h.per_head) -> Tensor:
            out[:, :, sl] = _as_nd(x, per_head).float()
            return x
        hooks.append((h.name, hook))
    stacked_forward(model, tokens, 1, hooks)
    return out


#: hook names whose tensor *is* the residual stream: a patch there must reach every reader of the
#: stream (on the TransformerLens bridge a value returned out of place at ``hook_resid_mid``
#: reaches the MLP branch but not the skip connection), so it is written in place
STREAM_HOOKS = tuple(SITES[s][0].rsplit(".", 1)[-1] for s in STREAM_SITES)


def is_stream_hook(name: str) -> bool:
    """Whether the hook ``name`` is the residual stream itself (``blocks.L.hook_resid_*``)."""
    return name.rsplit(".", 1)[-1] in STREAM_HOOKS


def set_activation(x: Float[Tensor, "batch ..."], new: Float[Tensor, "batch ..."], name: str
                   ) -> Float[Tensor, "batch ..."]:
    """What a hook registered at ``name`` returns to replace its activation ``x`` by ``new``.

    A residual-stream hook (:func:`is_stream_hook`) is written in place as well, so the patch
    reaches the skip connection. Every other hook gets ``new``, a fresh tensor, and ``x`` is never
    modified: on the bridge ``blocks.L.hook_mlp_in`` (a receiver's input) is the residual stream
    tensor itself, so an in-place write there would leak the patch down the skip connection into
    every later component. At ``hook_resid_mid`` the bridge adds the MLP's output to the tensor
    it passed to the hook, so a returned value alone would not reach the skip connection: a
    stream activation that cannot be written in place is refused there, never patched halfway."""
    if is_stream_hook(name):
        try:
            x.copy_(new)  # autograd records the copy; gradients flow through ``new``
            return x
        except RuntimeError as err:  # an expanded, non-writable view
            if name.rsplit(".", 1)[-1] == SITES["resid_mid"][0].rsplit(".", 1)[-1]:
                raise TutorialError(f"cannot patch {name} in place ({err}); patch the next "
                                    "block's resid_pre instead") from err
    return new


# ------------------------------------------------------------------------- ablation values
@dataclass
class AblationRuns:
    """The token sets of one ablation: the base run, the per-example source run (corrupted,
    resample) and the reference set of a mean."""

    base: Tensor
    source: Tensor | None
    reference: Tensor | None


def ablation_runs(dataset: TaskDataset, ablation: str, direction: str = "noise",
                  reference_tokens: Int[Tensor, "n pos"] | None = None, seed: int = 0
                  ) -> AblationRuns:
    """The token sets of ``ablation`` on ``dataset``: the base run the interventions act on,
    the per-example source run (``"corrupted"``: the other side of each pair; ``"resample"``:
    another random prompt of the reference set for each example), and the reference set a
    ``"mean"`` averages (:func:`ablation_runs_of_tokens` on the dataset's prompts)."""
    return ablation_runs_of_tokens(dataset.clean_tokens, dataset.corrupted_tokens, ablation,
                                   direction, reference_tokens, seed)


def ablation_runs_of_tokens(clean: Int[Tensor, "batch pos"],
                            corrupted: Int[Tensor, "batch pos"] | None, ablation: str,
                            direction: str = "noise",
                            reference_tokens: Int[Tensor, "n pos"] | None = None, seed: int = 0
                            ) -> AblationRuns:
    """:func:`ablation_runs` for bare prompts: ``clean`` (the base run of ``direction="noise"``)
    and their paired ``corrupted`` prompts (needed by ``"corrupted"``, and by ``"mean"`` without
    ``reference_tokens``: the mean is over the corrupted prompts by default). ``"resample"``
    draws from ``reference_tokens``, default the clean prompts themselves."""
    check_ablation(ablation, direction)
    T = clean.shape[1]
    if reference_tokens is not None:
        if not isinstance(reference_tokens, Tensor) or reference_tokens.ndim != 2 or \
                reference_tokens.shape[1] != T:
            got = tuple(reference_tokens.shape) if isinstance(reference_tokens, Tensor) else \
                type(reference_tokens).__name__
            raise TutorialError(f"reference_tokens must be [n, {T}] (the prompts' length: values "
                                f"are taken per position), got {got}")
        if ablation in ("corrupted", "zero"):
            raise TutorialError(f"reference_tokens are for ablation='mean' or 'resample'; "
                                f"ablation={ablation!r} does not use them")
    if corrupted is None and ablation == "corrupted":
        raise TutorialError("ablation='corrupted' needs corrupted_tokens (the paired prompts)")
    if corrupted is None and ablation == "mean" and reference_tokens is None:
        raise TutorialError("ablation='mean' needs reference_tokens or the paired "
                            "corrupted_tokens: the mean is taken over them at each position")
    if ablation == "corrupted":
        base, other = (clean, corrupted) if direction == "noise" else (corrupted, clean)
        return AblationRuns(base, other, None)
    if ablation == "resample":
        ref = clean if reference_tokens is None else reference_tokens
        return AblationRuns(clean, ref[resample_indices(clean.shape[0], ref.shape[0], seed)], None)
    if ablation == "mean":
        return AblationRuns(clean, None, corrupted if reference_tokens is None else reference_tokens)
    return AblationRuns(clean, None, None)


#: reference prompts per forward when a ``"mean"`` ablation averages many of them
MEAN_CHUNK = 64


def _tree(f: Callable[..., Tensor], *xs: Any) -> Any:
    """Apply ``f`` to tensors, or key by key to dicts of tensors."""
    if isinstance(xs[0], dict):
        return {k: f(*(x[k] for x in xs)) for k in xs[0]}
    return f(*xs)


def ablation_values(runs: AblationRuns, record: Callable[[Int[Tensor, "batch pos"]], Any],
                    examples: slice | None = None, like: Any = None) -> Any:
    """The values an ablation patches in: the one place they are computed.

    ``record(tokens)`` returns what one forward of ``tokens`` records (a tensor ``[B, ...]`` or a
    dict of them, e.g. the outputs of every sender of a graph, or the activations at some hooks).
    Returns, shaped like it: ``"corrupted"``/``"resample"``: ``record`` of the per-example source
    run (of ``examples`` of it), ``[B, ...]``; ``"mean"``: the per-position mean over the reference
    prompts, ``[1, ...]`` (``MEAN_CHUNK`` prompts per forward); ``"zero"``: zeros ``[1, ...]``
    shaped like ``like`` (any recorded value: only its shape, dtype and device are used), or, when
    ``like`` is None, like the record of one base prompt."""
    if runs.source is not None:
        return record(runs.source if examples is None else runs.source[examples])
    if runs.reference is not None:
        n = runs.reference.shape[0]
        if n <= MEAN_CHUNK:
            return _tree(lambda a: a.mean(0, keepdim=True), record(runs.reference))
        total = None
        for b in batches(n, MEAN_CHUNK):  # bounded memory: sums of MEAN_CHUNK prompts at a time
            part = _tree(lambda a: a.sum(0, keepdim=True), record(runs.reference[b]))
            total = part if total is None else _tree(torch.add, total, part)
        return _tree(lambda a: a / n, total)
    return _tree(lambda a: torch.zeros_like(a[:1]),
                 record(runs.base[:1]) if like is None else like)


class Interventions(Protocol):
    """What the variants of a run change: the hooks of a chunk of variants on some examples."""

    n_variants: int

    def hooks(self, examples: slice, variants: slice) -> list[Hook]: ...


@dataclass
class SingleEdges:
    """``K`` variants that each remove one edge, ``(sender, receiver)`` index pairs ``[K, 2]``:
    the dense ``[K, n_forward, n_backward]`` mask is built one forward chunk at a time, so
    scoring every edge of GPT-2 small (32,491) never holds more than a chunk's mask."""

    pairs: Tensor


class GraphInterventions:
    """Node patching and edge interchange on a graph, ``K`` variants.

    Args:
        removed: BoolTensor[K, n_forward, n_backward], edges that carry the ablated value (or
            :class:`SingleEdges`).
        patched: BoolTensor[K, n_forward], senders whose output is the ablated value.
        runs: the token sets of the ablation (base, per-example source, mean reference).
        values: optional FloatTensor[N or 1, T, n_forward, D] given directly as the senders'
            ablated values (instead of computing them from ``runs``): e.g. a finite-difference
            check of EAP patches ``out_s(clean) + eps * delta``.
    """

    def __init__(self, model: Any, graph: Graph, removed: Tensor | None, patched: Tensor | None,
                 ablation: str, runs: AblationRuns, values: Tensor | None = None) -> None:
        self.model, self.graph = model, graph
        self.single: Tensor | None = None
        if isinstance(removed, SingleEdges):
            pairs = removed.pairs.long().reshape(-1, 2).cpu()
            if pairs.numel() and not bool(graph.real_edges[pairs[:, 0], pairs[:, 1]].all()):
                raise TutorialError("SingleEdges: every pair must be an edge of the graph")
            self.single, removed = pairs, None
            self.n_variants, self.removed, self.patched = len(pairs), None, None
            if patched is not None:
                raise TutorialError("SingleEdges variants patch no node")
        else:
            self.n_variants, self.removed, self.patched = _stack_masks(graph, removed, patched)
        self.ablation, self.runs, self.values = ablation, runs, values
        self._shared: Tensor | None = None
        self._cached: tuple[int, Tensor] | None = None

    def sources(self, examples: slice) -> Float[Tensor, "batch pos sender d_model"]:
        """``[B or 1, T, n_forward, D]``: the ablated value of every sender."""
        model, g, r = self.model, self.graph, self.runs
        if self.values is not None:
            v = self.values.to(model_device(model))
            return v if v.shape[0] == 1 else v[examples]
        def record(tokens: Tensor) -> Tensor:
            return sender_activations(model, g, tokens)
        if r.source is not None:
            if self._cached is None or self._cached[0] != examples.start:
                self._cached = (examples.start, ablation_values(r, record, examples))
            return self._cached[1]
        if self._shared is None:
            like = torch.zeros(1, r.base.shape[1], g.n_forward, model.cfg.d_model,
                               device=model_device(model))
            self._shared = ablation_values(r, record, like=like)
        return self._shared

    def hooks(self, examples: slice, variants: slice) -> list[Hook]:
        g, dev = self.graph, model_device(self.model)
        src = self.sources(examples)
        K = variants.stop - variants.start
        B = examples.stop - examples.start
        if self.single is not None:
            chunk = self.single[variants]
            removed = torch.zeros(K, g.n_forward, g.n_backward, dtype=torch.bool)
            removed[torch.arange(K), chunk[:, 0], chunk[:, 1]] = True
            removed = removed.to(dev)
        else:
            removed = None if self.removed is None else self.removed[variants].to(dev)
        patched = None if self.patched is None else self.patched[variants].to(dev)
        # sender-hook start -> (the variants that send from it [k], out_s(src) - out_s(run)
        # of those variants only [k, B, T, n, D]): a variant that removes no edge out of a
        # hook stores nothing for it (single-edge scoring keeps one sender per variant)
        diffs: dict[int, tuple[Tensor, Tensor]] = {}
        hooks: list[Hook] = []
        for h in g.sender_hooks():
            sl = h.index
            node_mask = None if patched is None or not bool(patched[:, sl].any()) else patched[:, sl]
            senders = None if removed is None else removed[:, sl].flatten(1).any(1).nonzero()[:, 0]
            sends = senders is not None and len(senders) > 0
            if node_mask is None and not sends:
                continue

            def s_hook(x: Tensor, hook: Any, sl: slice = sl, per_head: bool = h.per_head,
                       name: str = h.name,
                       node_mask: Tensor | None = node_mask, senders: Tensor | None = senders,
                       sends: bool = sends) -> Tensor:
                x5 = _as_nd(x, per_head).reshape(K, B, x.shape[1], sl.stop - sl.start, x.shape[-1])
                s = src[None, :, :, sl].to(x.dtype)
                out = x
                if node_mask is not None:
                    x5 = torch.where(node_mask[:, None, None, :, None], s, x5)
                    out = set_activation(x, x5.reshape(x.shape), name)
                if sends:
                    diffs[sl.start] = (senders, (s - x5[senders]).float())
                return out
            hooks.append((h.name, s_hook))
        if removed is None:
            return hooks
        for r in g.receiver_hooks():
            rs = r.index
            groups = [h.index for h in g.sender_hooks()
                      if h.index.start < r.n_prior and bool(removed[:, h.index, rs].any())]
            if not groups:
                continue

            def r_hook(x: Tensor, hook: Any, rs: slice = rs, groups: list = groups,
                       per_head: bool = r.per_head) -> Tensor:
                delta = torch.zeros(K, B, x.shape[1], rs.stop - rs.start, x.shape[-1],
                                    device=x.device)
                for sl in groups:
                    senders, d = diffs[sl.start]
                    # the mask slice is cast to float per hook, never the whole [K, S, R] mask
                    coef = removed[senders][:, sl, rs].float()
                    delta.index_add_(0, senders, torch.einsum("kbtsd,ksr->kbtrd", d, coef))
                if not per_head:
                    delta = delta[:, :, :, 0]
                return x + delta.reshape(x.shape).to(x.dtype)
            hooks.append((r.name, r_hook))
        return hooks


def _stack_masks(graph: Graph, removed: Tensor | None, patched: Tensor | None
                 ) -> tuple[int, Tensor | None, Tensor | None]:
    K = None
    if removed is not None:
        if not isinstance(removed, Tensor):
            raise TutorialError(f"removed must be a BoolTensor [K, n_forward, n_backward], got "
                                f"{type(removed).__name__}")
        if removed.ndim == 2:
            removed = removed[None]
        if removed.ndim != 3 or tuple(removed.shape[1:]) != (graph.n_forward, graph.n_backward):
            raise TutorialError(f"removed must be [K, {graph.n_forward}, {graph.n_backward}] "
                                f"(variants x senders x receivers), got {tuple(removed.shape)}")
        removed = removed.bool()
        if (removed & ~graph.real_edges.to(removed.device)).any():
            raise TutorialError("removed marks entries that are not edges; AND it with "
                                "graph.real_edges")
        K = removed.shape[0]
    if patched is not None:
        if not isinstance(patched, Tensor):
            raise TutorialError(f"patched must be a BoolTensor [K, n_forward], got "
                                f"{type(patched).__name__}")
        if patched.ndim == 1:
            patched = patched[None]
        if patched.ndim != 2 or patched.shape[1] != graph.n_forward:
            raise TutorialError(f"patched must be [K, {graph.n_forward}] (variants x senders), "
                                f"got {tuple(patched.shape)}")
        if K is not None and patched.shape[0] != K:
            raise TutorialError(f"removed has {K} variants but patched has {patched.shape[0]}")
        K = patched.shape[0]
        patched = patched.bool()
    if K is None:
        raise TutorialError("pass removed edges [K, n_forward, n_backward] and/or patched nodes "
                            "[K, n_forward]")
    return K, removed, patched


class SiteInterventions:
    """Activation patching at hook sites: variant ``k`` sets ``act <- where(mask[k], src, act)``
    at each hook it names.

    Args:
        masks: one ``{hook_name: BoolTensor[*M]}`` per variant (``M`` broadcastable to one
            example's activation; see :meth:`tutorial_utils.patching.Component.mask`).
        sources: ``{hook_name: [N or 1, *S]}`` the values patched in (per example, or shared).
    """

    def __init__(self, masks: Sequence[dict[str, Tensor]], sources: dict[str, Tensor]) -> None:
        for m in masks:
            for name in m:
                if name not in sources:
                    raise TutorialError(f"no source activation for hook {name!r}")
        self.masks, self.sources, self.n_variants = list(masks), sources, len(masks)

    def hooks(self, examples: slice, variants: slice) -> list[Hook]:
        chunk = self.masks[variants]
        n = len(chunk)
        hooks: list[Hook] = []
        for name in sorted({name for m in chunk for name in m}):
            shape = next(m[name].shape for m in chunk if name in m)
            stacked = torch.zeros(n, *shape, dtype=torch.bool)
            for i, m in enumerate(chunk):
                if name in m:
                    stacked[i] = m[name]
            src = self.sources[name]
            src = src if src.shape[0] == 1 else src[examples]
            hooks.append((name, masked_set_hook(src, stacked, name)))
        return hooks


def masked_set(act: Float[Tensor, "rows ..."], source: Float[Tensor, "src ..."],
               mask: Bool[Tensor, "variants ..."]) -> Float[Tensor, "rows ..."]:
    """``where(mask, source, act)`` for ``n`` stacked variants: ``act [n*B, *S]``, ``source
    [B or 1 or n*B, *S]``, ``mask [n, *M]`` (row ``i`` says where variant ``i`` is patched).
    Returns a new tensor (``act`` is not modified)."""
    n = mask.shape[0]
    if act.shape[0] % n:
        raise TutorialError(f"activation batch {act.shape[0]} is not a multiple of {n} variants")
    B, S = act.shape[0] // n, act.shape[1:]
    a = act.view(n, B, *S)
    src = source.view(n, B, *S) if source.shape[0] == act.shape[0] else source.unsqueeze(0)
    m = mask.to(act.device).view(n, 1, *mask.shape[1:])
    return torch.where(m, src.to(act.device, act.dtype), a).reshape(act.shape)


def masked_set_hook(source: Float[Tensor, "src ..."], mask: Bool[Tensor, "variants ..."],
                    name: str) -> Callable[..., Float[Tensor, "rows ..."]]:
    """A forward hook, to register at the hook ``name``, applying :func:`masked_set` with a fixed
    source and mask (written in place only at a residual-stream hook, see
    :func:`set_activation`)."""
    def hook(act: Tensor, hook: Any = None) -> Tensor:
        return set_activation(act, masked_set(act, source, mask), name)
    return hook


def replace_hook(value: Float[Tensor, "rows ..."], name: str
                 ) -> Callable[..., Float[Tensor, "rows ..."]]:
    """A forward hook, to register at the hook ``name``, replacing its activation by ``value``
    (reshaped to it; written in place only at a residual-stream hook, see
    :func:`set_activation`)."""
    def hook(act: Tensor, hook: Any = None) -> Tensor:
        return set_activation(act, value.to(act.device, act.dtype).reshape(act.shape), name)
    return hook


# ------------------------------------------------------------------------------ the runner
def run_stacked(model: Any, dataset: TaskDataset, interventions: Any,
                base_tokens: Int[Tensor, "examples pos"], *,
                metric: Metric | None = None, per_example: bool = False, batch_size: int = 32,
                max_sequences: int = 512, progress: bool = False, desc: str = "patching"
                ) -> Float[Tensor, " variants"] | Float[Tensor, "variants examples"]:
    """The metric of every variant of ``interventions`` over the dataset: ``[K]`` (the mean over
    the dataset, batch means weighted by size), or ``[K, N]`` with ``per_example``.

    ``base_tokens`` ``[N, T]`` is the run the interventions act on; ``batch_size`` examples per
    forward, ``max_sequences`` bounds ``K * batch`` rows per forward."""
    check_batch_size(batch_size)
    check_batch_size(max_sequences, "max_sequences")
    check_metric(metric)
    K, N = interventions.n_variants, len(dataset)
    bs = min(batch_size, N)
    # rows per forward: at most max_sequences, and few enough that the float32 logits stay under
    # default_batch_rows' budget (GPT-2's vocabulary makes them the largest tensor of a forward)
    rows = min(max_sequences, max(bs, default_batch_rows(base_tokens.shape[1], model.cfg.d_vocab)))
    k_chunk = max(1, rows // bs)
    work = [(b, k) for b in batches(N, bs) for k in batches(K, k_chunk)]
    if progress:
        work = tqdm(work, desc=desc)
    out = torch.zeros(K, N) if per_example else torch.zeros(K)
    for b, k in work:
        sub = dataset if (b.start, b.stop) == (0, N) else dataset.subset(b)
        n = k.stop - k.start
        logits = stacked_forward(model, base_tokens[b], n, interventions.hooks(b, k))
        vals = metric_of_variants(metric, logits, sub, n, per_example).detach().float().cpu()
        if per_example:
            out[k, b] = vals
        else:
            out[k] += vals * (len(sub) / N)
    return out


class _NoIntervention:
    n_variants = 1

    def hooks(self, examples: slice, variants: slice) -> list[Hook]:
        return []


def examples_per_forward(model: Any, dataset: TaskDataset, batch_size: int | None = None) -> int:
    """``batch_size`` (checked) when given, else as many examples as :func:`default_batch_rows`'
    logits budget allows (at most the whole dataset)."""
    if batch_size is not None:
        check_batch_size(batch_size)
        return batch_size
    return min(len(dataset), default_batch_rows(dataset.seq_len, model.cfg.d_vocab))


def metric_of_run(model: Any, dataset: TaskDataset, tokens: Int[Tensor, "examples pos"],
                  metric: Metric | None = None, batch_size: int | None = None) -> float:
    """The metric (mean over the dataset) of the unmodified model run on ``tokens`` (the
    dataset's clean or corrupted prompts); ``batch_size`` default: the logits budget."""
    return float(run_stacked(model, dataset, _NoIntervention(), tokens, metric=metric,
                             batch_size=examples_per_forward(model, dataset, batch_size))[0])


def baseline_metrics(model: Any, dataset: TaskDataset, metric: Metric | None = None,
                     batch_size: int | None = None) -> tuple[float, float]:
    """``(metric on the clean prompts, metric on the corrupted prompts)`` of the unmodified
    model (means over the dataset; ``batch_size`` examples per forward, default the budget of
    :func:`examples_per_forward`)."""
    check_dataset(dataset, model)
    return (metric_of_run(model, dataset, dataset.clean_tokens, metric, batch_size),
            metric_of_run(model, dataset, dataset.corrupted_tokens, metric, batch_size))


def run_variants(model: Any, graph: Graph, dataset: TaskDataset,
                 removed: Bool[Tensor, "variants sender receiver"] | None = None,
                 patched: Bool[Tensor, "variants sender"] | None = None, *,
                 ablation: Ablation = "corrupted", direction: Direction = "noise",
                 metric: Metric | None = None, per_example: bool = False,
                 reference_tokens: Int[Tensor, "n pos"] | None = None, seed: int = 0,
                 batch_size: int = 32, max_sequences: int = 512, progress: bool = False,
                 desc: str = "patching") -> Float[Tensor, " variants"] | Float[Tensor, "variants examples"]:
    """The metric of every graph variant (removed edges and/or patched nodes), over the dataset.

    Args:
        removed: BoolTensor[K, n_forward, n_backward], edges that carry the ablated value.
        patched: BoolTensor[K, n_forward], nodes whose output is the ablated value.
        ablation, direction, reference_tokens, seed: see the module docstring.
        metric: the metric contract (:mod:`tutorial_utils.tasks.metrics`); default the task metric.
        per_example: return ``[K, N]`` (one value per example).
        batch_size: examples per forward; ``max_sequences`` bounds ``K * batch`` per forward.

    Returns:
        FloatTensor[K], or ``[K, N]`` with ``per_example``.
    """
    check_dataset(dataset, model)
    graph.check_model(model)
    check_metric(metric)
    runs = ablation_runs(dataset, ablation, direction, reference_tokens, seed)
    if runs.reference is not None or ablation == "resample":
        check_tokens(model, runs.reference if runs.reference is not None else runs.source,
                     "reference_tokens")
    interventions = GraphInterventions(model, graph, removed, patched, ablation, runs)
    return run_stacked(model, dataset, interventions, runs.base, metric=metric,
                       per_example=per_example, batch_size=batch_size,
                       max_sequences=max_sequences, progress=progress, desc=desc)


# ------------------------------------------------------------------------------ gradients
def receiver_gradients_into(model: Any, graph: Graph, tokens: Int[Tensor, "batch pos"],
                            value_of_logits: Callable[[Float[Tensor, "batch pos vocab"]],
                                                      Float[Tensor, ""]],
                            out: Float[Tensor, "batch pos receiver d_model"],
                            embed: Float[Tensor, "batch pos d_model"] | None = None,
                            minus_senders: Float[Tensor, "batch pos sender d_model"] | None = None
                            ) -> None:
    """Add ``∂ value / ∂ in_r`` for every receiver ``r`` to ``out`` (the one running sum of
    gradients), where ``value = value_of_logits(logits)`` is a scalar.

    ``embed`` replaces the ``embed`` node's output (how EAP-IG walks between the corrupted and
    clean embeddings). The embedding is made a leaf that requires grad, so gradients reach every
    receiver even if the model's parameters are frozen. ``minus_senders`` ``[B, T, n_forward, D]``,
    when given, has what every sender writes in this forward (:func:`sender_activations`)
    subtracted from it in place: EAP's ``Δ = out(corrupted) - out(clean)`` is finished in the
    clean forward that takes the gradients, with no second clean forward and no extra buffer."""
    held: list[tuple[slice, bool, Tensor]] = []

    def set_input(x: Tensor, hook: Any) -> Tensor:
        x = x if embed is None else embed.to(x.dtype)
        return x.detach().requires_grad_(True)

    hooks: list[Hook] = [(graph.node("embed").out_hook, set_input)]  # type: ignore[list-item]
    if minus_senders is not None:
        for h in graph.sender_hooks():
            def subtract(x: Tensor, hook: Any, sl: slice = h.index, per_head: bool = h.per_head,
                         into: Tensor = minus_senders) -> Tensor:
                into[:, :, sl] -= _as_nd(x.detach(), per_head).float()
                return x
            hooks.append((h.name, subtract))  # type: ignore[arg-type]
    for r in graph.receiver_hooks():
        def hook(x: Tensor, hook: Any, sl: slice = r.index, per_head: bool = r.per_head) -> Tensor:
            # A fresh tensor: the bridge feeds hook_mlp_in's output to ln2 only, but the
            # un-cloned tensor is also the residual stream, whose gradient must not count.
            x = x.clone()
            held.append((sl, per_head, x))
            return x
        hooks.append((r.name, hook))
    with torch.enable_grad():
        logits = stacked_forward(model, tokens, 1, hooks, grad=True)
        value = value_of_logits(logits)
        grads = torch.autograd.grad(value, [x for _, _, x in held], allow_unused=True)
    del logits, value
    for (sl, per_head, x), g in zip(held, grads):
        if g is not None:
            out[:, :, sl] += (g if per_head else g.unsqueeze(2)).float()
