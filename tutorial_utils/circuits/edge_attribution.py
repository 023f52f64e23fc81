"""Score every edge of the graph at once: EAP, EAP-IG, exact edge patching, and node-level EAP.

Let ``M`` be the task metric, ``out_s`` what sender ``s`` writes and ``in_r`` what receiver
``r`` reads. Corrupting the single edge ``s -> r`` changes ``in_r`` by
``Δ_s = out_s(corrupted) - out_s(clean)`` and nothing else upstream of ``r``, so

* **exact** edge patching: ``score(s->r) = M(clean with in_r += Δ_s) - M(clean)``, one forward
  per edge (batched here: many edges stacked along the batch);
* **EAP** (Nanda 2023; Syed, Rager & Conmy 2023), its first-order Taylor expansion around the
  clean run: ``score(s->r) ≈ Δ_s · ∂M/∂in_r``, summed over positions and averaged over
  examples. One clean forward with gradients, one corrupted forward, one backward give every
  edge's score: ``scores = einsum('btsd,btrd->sr', Δ, ∂M/∂in)``.
* **EAP-IG** (Hanna, Pezzelle & Belinkov 2024): the gradient is averaged along the straight
  path from the corrupted to the clean input embeddings (integrated gradients, Sundararajan et
  al. 2017): ``score(s->r) = Δ_s · (1/m) Σ_{k=1..m} ∂M/∂in_r |_{x = x' + (k/m)(x - x')}``.
  With ``m = 1`` it is EAP. It helps where the metric saturates (a softmax probability near
  0 or 1), where the local gradient at the clean point underestimates large effects.

Signs: a negative score means corrupting the edge lowers the metric (the edge helps the task).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import TutorialError
from ..graph import Graph
from ..interchange import (GraphInterventions, SingleEdges, ablation_runs, batches,
                           metric_of_run, model_device, receiver_gradients_into, run_stacked,
                           sender_activations, stacked_forward)
from ..tasks.base import TaskDataset, check_dataset, metric_of_variants
from ..tasks.metrics import Metric, check_metric
from ..validation import check_batch_size

__all__ = ["METHODS", "attribute", "eap_ig_scores", "eap_scores", "exact_scores",
           "node_attribution", "receiver_gradients"]

Method = Literal["eap", "eap-ig", "exact"]
METHODS = ("eap", "eap-ig", "exact")


#: the most interpolation points EAP-IG accepts (Hanna et al. use 5 to 100)
MAX_IG_STEPS = 1000


def _progress(it: Any, on: bool, desc: str) -> Any:
    return tqdm(it, desc=desc) if on else it


def _scalar_metric(metric: Metric | None, dataset: TaskDataset, n: int, weight: float) -> Any:
    """``logits[n*B, ...] -> weight * sum over the n runs of the metric's mean`` (a scalar with a
    gradient), the metric contract applied per run."""
    return lambda logits: metric_of_variants(metric, logits, dataset, n, need_grad=True).sum() * weight


def _check_common(model: Any, graph: Graph, dataset: TaskDataset, batch_size: int,
                  metric: Metric | None) -> None:
    if not isinstance(graph, Graph):
        raise TutorialError(f"graph must be a Graph (Graph.from_model(model)), got "
                            f"{type(graph).__name__}")
    check_dataset(dataset, model)
    graph.check_model(model)
    check_batch_size(batch_size)
    check_metric(metric)


def receiver_gradients(model: Any, graph: Graph, dataset: TaskDataset,
                       metric: Metric | None = None, embed: Float[Tensor, "batch pos d_model"] | None = None
                       ) -> Float[Tensor, "batch pos receiver d_model"]:
    """``∂M/∂in_r`` at every receiver input, on the clean prompts, in one forward and one
    backward over the whole dataset: FloatTensor[B, T, n_backward, D].

    ``M`` is the metric averaged over the dataset (as in :func:`eap_scores`), so
    ``einsum('btsd,btrd->sr', Δ, receiver_gradients(...))`` with
    ``Δ = sender_activations(corrupted) - sender_activations(clean)`` is EAP. ``embed``
    (``[B, T, D]``) replaces the ``embed`` node's output: a point on EAP-IG's straight path
    ``x' + (k/m)(x - x')`` between the corrupted and clean embeddings. Exposed so that the
    notebooks can assemble EAP and EAP-IG from their parts; the scoring functions above use the
    same computation.
    """
    _check_common(model, graph, dataset, 1, metric)
    B, T = dataset.clean_tokens.shape
    if embed is not None and (not isinstance(embed, Tensor)
                              or tuple(embed.shape) != (B, T, model.cfg.d_model)):
        got = tuple(embed.shape) if isinstance(embed, Tensor) else type(embed).__name__
        raise TutorialError(f"embed must be [batch, pos, d_model] = {(B, T, model.cfg.d_model)}, "
                            f"got {got}")
    dev = model_device(model)
    grads = torch.zeros(B, T, graph.n_backward, model.cfg.d_model, device=dev)
    receiver_gradients_into(model, graph, dataset.clean_tokens, _scalar_metric(metric, dataset, 1, 1.0),
                            grads, None if embed is None else embed.to(dev))
    return grads.cpu()


def eap_scores(model: Any, graph: Graph, dataset: TaskDataset, metric: Metric | None = None,
               batch_size: int = 16, progress: bool = False) -> Float[Tensor, "sender receiver"]:
    """EAP scores of every edge: FloatTensor[n_forward, n_backward] (0 off the real edges).

    Per batch: a corrupted forward (sender outputs), a clean forward with gradients and one
    backward; ``score = Σ_{b,t} Δ[b,t,s] · ∂M/∂in_r[b,t]`` where ``M`` is the metric averaged
    over the whole dataset.
    """
    return eap_ig_scores(model, graph, dataset, steps=1, metric=metric, batch_size=batch_size,
                         progress=progress, _desc="EAP")


def eap_ig_scores(model: Any, graph: Graph, dataset: TaskDataset, steps: int = 5,
                  metric: Metric | None = None, batch_size: int = 16, progress: bool = False,
                  max_batch: int | None = None, _desc: str = "EAP-IG") -> Float[Tensor, "sender receiver"]:
    """EAP-IG scores with ``steps`` interpolation points (right Riemann sum, ``k/m``,
    ``k = 1..m``; ``steps=1`` is EAP):

        score(s->r) = Δ_s · (1/m) Σ_{k=1..m} ∂M/∂in_r |_{embed = x' + (k/m)(x - x')}

    (Hanna, Pezzelle & Belinkov 2024). Memory: the interpolated inputs of a batch are run
    ``max_batch`` rows per forward (default: the batch's own size, i.e. one step per forward),
    and their gradients are added into one running sum ``[B, T, n_backward, D]``, so the peak
    memory is that of EAP on the same batch (``benchmarks/bench_eap.py`` measures it).
    ``max_batch = steps * batch_size`` runs every step in one forward (fastest, most memory).

    Returns FloatTensor[n_forward, n_backward].
    """
    _check_common(model, graph, dataset, batch_size, metric)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_IG_STEPS:
        raise TutorialError(f"steps must be an integer in [1, {MAX_IG_STEPS}] (IG interpolation "
                            f"points; Hanna et al. use 5 to 100), got {steps!r}")
    if max_batch is not None:
        check_batch_size(max_batch, "max_batch")
    dev = model_device(model)
    N = len(dataset)
    scores = torch.zeros(graph.n_forward, graph.n_backward, device=dev)
    for b in _progress(batches(N, batch_size), progress, _desc):
        sub = dataset.subset(b)
        B = len(sub)
        clean_tok, corr_tok = sub.clean_tokens.to(dev), sub.corrupted_tokens.to(dev)
        delta = sender_activations(model, graph, corr_tok)
        w = B / N  # the metric is a mean over the whole dataset
        grads = torch.zeros(B, clean_tok.shape[1], graph.n_backward, model.cfg.d_model, device=dev)
        if steps == 1:
            # delta -= out(clean), in place, in the clean forward that takes the gradients
            receiver_gradients_into(model, graph, clean_tok, _scalar_metric(metric, sub, 1, w),
                                    grads, minus_senders=delta)
        else:
            clean = sender_activations(model, graph, clean_tok)
            x0 = delta[:, :, 0].clone()  # the corrupted embedding
            delta -= clean  # corrupted - clean, in place: one [B, T, S, D] buffer
            x1 = clean[:, :, 0].clone()
            del clean
            per = max(1, (max_batch or B) // B)  # steps per forward
            alphas = torch.arange(1, steps + 1, device=dev, dtype=torch.float32) / steps
            for k0 in range(0, steps, per):
                a = alphas[k0:k0 + per]
                n = len(a)
                inputs = (x0[None] + a[:, None, None, None] * (x1 - x0)[None]).flatten(0, 1)
                tokens = clean_tok.repeat(n, 1)
                if n == 1:
                    receiver_gradients_into(model, graph, tokens,
                                            _scalar_metric(metric, sub, 1, w / steps), grads,
                                            inputs)
                else:
                    view = torch.zeros(n * B, *grads.shape[1:], device=dev)
                    receiver_gradients_into(model, graph, tokens,
                                            _scalar_metric(metric, sub, n, w / steps), view,
                                            inputs)
                    grads += view.reshape(n, B, *grads.shape[1:]).sum(0)
                    del view
        scores += torch.einsum("btsd,btrd->sr", delta, grads)
        del delta, grads
    scores = scores.cpu().masked_fill(~graph.real_edges, 0.0)
    return scores


def exact_scores(model: Any, graph: Graph, dataset: TaskDataset, metric: Metric | None = None,
                 edges: Bool[Tensor, "sender receiver"] | None = None, batch_size: int = 32, max_sequences: int = 512,
                 progress: bool = False) -> Float[Tensor, "sender receiver"]:
    """Exact edge patching: ``M(edge s->r corrupted alone) - M(clean)`` for every edge.

    Each edge is one variant of the engine (:class:`tutorial_utils.interchange.SingleEdges`:
    one removed edge, its mask built per forward chunk, so memory does not grow with the number
    of edges); ``max_sequences // batch`` edges are stacked along the batch per forward.

    Args:
        edges: optional BoolTensor mask restricting which edges to patch (others get 0).

    Returns FloatTensor[n_forward, n_backward].
    """
    _check_common(model, graph, dataset, batch_size, metric)
    todo = graph.real_edges if edges is None else graph.check_mask(edges, "edges")
    pairs = todo.nonzero()  # [E, 2] (sender, receiver)
    scores = torch.zeros(graph.n_forward, graph.n_backward)
    if len(pairs) == 0:
        return scores
    runs = ablation_runs(dataset, "corrupted")
    interventions = GraphInterventions(model, graph, SingleEdges(pairs), None, "corrupted", runs)
    vals = run_stacked(model, dataset, interventions, runs.base, metric=metric,
                       batch_size=batch_size, max_sequences=max_sequences, progress=progress,
                       desc="exact edge patching")
    base = metric_of_run(model, dataset, dataset.clean_tokens, metric, batch_size)
    scores[pairs[:, 0], pairs[:, 1]] = vals - base
    return scores


def attribute(model: Any, graph: Graph, dataset: TaskDataset, method: Method = "eap-ig",
              steps: int = 5, metric: Metric | None = None, batch_size: int = 16,
              progress: bool = False) -> Float[Tensor, "sender receiver"]:
    """Score every edge with ``method`` (``eap``, ``eap-ig`` or ``exact``), store the scores in
    ``graph.scores`` (and the method in ``graph.meta``) and return them."""
    if method not in METHODS:
        raise TutorialError(f"unknown attribution method {method!r}; valid: {METHODS}")
    if method == "eap":
        s = eap_scores(model, graph, dataset, metric, batch_size, progress)
    elif method == "eap-ig":
        s = eap_ig_scores(model, graph, dataset, steps, metric, batch_size, progress)
    else:
        s = exact_scores(model, graph, dataset, metric, batch_size=batch_size, progress=progress)
    graph.scores = s
    graph.meta["method"] = method if method != "eap-ig" else f"eap-ig (steps={steps})"
    graph.meta["task"] = dataset.name
    return s


def node_attribution(model: Any, graph: Graph, dataset: TaskDataset,
                     metric: Metric | None = None, batch_size: int = 16) -> Float[Tensor, " sender"]:
    """Node-level attribution patching: ``score(s) = Σ_{b,t} Δ_s · ∂M/∂out_s`` for every sender
    (embed, heads, MLPs), the coarse view before edges.

    Because the residual stream is a sum, ``∂M/∂out_s = Σ_{r after s} ∂M/∂in_r``, so this equals
    the row sums of the EAP edge scores (tested). Returns FloatTensor[n_forward].
    """
    _check_common(model, graph, dataset, batch_size, metric)
    dev = model_device(model)
    N = len(dataset)
    out = torch.zeros(graph.n_forward, device=dev)
    for b in batches(N, batch_size):
        sub = dataset.subset(b)
        clean_tok = sub.clean_tokens.to(dev)
        corr = sender_activations(model, graph, sub.corrupted_tokens.to(dev))
        held: list[tuple[slice, bool, Tensor]] = []
        hooks = []
        for h in graph.sender_hooks():
            def hook(x: Tensor, hook: Any, sl: slice = h.index, per_head: bool = h.per_head) -> Tensor:
                held.append((sl, per_head, x))
                return x
            hooks.append((h.name, hook))
        with torch.enable_grad():
            logits = stacked_forward(model, clean_tok, 1, hooks, grad=True)
            value = _scalar_metric(metric, sub, 1, len(sub) / N)(logits)
            grads = torch.autograd.grad(value, [x for _, _, x in held], allow_unused=True)
        for (sl, per_head, x), g in zip(held, grads):
            if g is None:
                continue
            as_nd = (lambda t: t) if per_head else (lambda t: t.unsqueeze(2))
            d = corr[:, :, sl] - as_nd(x.detach()).float()
            out[sl] += (d * as_nd(g).float()).sum(dim=(0, 1, 3))
    return out.cpu()
