"""The one intervention engine under node patching, edge/path patching and circuit evaluation.

The residual stream a receiver ``r`` reads is the sum of what the senders before it wrote, plus
constant biases (Elhage et al. 2021; exact in TransformerLens compatibility mode). So one edge
``s -> r`` can be given another value without touching any other path (Conmy et al. 2023, ACDC;
Wang et al. 2023 and Goldowsky-Dill et al. 2023, path patching; Hanna et al. 2024, EAP-IG's
evaluation):

    in_r  <-  in_r  +  sum_{s : removed[s, r]} ( src_s - out_s(current run) ),

and a node ``s`` is patched by replacing its output: ``out_s <- src_s`` (then every edge out of
it carries the source value). ``src`` is what every sender writes on the *source* run:

* ``"corrupted"``: the paired other prompt (an interchange / resample ablation). With
  ``direction="noise"`` (default) the base run is clean and the source corrupted; with
  ``"denoise"`` the base run is corrupted and the source clean;
* ``"mean"``: the per-position mean over ``reference_tokens`` (default the source prompts);
* ``"zero"``: zero.

``K`` variants (each a mask of removed edges ``[K, n_forward, n_backward]`` and/or of patched
nodes ``[K, n_forward]``) are stacked along the batch: a batch of ``B`` examples becomes ``K*B``
sequences, variant-major (rows ``k*B:(k+1)*B`` are variant ``k``), and one forward evaluates
them all. Invariants (tests/test_interchange.py, tests/test_path_patching.py): no mask gives
the base run; every edge removed (or every node patched) from the corrupted run gives the
corrupted run; removing every edge out of a node equals patching the node; a single removed
edge equals a hand-written hook adding ``src_s - out_s`` to one receiver.

Metric convention (the package's one): ``metric(logits[n*B, ...], dataset) -> [n]``, the
metric of each stacked variant, averaged over the ``B`` examples (default: the dataset's task
metric, :meth:`TaskDataset.metric`).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from .graph import Graph
from .metrics import Metric, check_metric_output, default_metric
from .tasks.base import TaskDataset
from .errors import TutorialError
from .validation import check_batch_size, check_dataset

__all__ = ["Direction", "Source", "batches", "default_batch_rows", "interchange_logits",
           "metric_of_runs", "model_device", "run_variants", "sender_activations",
           "source_activations"]

Source = Literal["corrupted", "mean", "zero"]
Direction = Literal["noise", "denoise"]
SOURCES = ("corrupted", "mean", "zero")


def model_device(model: Any) -> torch.device:
    """The device of the model's parameters (CPU for a parameter-less model)."""
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def default_batch_rows(seq_len: int, d_vocab: int, budget_bytes: float = 4e8) -> int:
    """Rows per stacked forward so the float32 logits stay under ``budget_bytes`` (cap 1024)."""
    return int(max(1, min(1024, budget_bytes // (4 * seq_len * d_vocab))))


def batches(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    check_batch_size(batch_size)
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _as_nd(x: Tensor, per_head: bool) -> Tensor:
    """View a sender/receiver activation as ``[B, T, n, D]`` (n = heads, or 1)."""
    return x if per_head else x.unsqueeze(2)


@torch.no_grad()
def sender_activations(model: Any, graph: Graph, tokens: Tensor) -> Tensor:
    """FloatTensor[B, T, n_forward, D]: what every sender writes, in one forward of ``tokens``
    (``out_s`` in the module docstring; index ``s`` as in :class:`~tutorial_utils.graph.Graph`)."""
    B, T = tokens.shape
    out = torch.empty(B, T, graph.n_forward, model.cfg.d_model, device=model_device(model))
    hooks = []
    for h in graph.sender_hooks():
        def hook(x: Tensor, hook: Any, sl: slice = h.index, per_head: bool = h.per_head) -> Tensor:
            out[:, :, sl] = _as_nd(x, per_head).float()
            return x
        hooks.append((h.name, hook))
    model.run_with_hooks(tokens.to(out.device), fwd_hooks=hooks)
    return out


def source_activations(model: Any, graph: Graph, source: Source, source_tokens: Tensor,
                       reference_tokens: Tensor | None = None) -> Tensor:
    """The senders' source values ``src``: ``[B, T, n_forward, D]`` for ``"corrupted"`` (the
    run of ``source_tokens``), ``[1, T, n_forward, D]`` for ``"mean"`` (mean over
    ``reference_tokens``, default ``source_tokens``, at each position) and ``"zero"``."""
    if source not in SOURCES:
        raise TutorialError(f"source must be one of {SOURCES} (the values patched in), got "
                            f"{source!r}")
    if source == "corrupted":
        return sender_activations(model, graph, source_tokens)
    T = source_tokens.shape[1]
    if source == "zero":
        return torch.zeros(1, T, graph.n_forward, model.cfg.d_model, device=model_device(model))
    ref = source_tokens if reference_tokens is None else reference_tokens
    if ref.ndim != 2 or ref.shape[1] != T:
        raise TutorialError(f"reference_tokens must be [batch, {T}] (the prompts' length: the "
                            f"mean is taken per position), got {tuple(ref.shape)}")
    return sender_activations(model, graph, ref).mean(0, keepdim=True)


def _stack_masks(graph: Graph, removed: Tensor | None, patched: Tensor | None
                 ) -> tuple[int, Tensor | None, Tensor | None]:
    K = None
    if removed is not None:
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


def interchange_logits(model: Any, graph: Graph, base_tokens: Tensor, source_acts: Tensor,
                       removed: Tensor | None = None, patched: Tensor | None = None) -> Tensor:
    """Logits of ``K`` stacked variants of the base run, each with its edges removed (carrying
    the source value) and its nodes patched (writing the source value).

    Args:
        base_tokens: LongTensor[B, T], the base run's prompts.
        source_acts: FloatTensor[B or 1, T, n_forward, D] from :func:`source_activations`.
        removed: BoolTensor[K, n_forward, n_backward] (or ``[n_forward, n_backward]``).
        patched: BoolTensor[K, n_forward] (or ``[n_forward]``).

    Returns:
        FloatTensor[K*B, T, vocab], variant-major.
    """
    K, removed, patched = _stack_masks(graph, removed, patched)
    B, T = base_tokens.shape
    dev = model_device(model)
    src = source_acts.to(dev)
    coef = None if removed is None else removed.to(dev, torch.float32)
    diffs: dict[int, tuple[slice, Tensor]] = {}  # sender-hook start -> (slice, [K,B,T,n,D])
    hooks = []
    for g in graph.sender_hooks():
        sl = g.index
        node_mask = None if patched is None or not bool(patched[:, sl].any()) else \
            patched[:, sl].to(dev)
        sends = coef is not None and bool(coef[:, sl].any())
        if node_mask is None and not sends:
            continue

        def s_hook(x: Tensor, hook: Any, sl: slice = sl, per_head: bool = g.per_head,
                   node_mask: Tensor | None = node_mask, sends: bool = sends) -> Tensor:
            x5 = _as_nd(x, per_head).reshape(K, B, T, sl.stop - sl.start, x.shape[-1])
            s = src[None, :, :, sl].to(x.dtype)
            if node_mask is not None:
                x5 = torch.where(node_mask[:, None, None, :, None], s, x5)
                new = x5.reshape(x.shape)
                if not x.requires_grad:
                    # in place as well: on the bridge an out-of-place return may reach one
                    # branch only (see patching.patch_hook)
                    try:
                        x.copy_(new)
                        new = x
                    except RuntimeError:  # pragma: no cover - non-writable view
                        pass
                x_out = new
            else:
                x_out = x
            if sends:
                diffs[sl.start] = (sl, (s - x5).float())
            return x_out
        hooks.append((g.name, s_hook))
    if coef is not None:
        for r in graph.receiver_hooks():
            rs = r.index
            groups = [h.index for h in graph.sender_hooks()
                      if h.index.start < r.n_prior and bool(coef[:, h.index, rs].any())]
            if not groups:
                continue

            def r_hook(x: Tensor, hook: Any, rs: slice = rs, groups: list = groups,
                       per_head: bool = r.per_head) -> Tensor:
                delta = None
                for sl in groups:
                    d = diffs[sl.start][1]
                    term = torch.einsum("kbtsd,ksr->kbtrd", d, coef[:, sl, rs])
                    delta = term if delta is None else delta + term
                if not per_head:
                    delta = delta[:, :, :, 0]
                return x + delta.reshape(x.shape).to(x.dtype)
            hooks.append((r.name, r_hook))
    tokens = base_tokens.to(dev).repeat(K, 1)
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def _base_and_other(dataset: TaskDataset, direction: str) -> tuple[Tensor, Tensor]:
    if direction not in ("noise", "denoise"):
        raise TutorialError(f"direction must be 'noise' (corrupted values into the clean run) "
                            f"or 'denoise' (clean values into the corrupted run), got "
                            f"{direction!r}")
    if direction == "noise":
        return dataset.clean_tokens, dataset.corrupted_tokens
    return dataset.corrupted_tokens, dataset.clean_tokens


def run_variants(model: Any, graph: Graph, dataset: TaskDataset, removed: Tensor | None = None,
                 patched: Tensor | None = None, *, source: Source = "corrupted",
                 direction: Direction = "noise", metric: Metric | None = None,
                 per_example: bool = False, reference_tokens: Tensor | None = None,
                 batch_size: int = 32, max_sequences: int = 512, progress: bool = False,
                 desc: str = "patching") -> Tensor:
    """The metric of every variant (removed edges and/or patched nodes), over the dataset.

    Args:
        removed: BoolTensor[K, n_forward, n_backward], edges that carry the source value.
        patched: BoolTensor[K, n_forward], nodes whose output is the source value.
        source, direction, reference_tokens: see the module docstring.
        metric: ``metric(logits[n*B, ...], dataset) -> [n]`` (default: the task metric).
        per_example: return ``[K, N]`` (one value per example; default metric only).
        batch_size: examples per forward; ``max_sequences`` bounds ``K * batch`` per forward.

    Returns:
        FloatTensor[K] (the metric averaged over the dataset, batch means weighted by size),
        or ``[K, N]`` with ``per_example``.
    """
    check_dataset(dataset, model)
    graph.check_model(model)
    check_batch_size(batch_size)
    check_batch_size(max_sequences, "max_sequences")
    K, removed, patched = _stack_masks(graph, removed, patched)
    if per_example and metric is not None:
        raise TutorialError("per_example=True needs the dataset's own metric (metric=None)")
    metric_fn: Metric = metric or default_metric
    base_all, other_all = _base_and_other(dataset, direction)
    if source not in SOURCES:
        raise TutorialError(f"source must be one of {SOURCES} (the values patched in), got "
                            f"{source!r}")
    N = len(dataset)
    bs = min(batch_size, N)
    shared = None
    if source != "corrupted":
        shared = source_activations(model, graph, source, other_all, reference_tokens)
    k_chunk = max(1, max_sequences // bs)
    work = [(b, k) for b in batches(N, bs) for k in batches(K, k_chunk)]
    if progress:
        from tqdm.auto import tqdm
        work = tqdm(work, desc=desc)
    out = torch.zeros(K, N) if per_example else torch.zeros(K)
    cached: tuple[int, Tensor] | None = None
    with torch.no_grad():
        for b, k in work:
            sub = dataset.subset(b)
            base = base_all[b]
            if shared is not None:
                src = shared
            else:
                if cached is None or cached[0] != b.start:
                    cached = (b.start, source_activations(model, graph, "corrupted",
                                                          other_all[b]))
                src = cached[1]
            logits = interchange_logits(model, graph, base, src,
                                        None if removed is None else removed[k],
                                        None if patched is None else patched[k])
            n = k.stop - k.start
            if per_example:
                vals = sub.metric(logits, per_example=True).reshape(n, -1).float().cpu()
                out[k, b] = vals
            else:
                vals = check_metric_output(metric_fn(logits, sub), n).detach().cpu()
                out[k] += vals * (len(sub) / N)
    return out


def metric_of_runs(model: Any, dataset: TaskDataset, metric: Metric | None = None,
                   batch_size: int = 32) -> tuple[float, float]:
    """``(metric on the clean prompts, metric on the corrupted prompts)`` of the unmodified
    model, batch means weighted by batch size."""
    check_dataset(dataset, model)
    metric_fn: Metric = metric or default_metric
    dev = model_device(model)
    clean = corrupted = 0.0
    with torch.no_grad():
        for b in batches(len(dataset), batch_size):
            sub = dataset.subset(b)
            w = len(sub) / len(dataset)
            clean += float(check_metric_output(metric_fn(model(sub.clean_tokens.to(dev)), sub), 1)[0]) * w
            corrupted += float(check_metric_output(
                metric_fn(model(sub.corrupted_tokens.to(dev)), sub), 1)[0]) * w
    return clean, corrupted

