"""Edge and path patching through the linearity of the residual stream.

The residual stream entering any component is a sum of the outputs of the components before it:

    resid = embed + pos_embed + sum_{l' < l} (sum_h result_{l',h} + b_O + mlp_out_{l'})

(Elhage et al. 2021). So the input a *receiver* reads can be split into one term per *sender*,
and the edge sender -> receiver can be patched alone: subtract the sender's current output from
the receiver's input and add its output from the source run, leaving every other path clean:

    input_R <- input_R - sum_{S : (S, R) patched} (out_S(current run) - out_S(source run)).

Nodes (senders): ``"embed"`` (token + position embedding), ``"aL.hH"`` (a head's output, the
per-head ``hook_result``), ``"mL"`` (an MLP's output).
Receiver inputs: ``"aL.hH.q"``, ``"aL.hH.k"``, ``"aL.hH.v"`` (a head's query/key/value input,
``hook_q_input``... which the model feeds through ``ln1`` per head), ``"mL"`` (the MLP input,
``hook_mlp_in``), ``"logits"`` (the residual stream entering ``ln_final``).
An edge is a pair ``(sender, receiver_input)``, e.g. ``("a0.h3", "a2.h1.v")``.

Patching the edges of a *set* uses each sender's output in the current (patched) run, so
patching every edge out of a node equals patching that node's output, and patching every edge of
the graph from the corrupted run gives the corrupted run (tests/test_path_patching.py). This is
the edge-level interchange intervention of ACDC / EAP (Conmy et al. 2023; Syed et al. 2023) and
the path patching of Goldowsky-Dill et al. (2023) and Wang et al. (2023): path patching a sender
through a set of receivers patches the edges sender -> receiver, and lets the receivers' changed
outputs flow to the logits along every path. (Wang et al. also let MLPs recompute in their
frozen-heads run; here every other edge is held at its base value.)

Models need ``load_model(..., hooks=True)`` (per-head results, split q/k/v inputs, MLP input).

Public API
----------
``Graph(model)`` -- the nodes, receiver inputs and valid edges of a model (``graph.edges``).
``edge_patching(model, data, variants, *, source="corrupted", direction="noise", ...)`` -- the
    engine: the metric with each variant's set of edges patched, batched along the batch.
``edge_patching_sweep(model, data, edges=None, ...)`` -- every single edge patched alone.
``path_patching(model, data, senders, receivers, ...)`` -- each sender patched along its edges to
    ``receivers`` (``["logits"]``: the sender's direct effect).
``iterative_path_patching(model, data, threshold=..., ...)`` -- walk back from the logits,
    keeping the edges whose patching moves the metric by more than ``threshold`` (a fraction of
    clean - corrupted), then looking at what feeds the nodes found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Sequence

import torch
from torch import Tensor

from .hooks import check_hook_names
from .patching import MetricFn, get_activations, make_metric, unpack_data, default_batch_rows

Edge = tuple[str, str]
EdgeSource = Literal["corrupted", "mean", "zero"]


@dataclass
class Graph:
    """Index of a model's nodes, receiver inputs and edges.

    Sender index: ``embed`` = 0; head ``(l, h)`` = ``1 + l*(H+1) + h``; MLP ``l`` = ``1 + l*(H+1) + H``.
    Receiver index: head input ``(l, qkv, h)`` = ``l*(3H+1) + qkv*H + h``; MLP ``l`` =
    ``l*(3H+1) + 3H``; ``logits`` = ``L*(3H+1)``.
    """

    n_layers: int
    n_heads: int
    senders: list[str] = field(init=False)
    receivers: list[str] = field(init=False)
    sender_index: dict[str, int] = field(init=False, repr=False)
    receiver_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        L, H = self.n_layers, self.n_heads
        self.senders = ["embed"]
        self.receivers = []
        for l in range(L):
            self.senders += [f"a{l}.h{h}" for h in range(H)] + [f"m{l}"]
            self.receivers += [f"a{l}.h{h}.{x}" for x in "qkv" for h in range(H)] + [f"m{l}"]
        self.receivers.append("logits")
        self.sender_index = {s: i for i, s in enumerate(self.senders)}
        self.receiver_index = {r: i for i, r in enumerate(self.receivers)}

    @classmethod
    def from_model(cls, model: Any) -> "Graph":
        return cls(model.cfg.n_layers, model.cfg.n_heads)

    # position of a node in the forward order: embed < a_l < m_l < a_{l+1} ... < logits
    def _sender_order(self, s: str) -> float:
        if s == "embed":
            return -1.0
        if m := re.fullmatch(r"a(\d+)\.h\d+", s):
            return int(m[1])
        return int(s[1:]) + 0.5

    def _receiver_order(self, r: str) -> float:
        if r == "logits":
            return float(self.n_layers)
        if r.startswith("a"):
            return float(r.split(".")[0][1:])
        return int(r[1:]) + 0.5

    def is_edge(self, sender: str, receiver: str) -> bool:
        """True when ``sender`` writes to the residual stream before ``receiver`` reads it."""
        return (sender in self.sender_index and receiver in self.receiver_index
                and self._sender_order(sender) < self._receiver_order(receiver))

    @property
    def edges(self) -> list[Edge]:
        """Every edge of the model (sender upstream of receiver), in index order."""
        return [(s, r) for r in self.receivers for s in self.senders if self.is_edge(s, r)]

    def check_edges(self, edges: Iterable[Edge]) -> list[Edge]:
        out = []
        for e in edges:
            if not (isinstance(e, tuple) and len(e) == 2):
                raise ValueError(f"an edge is a pair (sender, receiver_input), got {e!r}")
            s, r = e
            if s not in self.sender_index:
                raise ValueError(f"unknown sender {s!r}: use 'embed', 'aL.hH' or 'mL' "
                                 f"(L < {self.n_layers}, H < {self.n_heads})")
            if r not in self.receiver_index:
                raise ValueError(f"unknown receiver input {r!r}: use 'aL.hH.q|k|v', 'mL' or 'logits'")
            if not self.is_edge(s, r):
                raise ValueError(f"{s} -> {r} is not an edge: {s} does not write before {r} reads")
            out.append((s, r))
        return out

    def receiver_inputs(self, node: str) -> list[str]:
        """The inputs of a node: ``aL.hH`` -> its q, k, v; ``mL`` -> itself; ``logits``."""
        if node == "logits" or re.fullmatch(r"m\d+", node):
            return [node]
        if re.fullmatch(r"a\d+\.h\d+", node):
            return [f"{node}.{x}" for x in "qkv"]
        raise ValueError(f"{node!r} has no inputs to patch (embed is a source only)")

    def receiver_node(self, receiver: str) -> str:
        """``aL.hH.q`` -> ``aL.hH``; ``mL`` and ``logits`` map to themselves."""
        return receiver.rsplit(".", 1)[0] if receiver.startswith("a") else receiver


def _hook_names(model: Any) -> dict[str, str]:
    L = model.cfg.n_layers
    names = {"embed": "blocks.0.hook_resid_pre", "logits": f"blocks.{L - 1}.hook_resid_post"}
    for l in range(L):
        names[f"result{l}"] = f"blocks.{l}.attn.hook_result"
        names[f"mlp_out{l}"] = f"blocks.{l}.hook_mlp_out"
        names[f"mlp_in{l}"] = f"blocks.{l}.hook_mlp_in"
        for x in "qkv":
            names[f"{x}{l}"] = f"blocks.{l}.hook_{x}_input"
    return names


def _sender_acts(model: Any, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Sender outputs of a run: ``embed [B, T, d]`` and per layer ``[L, B, T, H+1, d]``
    (heads' results then the MLP output)."""
    L = model.cfg.n_layers
    hn = _hook_names(model)
    names = [hn["embed"]] + [hn[f"result{l}"] for l in range(L)] + [hn[f"mlp_out{l}"] for l in range(L)]
    logits, acts = get_activations(model, tokens, names)
    per_layer = torch.stack([
        torch.cat([acts[hn[f"result{l}"]], acts[hn[f"mlp_out{l}"]].unsqueeze(2)], dim=2)
        for l in range(L)])
    return acts[hn["embed"]], per_layer, logits


def _edge_sources(model: Any, base: Tensor, corrupted: Tensor, source: EdgeSource,
                  reference_tokens: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    emb_b, lay_b, logits_b = _sender_acts(model, base)
    if source == "corrupted":
        emb_s, lay_s, logits_s = _sender_acts(model, corrupted)
    elif source == "mean":
        if reference_tokens is None:
            reference_tokens = corrupted
        if reference_tokens.shape[1] != base.shape[1]:
            raise ValueError("reference_tokens must have the base prompts' length (per-position mean)")
        emb_r, lay_r, _ = _sender_acts(model, reference_tokens)
        emb_s, lay_s = emb_r.mean(0, keepdim=True), lay_r.mean(1, keepdim=True)
        logits_s = None
    elif source == "zero":
        emb_s, lay_s, logits_s = torch.zeros_like(emb_b[:1]), torch.zeros_like(lay_b[:, :1]), None
    else:
        raise ValueError(f"source must be 'corrupted', 'mean' or 'zero', got {source!r}")
    return emb_s, lay_s, logits_b, logits_s


def edge_patching(
    model: Any,
    data: Any,
    variants: Sequence[Iterable[Edge]],
    *,
    source: EdgeSource = "corrupted",
    direction: Literal["noise", "denoise"] = "noise",
    metric: MetricFn | None = None,
    per_example: bool = False,
    reference_tokens: Tensor | None = None,
    batch_rows: int | None = None,
    progress: bool = False,
) -> Tensor:
    """The metric with each variant's edges patched together: ``[n_variants]`` (``[n, B]``).

    For every patched edge ``(S, R)`` the receiver input becomes
    ``input_R - (out_S(current) - out_S(source))``; ``source`` is the corrupted run (an edge
    interchange; with ``direction="denoise"`` the base is the corrupted run and the source the
    clean one), the per-position mean over ``reference_tokens`` (default the corrupted prompts),
    or zero. All variants are stacked along the batch (``batch_rows`` rows per forward).
    """
    from tqdm.auto import tqdm

    g = Graph.from_model(model)
    variants = [g.check_edges(list(v)) for v in variants]
    if direction not in ("noise", "denoise"):
        raise ValueError(f"direction must be 'noise' or 'denoise', got {direction!r}")
    clean, corr = unpack_data(data)
    base, other = (clean, corr) if direction == "noise" else (corr, clean)
    hn = _hook_names(model)
    check_hook_names(model, list(hn.values()))
    metric_fn = make_metric(data, metric, per_example)
    emb_s, lay_s, _, _ = _edge_sources(model, base, other, source, reference_tokens)
    L, H = g.n_layers, g.n_heads
    S, R = len(g.senders), len(g.receivers)
    B, T = base.shape
    rows = batch_rows or default_batch_rows(T, model.cfg.d_vocab)
    n_per = max(1, rows // B)
    dev = model.cfg.device
    emb_s, lay_s = emb_s.to(dev), lay_s.to(dev)
    base = base.to(dev)
    out: list[Tensor] = []
    with torch.no_grad():
        for start in tqdm(range(0, len(variants), n_per), desc="edge patching", disable=not progress):
            chunk = variants[start:start + n_per]
            n = len(chunk)
            C = torch.zeros(n, S, R, device=dev)
            for i, v in enumerate(chunk):
                for s, r in v:
                    C[i, g.sender_index[s], g.receiver_index[r]] = 1.0
            out.append(_run_edge_chunk(model, base, C, emb_s, lay_s, metric_fn, hn, L, H))
    return torch.cat(out) if out else torch.zeros(0)


def _run_edge_chunk(model: Any, base: Tensor, C: Tensor, emb_s: Tensor, lay_s: Tensor,
                    metric_fn: Callable, hn: dict[str, str], L: int, H: int) -> Tensor:
    """One stacked forward of ``n`` edge-patching variants with coefficient tensor ``C [n, S, R]``."""
    n = C.shape[0]
    B, T = base.shape
    # per sender layer: current minus source, [n, B, T, H+1, d]; embed: [n?, B, T, d]
    deltas: dict[int, Tensor] = {}
    emb_delta: list[Tensor] = []
    hooks = []

    def s_idx(l: int) -> slice:
        return slice(1 + l * (H + 1), 1 + (l + 1) * (H + 1))

    def grab_embed(act: Tensor, hook: Any = None) -> Tensor:
        emb_delta.append(act.view(n, B, T, -1) - emb_s.unsqueeze(0))
        return act

    def make_grab_result(l: int) -> Callable:
        def hook(act: Tensor, hook: Any = None) -> Tensor:
            cur = act.view(n, B, T, H, -1)
            deltas[l] = cur - lay_s[l, :, :, :H].unsqueeze(0)
            return act
        return hook

    def make_grab_mlp(l: int) -> Callable:
        def hook(act: Tensor, hook: Any = None) -> Tensor:
            cur = act.view(n, B, T, 1, -1)
            deltas[l] = torch.cat([deltas[l], cur - lay_s[l, :, :, H:].unsqueeze(0)], dim=3)
            return act
        return hook

    def correction(r_idx: Tensor, upto_layer: int, with_heads_of: int | None) -> Tensor | None:
        """sum_S C[:, S, r] * delta_S for receivers r_idx ([R'] indices) -> [n, B, T, R', d]."""
        total = None
        c_emb = C[:, 0, r_idx]  # [n, R']
        if bool(c_emb.any()):
            total = torch.einsum("nbtd,nr->nbtrd", emb_delta[0], c_emb)
        for l in range(upto_layer):
            c = C[:, s_idx(l), r_idx]  # [n, H+1, R']
            if bool(c.any()):
                term = torch.einsum("nbtgd,ngr->nbtrd", deltas[l], c)
                total = term if total is None else total + term
        if with_heads_of is not None:
            l = with_heads_of
            c = C[:, 1 + l * (H + 1): 1 + l * (H + 1) + H, r_idx]  # [n, H, R']
            if bool(c.any()):
                term = torch.einsum("nbtgd,ngr->nbtrd", deltas[l][:, :, :, :H], c)
                total = term if total is None else total + term
        return total

    def make_qkv_hook(l: int, x: int) -> Callable:
        r_idx = torch.arange(l * (3 * H + 1) + x * H, l * (3 * H + 1) + (x + 1) * H, device=C.device)

        def hook(act: Tensor, hook: Any = None) -> Tensor:  # [nB, T, H, d]
            corr = correction(r_idx, l, None)
            if corr is None:
                return act
            return act - corr.reshape(act.shape)
        return hook

    def make_mlp_hook(l: int) -> Callable:
        r_idx = torch.tensor([l * (3 * H + 1) + 3 * H], device=C.device)

        def hook(act: Tensor, hook: Any = None) -> Tensor:  # [nB, T, d]
            corr = correction(r_idx, l, l)
            if corr is None:
                return act
            return act - corr.reshape(act.shape)
        return hook

    def logits_hook(act: Tensor, hook: Any = None) -> Tensor:
        corr = correction(torch.tensor([L * (3 * H + 1)], device=C.device), L, None)
        if corr is None:
            return act
        return act - corr.reshape(act.shape)

    hooks.append((hn["embed"], grab_embed))
    for l in range(L):
        for x, name in enumerate("qkv"):
            if bool(C[:, :, l * (3 * H + 1) + x * H: l * (3 * H + 1) + (x + 1) * H].any()):
                hooks.append((hn[f"{name}{l}"], make_qkv_hook(l, x)))
        hooks.append((hn[f"result{l}"], make_grab_result(l)))
        if bool(C[:, :, l * (3 * H + 1) + 3 * H].any()):
            hooks.append((hn[f"mlp_in{l}"], make_mlp_hook(l)))
        hooks.append((hn[f"mlp_out{l}"], make_grab_mlp(l)))
    if bool(C[:, :, L * (3 * H + 1)].any()):
        hooks.append((hn["logits"], logits_hook))
    logits = model.run_with_hooks(base.repeat(n, 1), fwd_hooks=hooks)
    return metric_fn(logits, n).detach().float().cpu()


@dataclass
class EdgeScores:
    """Metric after patching each edge alone, with the unpatched baselines."""

    edges: list[Edge]
    values: Tensor
    metric_clean: float
    metric_corrupted: float
    direction: str = "noise"

    def normalized_effect(self) -> Tensor:
        """Share of the clean - corrupted gap each edge accounts for: for noising,
        ``(clean - value) / (clean - corrupted)``; for denoising ``(value - corrupted) / (...)``."""
        gap = self.metric_clean - self.metric_corrupted
        if abs(gap) < 1e-9:
            return torch.full_like(self.values, float("nan"))
        if self.direction == "noise":
            return (self.metric_clean - self.values) / gap
        return (self.values - self.metric_corrupted) / gap

    def top(self, k: int = 10) -> list[tuple[Edge, float]]:
        eff = self.normalized_effect()
        order = eff.abs().argsort(descending=True)[:k]
        return [(self.edges[i], float(eff[i])) for i in order]


def _baselines(model: Any, data: Any, metric: MetricFn | None) -> tuple[float, float]:
    clean, corr = unpack_data(data)
    f = make_metric(data, metric)
    with torch.no_grad():
        mc = float(f(model(clean.to(model.cfg.device)), 1)[0])
        mk = float(f(model(corr.to(model.cfg.device)), 1)[0])
    return mc, mk


def edge_patching_sweep(model: Any, data: Any, edges: Sequence[Edge] | None = None, *,
                        metric: MetricFn | None = None, direction: Literal["noise", "denoise"] = "noise",
                        **kwargs: Any) -> EdgeScores:
    """Patch every edge in ``edges`` (default: all edges of the model) on its own."""
    g = Graph.from_model(model)
    edges = g.check_edges(edges) if edges is not None else g.edges
    vals = edge_patching(model, data, [[e] for e in edges], metric=metric, direction=direction, **kwargs)
    mc, mk = _baselines(model, data, metric)
    return EdgeScores(list(edges), vals, mc, mk, direction)


def path_patching(model: Any, data: Any, senders: Sequence[str] | None, receivers: Sequence[str],
                  *, metric: MetricFn | None = None, direction: Literal["noise", "denoise"] = "noise",
                  **kwargs: Any) -> EdgeScores:
    """Each sender patched along its edges into ``receivers`` (receiver inputs, e.g.
    ``["logits"]`` or ``["a3.h0.q", "a3.h0.k"]``), everything else held at its base value.

    Returns an :class:`EdgeScores` whose ``edges`` are ``(sender, "+".join(receivers))``.
    Senders not upstream of any receiver are skipped.
    """
    g = Graph.from_model(model)
    for r in receivers:
        if r not in g.receiver_index:
            raise ValueError(f"unknown receiver input {r!r}: use 'aL.hH.q|k|v', 'mL' or 'logits'")
    senders = list(g.senders) if senders is None else list(senders)
    for s in senders:
        if s not in g.sender_index:
            raise ValueError(f"unknown sender {s!r}: use 'embed', 'aL.hH' or 'mL'")
    keep, variants = [], []
    for s in senders:
        v = [(s, r) for r in receivers if g.is_edge(s, r)]
        if v:
            keep.append(s)
            variants.append(v)
    vals = edge_patching(model, data, variants, metric=metric, direction=direction, **kwargs)
    mc, mk = _baselines(model, data, metric)
    label = "+".join(receivers)
    return EdgeScores([(s, label) for s in keep], vals, mc, mk, direction)


@dataclass
class PathPatchingStep:
    """One step of :func:`iterative_path_patching`: the receiver node examined and the score of
    every edge into its inputs."""

    receiver: str
    scores: EdgeScores
    kept: list[tuple[Edge, float]]


def iterative_path_patching(
    model: Any,
    data: Any,
    *,
    threshold: float = 0.1,
    max_nodes: int = 12,
    metric: MetricFn | None = None,
    direction: Literal["noise", "denoise"] = "noise",
    **kwargs: Any,
) -> tuple[list[tuple[Edge, float]], list[PathPatchingStep]]:
    """Walk back from the logits: score every edge into the current node's inputs, keep those
    whose normalised effect ``|effect| >= threshold`` (fraction of clean - corrupted), and
    examine their senders next (breadth first, at most ``max_nodes`` nodes examined).

    Returns ``(edges kept with their normalised effects, the steps)``.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    g = Graph.from_model(model)
    frontier, seen = ["logits"], {"logits"}
    kept_all: list[tuple[Edge, float]] = []
    steps: list[PathPatchingStep] = []
    while frontier and len(steps) < max_nodes:
        node = frontier.pop(0)
        edges = [(s, r) for r in g.receiver_inputs(node) for s in g.senders if g.is_edge(s, r)]
        scores = edge_patching_sweep(model, data, edges, metric=metric, direction=direction, **kwargs)
        eff = scores.normalized_effect()
        kept = [(e, float(x)) for e, x in zip(edges, eff) if abs(float(x)) >= threshold]
        kept.sort(key=lambda t: -abs(t[1]))
        steps.append(PathPatchingStep(node, scores, kept))
        kept_all += kept
        for (s, _), _x in kept:
            if s != "embed" and s not in seen:
                seen.add(s)
                frontier.append(s)
    return kept_all, steps
