"""Attribution graphs over transcoder features (Ameisen et al. 2025, "Circuit Tracing: Revealing
Computational Graphs in Language Models"; the definitions of ``circuit-tracer``).

On one prompt, freeze every attention pattern and every LayerNorm denominator ``sigma`` at its
value on that prompt, and replace each MLP by its transcoder plus an error node fixed at its
value (:mod:`~tutorial_utils.features.replacement`). The residual stream is then a *linear*
function of what is written into it, plus constants, so every target's input is a sum of
direct effects of the sources:

* **nodes**: active transcoder features ``(layer, pos, feature)`` (value: the activation
  ``a``), error nodes ``(layer, pos)`` (value: ``mlp(x) - T(x)``), token embeddings (one per
  position: ``W_E[t]``), and logit nodes (value: the *demeaned* logit ``l_v - mean_u l_u`` of a
  token at the last position, or ``w . (l - mean(l))`` for a named direction ``w``);
* **edge** ``s -> t``: the direct effect of source ``s`` on target ``t``'s input through the
  residual stream and the frozen attention (OV circuits), *not* through any MLP (MLPs are nodes):

      A[t, s] = (a_s W_dec,s) . J_{t <- s},      J = the frozen linear map from the residual
                                                   stream after s's layer to t's input,

  where t's input is the pre-activation ``W_enc,t . ln2(x_mid) + b_enc,t`` of a feature, or the
  logit value; ``J`` is the product of ``(I + frozen attention)`` maps and the frozen
  normalisation ``C(g * .) / sigma`` (``C`` the centring). Sources are embeddings, features of
  earlier layers and error nodes of earlier layers.
* **completeness**: each target's input equals the sum of its incoming edges plus its
  constant terms, the input when every source is switched off (embeddings zero, features zero,
  errors zero; position embeddings, biases, ``b_dec``, ``b_enc`` and LayerNorm offsets remain).
  :func:`completeness_residual` checks it against an independent frozen forward.

Edges are computed by propagating each target's read vector backwards through the frozen
attention layers (a transposed, batched pass), then taking dot products with the sources'
decoder vectors; position embeddings and biases are constants, not nodes (as in circuit-tracer,
which has no bias nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..names import mlp_name
from ..tasks.base import TaskDataset
from .replacement import ReplacementModel
from .unfolded import FrozenState

__all__ = ["AttributionGraph", "build_graph", "completeness_residual", "edge_through_heads",
           "task_direction",
           "frozen_constants"]


@dataclass
class AttributionGraph:
    """Nodes in the order features, errors, embeddings, logits; ``adjacency[t, s]`` is the
    edge from source ``s`` to target ``t`` (only features and logits have incoming edges).

    ``features [n_f, 3]`` (layer, pos, feature), ``activations [n_f]``, ``errors [n_e, 2]``
    (layer, pos), ``error_vectors [n_e, d]``, ``tokens [T]``, ``logit_weights [n_l, V]`` (one-hot
    rows for token logits), ``logit_names``, ``logit_probs [n_l]`` (NaN for a named direction),
    ``inputs [n_nodes]`` (a target's input: pre-activation or logit value; NaN for sources),
    ``constants [n_nodes]`` (the input with every source off)."""

    tokens: Tensor
    token_strs: list[str]
    features: Tensor
    activations: Tensor
    errors: Tensor
    error_vectors: Tensor
    logit_weights: Tensor
    logit_names: list[str]
    logit_probs: Tensor
    adjacency: Tensor
    inputs: Tensor
    constants: Tensor
    n_layers: int
    frozen: FrozenState = field(repr=False)
    error_tensor: Tensor = field(repr=False)
    logits: Tensor = field(repr=False)

    @property
    def n_features(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_errors(self) -> int:
        return int(self.errors.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_logits(self) -> int:
        return int(self.logit_weights.shape[0])

    @property
    def n_nodes(self) -> int:
        return self.n_features + self.n_errors + self.n_tokens + self.n_logits

    def slices(self) -> dict[str, slice]:
        """Index ranges of the node kinds."""
        a = self.n_features
        b = a + self.n_errors
        c = b + self.n_tokens
        return {"feature": slice(0, a), "error": slice(a, b), "embed": slice(b, c),
                "logit": slice(c, c + self.n_logits)}

    def node_kind(self, i: int) -> str:
        for kind, sl in self.slices().items():
            if sl.start <= i < sl.stop:
                return kind
        raise TutorialError(f"node index {i} out of range (the graph has {self.n_nodes} nodes)")

    def node_layer(self) -> Int[Tensor, "nodes"]:
        """Each node's layer: embeddings -1, features/errors their layer, logits n_layers."""
        s = self.slices()
        out = torch.empty(self.n_nodes, dtype=torch.long)
        out[s["feature"]] = self.features[:, 0]
        out[s["error"]] = self.errors[:, 0]
        out[s["embed"]] = -1
        out[s["logit"]] = self.n_layers
        return out

    def node_pos(self) -> Int[Tensor, "nodes"]:
        """Each node's position (logits: the last position)."""
        s = self.slices()
        out = torch.empty(self.n_nodes, dtype=torch.long)
        out[s["feature"]] = self.features[:, 1]
        out[s["error"]] = self.errors[:, 1]
        out[s["embed"]] = torch.arange(self.n_tokens)
        out[s["logit"]] = self.n_tokens - 1
        return out

    def node_name(self, i: int) -> str:
        """``m2[7].f311`` (feature 311 of layer 2's transcoder at position 7), ``err m2[7]``,
        ``emb[7] ' 17'``, ``logit ' 42'``."""
        kind = self.node_kind(i)
        j = i - self.slices()[kind].start
        if kind == "feature":
            l, p, f = self.features[j].tolist()
            return f"{mlp_name(l)}[{p}].f{f}"
        if kind == "error":
            l, p = self.errors[j].tolist()
            return f"err {mlp_name(l)}[{p}]"
        if kind == "embed":
            return f"emb[{j}] {self.token_strs[j]!r}"
        return f"logit {self.logit_names[j]}"

    def node_index(self, name: str) -> int:
        """The index of the node called ``name`` (see :meth:`node_name`)."""
        for i in range(self.n_nodes):
            if self.node_name(i) == name:
                return i
        raise TutorialError(f"no node named {name!r} in this graph")

    def feature_index(self, layer: int, pos: int, feature: int) -> int:
        """Node index of an active feature, or a TutorialError if it is not active."""
        hit = ((self.features[:, 0] == layer) & (self.features[:, 1] == pos)
               & (self.features[:, 2] == feature)).nonzero()
        if hit.numel() == 0:
            raise TutorialError(f"feature m{layer}[{pos}].f{feature} is not active on this "
                                "prompt, so it is not a node of the graph")
        return int(hit[0, 0])


def _check_replacement(rm: ReplacementModel) -> None:
    L = rm.lm.w.n_layers
    if rm.layers != list(range(L)):
        raise TutorialError(f"an attribution graph needs a transcoder at every layer (0..{L - 1});"
                            f" this replacement model has {rm.layers}")


def _ov(rm: ReplacementModel, layer: int) -> Tensor:
    """``[H, d, d]``: ``diag(g1) W_V,h W_O,h`` (row vectors: ``u @ OV_h``)."""
    w = rm.lm.w
    return w.ln1_w[layer][None, :, None] * torch.einsum("hde,hef->hdf", w.W_V[layer], w.W_O[layer])


def _attn_transpose(G: Tensor, pattern: Tensor, sigma: Tensor, ov: Tensor,
                    heads: Tensor | None = None) -> Tensor:
    """The transpose of the frozen attention map ``x -> sum_{h,k} A[h,q,k] C(x_k)/s_k @ OV_h``
    applied to read vectors ``G [N, T, d]`` (``heads``: a 0/1 mask ``[H]`` of the heads kept)."""
    if heads is not None:
        ov = ov * heads[:, None, None]
    go = torch.einsum("nqd,hed->nqhe", G, ov)
    back = torch.einsum("hqk,nqhe->nke", pattern, go)
    back = back - back.mean(-1, keepdim=True)
    return back / sigma[None]


def _read_back(rm: ReplacementModel, frozen: FrozenState, reads: Tensor, layer: int,
               head_mask: Tensor | None = None) -> dict[int, Tensor]:
    """Read vectors ``[N, T, d]`` at ``resid_mid`` of ``layer`` (``layer == n_layers``: at the
    final residual stream) -> the same reads at ``resid_pre`` of every layer ``m <= layer``
    (direct paths only: MLPs are skipped)."""
    out: dict[int, Tensor] = {}
    G = reads
    if layer == rm.lm.w.n_layers:
        out[layer] = G
        start = layer - 1
    else:
        start = layer
    for m in range(start, -1, -1):
        G = G + _attn_transpose(G, frozen.patterns[m, 0], frozen.ln1_sigma[m, 0], _ov(rm, m),
                                None if head_mask is None else head_mask[m])
        out[m] = G
    return out


@torch.no_grad()
def frozen_constants(rm: ReplacementModel, tokens: Int[Tensor, "pos"], frozen: FrozenState,
                     features: Int[Tensor, "features 3"],
                     logit_weights: Float[Tensor, "logits vocab"]
                     ) -> tuple[Float[Tensor, "features"], Float[Tensor, "logits"]]:
    """Targets' inputs with every source off (embeddings, features, errors zero), by a frozen
    forward: ``(feature pre-activations [n_f], logit values [n_l])``."""
    L, T = rm.lm.w.n_layers, tokens.shape[0]
    toks = tokens[None]
    W_E = rm.lm.w.W_E

    def no_embed(layer: int, x: Tensor) -> Tensor:
        return x - W_E[toks] if layer == 0 else x

    zeros = torch.zeros(L, 1, T, rm.lm.w.d_model)
    ln2 = {}

    def mlp(layer: int, m_in: Tensor, m_out: Tensor) -> Tensor:
        ln2[layer] = m_in
        return rm.transcoders[layer].b_dec.expand_as(m_out) + zeros[layer]

    res = rm.lm.run(toks, resid_edit=no_embed, mlp_override=mlp, frozen=frozen)
    pre = torch.stack([
        rm.transcoders[int(l)].pre_activations(ln2[int(l)][0, int(p)])[int(f)]
        for l, p, f in features.tolist()]) if features.shape[0] else torch.zeros(0)
    lg = res.logits[0, -1]
    return pre, logit_weights @ (lg - lg.mean())


@torch.no_grad()
def build_graph(rm: ReplacementModel, tokens: Int[Tensor, "pos"], *,
                max_logits: int = 10, logit_prob: float = 0.95,
                directions: Mapping[str, Float[Tensor, "vocab"]] | None = None,
                max_features: int = 4000) -> AttributionGraph:
    """The attribution graph of one prompt (module docstring).

    Args:
        rm: a replacement model with a transcoder at every layer.
        tokens: the prompt ``[T]`` (BOS included); targets read the last position.
        max_logits, logit_prob: logit nodes are the most likely next tokens, until their
            probabilities sum to ``logit_prob`` or there are ``max_logits`` of them
            (circuit-tracer's defaults).
        directions: extra logit-like targets, ``name -> w [V]`` (value ``w . demeaned
            logits``), e.g. a task's "correct minus wrong" direction.
        max_features: refuse prompts with more active features (the graph is dense
            ``n_nodes x n_nodes``).
    """
    _check_replacement(rm)
    if not isinstance(tokens, Tensor) or tokens.ndim != 1:
        raise TutorialError(f"build_graph: tokens must be one prompt, a LongTensor [pos], got "
                            f"{tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens)}")
    toks = rm.lm.check_tokens(tokens[None])
    w = rm.lm.w
    L, T, d, V = w.n_layers, toks.shape[1], w.d_model, w.d_vocab
    res, feats, errs = rm.run(toks, errors=True, record_frozen=True, keep_features=True,
                              capture=tuple(f"ln2_out.{l}" for l in range(L)))
    frozen = res.frozen
    logits = res.logits[0, -1]
    # --- nodes ------------------------------------------------------------------------------
    rows = [torch.cat([torch.full((idx.shape[0], 1), l), idx], 1)
            for l in range(L) for idx in [feats[l][0].nonzero()]]
    features = torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.long)
    if features.shape[0] > max_features:
        raise TutorialError(f"build_graph: {features.shape[0]} active features exceed "
                            f"max_features={max_features}; use sparser transcoders or a shorter "
                            "prompt, or raise max_features")
    acts = torch.stack([feats[int(l)][0, int(p), int(f)] for l, p, f in features.tolist()]) \
        if features.shape[0] else torch.zeros(0)
    errors = torch.tensor([[l, p] for l in range(L) for p in range(T)], dtype=torch.long)
    error_tensor = torch.stack([errs[l] for l in range(L)])          # [L, 1, T, d]
    error_vectors = error_tensor[:, 0].reshape(L * T, d)
    probs = logits.softmax(-1)
    order = probs.argsort(descending=True)
    n_top = int((probs[order].cumsum(0) < logit_prob).sum()) + 1
    top = order[:min(max_logits, n_top)]
    names = [repr(rm.lm.tokenizer.decode([int(t)])) if rm.lm.tokenizer is not None else str(int(t))
             for t in top]
    lw = torch.zeros(top.shape[0], V)
    lw[torch.arange(top.shape[0]), top] = 1.0
    lp = probs[top].clone()
    for name, vec in (directions or {}).items():
        if not isinstance(vec, Tensor) or vec.shape != (V,):
            raise TutorialError(f"directions[{name!r}] must be a tensor [{V}] over the vocabulary")
        lw = torch.cat([lw, vec.float()[None]])
        names.append(name)
        lp = torch.cat([lp, torch.tensor([float("nan")])])
    n_f, n_e, n_l = features.shape[0], errors.shape[0], lw.shape[0]
    n_nodes = n_f + n_e + T + n_l
    off_e, off_t, off_l = n_f, n_f + n_e, n_f + n_e + T
    A = torch.zeros(n_nodes, n_nodes)
    inputs = torch.full((n_nodes,), float("nan"))
    # --- sources: vectors written into resid_pre of layer (source layer + 1) ------------------
    src_vec: dict[int, list[tuple[Tensor, Tensor, Tensor]]] = {}   # layer -> (node ids, pos, vec)
    for l in range(L):
        sel = (features[:, 0] == l).nonzero()[:, 0]
        vec = acts[sel, None] * rm.transcoders[l].W_dec.T[features[sel, 2]]
        src_vec[l + 1] = [(sel, features[sel, 1], vec),
                          (off_e + l * T + torch.arange(T), torch.arange(T), error_tensor[l, 0])]
    src_vec[0] = [(off_t + torch.arange(T), torch.arange(T), w.W_E[toks[0]])]
    # --- targets, by the layer they read ------------------------------------------------------
    groups: list[tuple[int, Tensor, Tensor]] = []   # (layer, node ids, reads [N, T, d])
    for l in range(L):
        sel = (features[:, 0] == l).nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        tc = rm.transcoders[l]
        enc = tc.W_enc[features[sel, 2]] * w.ln2_w[l]                   # [N, d]
        enc = enc - enc.mean(-1, keepdim=True)
        reads = torch.zeros(sel.numel(), T, d)
        pos = features[sel, 1]
        reads[torch.arange(sel.numel()), pos] = enc / frozen.ln2_sigma[l, 0, pos]
        groups.append((l, sel, reads))
        m_in = res.cache[f"ln2_out.{l}"][0]
        inputs[sel] = torch.stack([tc.pre_activations(m_in[int(p)])[int(f)]
                                   for p, f in features[sel, 1:].tolist()])
    lw_dm = lw - lw.mean(-1, keepdim=True)            # w . (l - mean l) = (w - mean w) . l
    u = (w.W_U @ lw_dm.T).T * w.lnf_w                                   # [n_l, d]
    u = u - u.mean(-1, keepdim=True)
    reads = torch.zeros(n_l, T, d)
    reads[:, T - 1] = u / frozen.lnf_sigma[0, T - 1]
    groups.append((L, off_l + torch.arange(n_l), reads))
    inputs[off_l:] = lw @ (logits - logits.mean())
    for layer, ids, reads in groups:
        back = _read_back(rm, frozen, reads, layer)
        for m, G in back.items():
            for src_ids, src_pos, vec in src_vec.get(m, []):
                if src_ids.numel() == 0:
                    continue
                for p in src_pos.unique().tolist():
                    at = src_pos == p
                    A[ids[:, None], src_ids[at][None, :]] = G[:, p] @ vec[at].T
    const = torch.full((n_nodes,), float("nan"))
    c_f, c_l = frozen_constants(rm, toks[0], frozen, features, lw)
    const[:n_f], const[off_l:] = c_f, c_l
    tok_strs = [rm.lm.tokenizer.decode([int(t)]) if rm.lm.tokenizer is not None else str(int(t))
                for t in toks[0]]
    return AttributionGraph(tokens=toks[0], token_strs=tok_strs, features=features,
                            activations=acts, errors=errors, error_vectors=error_vectors,
                            logit_weights=lw, logit_names=names, logit_probs=lp, adjacency=A,
                            inputs=inputs, constants=const, n_layers=L, frozen=frozen,
                            error_tensor=error_tensor, logits=res.logits[0])


def completeness_residual(graph: AttributionGraph) -> Float[Tensor, "targets"]:
    """For every target (features, then logits): ``input - (sum of incoming edges +
    constant)``. Zero up to float rounding when the graph is complete."""
    s = graph.slices()
    idx = torch.cat([torch.arange(s["feature"].start, s["feature"].stop),
                     torch.arange(s["logit"].start, s["logit"].stop)])
    return graph.inputs[idx] - (graph.adjacency[idx].sum(1) + graph.constants[idx])


def describe(graph: AttributionGraph) -> dict[str, Any]:
    """Sizes: nodes of each kind, nonzero edges, active features per layer."""
    per_layer = [int((graph.features[:, 0] == l).sum()) for l in range(graph.n_layers)]
    return {"features": graph.n_features, "errors": graph.n_errors, "tokens": graph.n_tokens,
            "logits": graph.n_logits, "edges": int((graph.adjacency != 0).sum()),
            "features_per_layer": per_layer}


def _target_read(rm: ReplacementModel, graph: AttributionGraph, target: int) -> tuple[Tensor, int]:
    """The read vector ``[1, T, d]`` of one target node and the layer it reads."""
    w, fz, T = rm.lm.w, graph.frozen, graph.n_tokens
    kind = graph.node_kind(target)
    reads = torch.zeros(1, T, w.d_model)
    if kind == "feature":
        l, p, f = graph.features[target].tolist()
        enc = rm.transcoders[l].W_enc[f] * w.ln2_w[l]
        reads[0, p] = (enc - enc.mean()) / fz.ln2_sigma[l, 0, p]
        return reads, l
    if kind != "logit":
        raise TutorialError(f"node {graph.node_name(target)} is a source: it has no incoming edges")
    lw = graph.logit_weights[target - graph.slices()["logit"].start]
    u = (w.W_U @ (lw - lw.mean())) * w.lnf_w
    reads[0, T - 1] = (u - u.mean()) / fz.lnf_sigma[0, T - 1]
    return reads, w.n_layers


@torch.no_grad()
def edge_through_heads(rm: ReplacementModel, graph: AttributionGraph, target: int,
                       source: int) -> Float[Tensor, "layers heads"]:
    """How much of edge ``source -> target`` passes through each attention head: the edge minus
    the edge recomputed with that head's OV circuit removed from the frozen map (paths through
    two heads count for both; the residual path, through no head, for none)."""
    reads, layer = _target_read(rm, graph, target)
    kind = graph.node_kind(source)
    T = graph.n_tokens
    if kind == "feature":
        l, p, f = graph.features[source].tolist()
        vec, m = graph.activations[source] * rm.transcoders[l].W_dec[:, f], l + 1
    elif kind == "error":
        l, p = graph.errors[source - graph.slices()["error"].start].tolist()
        vec, m = graph.error_tensor[l, 0, p], l + 1
    elif kind == "embed":
        p = source - graph.slices()["embed"].start
        vec, m = rm.lm.w.W_E[graph.tokens[p]], 0
    else:
        raise TutorialError(f"node {graph.node_name(source)} is a logit: it has no outgoing edges")
    if m > layer:
        return torch.zeros(rm.lm.w.n_layers, rm.lm.w.n_heads)

    def edge(mask: Tensor | None) -> float:
        return float(_read_back(rm, graph.frozen, reads, layer, mask)[m][0, p] @ vec)
    L, H = rm.lm.w.n_layers, rm.lm.w.n_heads
    full = edge(None)
    out = torch.zeros(L, H)
    for l in range(L):
        for h in range(H):
            mask = torch.ones(L, H)
            mask[l, h] = 0.0
            out[l, h] = full - edge(mask)
    return out


def task_direction(dataset: TaskDataset, example: int, d_vocab: int) -> Float[Tensor, "vocab"]:
    """Example ``example``'s task as a logit direction ``w`` for :func:`build_graph`'s
    ``directions``: ``+1/#right`` on its right answers (``candidate_sign > 0``: the years above
    the start year, the verb that agrees) and ``-1/#wrong`` on the wrong ones, so ``w . l`` is
    the mean logit of the right answers minus that of the wrong ones (the logit-space analogue of
    the task's probability difference)."""
    if not isinstance(dataset, TaskDataset):
        raise TutorialError("task_direction needs a TaskDataset (tutorial_utils.tasks.make_task)")
    if isinstance(example, bool) or not isinstance(example, int) or not 0 <= example < len(dataset):
        raise TutorialError(f"example must be an integer in [0, {len(dataset)}), got {example!r}")
    sign = dataset.candidate_sign[example].float()
    right, wrong = sign > 0, sign < 0
    if not right.any() or not wrong.any():
        raise TutorialError(f"example {example} of {dataset.name!r} needs right and wrong "
                            "candidates (candidate_sign +1 and -1)")
    w = torch.where(right, 1.0 / right.sum(), torch.where(wrong, -1.0 / wrong.sum(), 0.0))
    return torch.zeros(d_vocab).index_add_(0, dataset.candidate_ids[example], w)
