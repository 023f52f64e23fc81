"""The computational graph of a decoder: its nodes, their hooks, and its edges.

Every component of a pre-LN transformer *writes* an additive term into the residual stream and
*reads* the sum of everything written before it (Elhage et al. 2021). Taking those writers and
readers as nodes (Conmy et al. 2023, ACDC; Hanna et al. 2024, EAP-IG):

* **senders** (forward nodes, residual writers): ``embed`` (token + position embedding), every
  attention head ``a{l}.h{h}`` and every MLP ``m{l}``;
* **receivers** (backward nodes, residual readers): the query, key and value inputs of every
  head, ``a{l}.h{h}.q``, ``.k``, ``.v``, every MLP input ``m{l}``, and ``logits`` (the input of
  the final LayerNorm and unembedding).

This is the one node vocabulary of the package: patching, path patching, faithfulness, circuit
discovery and the notebooks all use these names. An edge is written ``"a0.h1->a2.h3.q"`` or as
a pair ``("a0.h1", "a2.h3.q")``.

There is an edge from every sender to every receiver later in the forward pass: the heads of
layer ``l`` read ``embed`` and layers ``< l``; MLP ``l`` also reads the heads of its own layer;
``logits`` reads everything. For ``L`` layers of ``H`` heads (GPT-2's order, multi-head attention)

    #nodes = 1 + L*H + L + 1,
    #edges = sum_l 3H (1 + l(H+1))  +  sum_l (1 + l(H+1) + H)  +  (1 + L(H+1)),

so GPT-2 small (L = H = 12) has 158 nodes and 32,491 edges.

The graph follows the model's architecture (:meth:`Graph.from_model` reads it from ``model.cfg``):

* **Parallel attention and MLP** (GPT-NeoX/Pythia, GPT-J: ``use_parallel_residual``,
  ``cfg.parallel_attn_mlp``; ``parallel=True`` here): MLP ``l`` reads the same residual stream as
  attention ``l`` (``hook_mlp_in`` = ``hook_resid_pre``), so it reads only ``embed`` and layers
  ``< l``; there is no edge ``a{l}.h{h} -> m{l}``.
* **Grouped-query attention** (Llama, Qwen2, Mistral, Gemma: ``G = n_key_value_heads < H``;
  ``n_kv_heads=G`` here): the key and value inputs are read once per *key/value head*, shared by
  the ``H/G`` query heads ``h`` with ``h // (H/G) = g`` (the ``repeat_kv`` order of Hugging Face
  and :func:`tutorial_utils.names.kv_head`). So the k and v receivers are **per key/value
  head**: there are ``H`` q receivers but only ``G`` k and ``G`` v receivers per layer. The
  receivers ``a{l}.h{h}.k`` of the query heads sharing key/value head ``g`` are *one* receiver,
  named after the group's first query head, ``a{l}.h{g*H/G}.k`` (likewise ``.v``); every other
  name of the group is accepted as an alias of it (``edge_index("a0.h0->a1.h3.k")`` with ``H=4,
  G=2`` is the edge into ``a1.h2.k``), and :attr:`Graph.receivers` lists only the canonical
  names. Patching the edge ``s -> a{l}.h{g*H/G}.k`` changes the keys of *all* the group's query
  heads, because the model computes them once; a per-query-head key edge does not exist in the
  model. With ``G = H`` (multi-head attention) nothing changes. Counting: each layer has
  ``H + 2G`` head receivers instead of ``3H``.
* **Post-norms** (Gemma 2 and 3 normalise each attention and MLP output before adding it):
  a head's ``hook_result`` is not what it adds to the residual stream and the heads are not
  additive, so :meth:`Graph.from_model` and :meth:`Graph.check_model` refuse such a model
  (:func:`tutorial_utils.model_checks.check_additive_writers`).

Edges are dense tensors ``[n_forward, n_backward]``: ``real_edges`` (which entries are edges),
``in_graph`` (the circuit) and ``scores``. Index layout:

* forward index: ``embed`` = 0, head ``(l, h)`` = ``1 + l*(H+1) + h``, MLP ``l`` = ``1 + l*(H+1) + H``;
* backward index (``G`` key/value heads; ``G = H`` without GQA): query input of head ``(l, h)``
  = ``l*(H+2G+1) + h``, key input of key/value head ``(l, g)`` = ``l*(H+2G+1) + H + g``, its
  value input ``l*(H+2G+1) + H + G + g``, MLP ``l`` = ``l*(H+2G+1) + H + 2G``, ``logits`` =
  ``L*(H+2G+1)``. (For ``G = H`` this is ``l*(3H+1) + c*H + h`` with q=0, k=1, v=2.)

Hooks (TransformerLens 4 bridge, ``load_model(..., hooks=True)``): every node and its hooks come
from :func:`tutorial_utils.names.nodes`, where every hook and node name of the package is
written. Each :class:`~tutorial_utils.names.Node` carries its ``out_hook`` (what a sender
writes: ``blocks.0.hook_resid_pre``, the per-head ``blocks.l.attn.hook_result``,
``blocks.l.hook_mlp_out``) and its ``in_hooks`` (what a receiver reads: the per-head
``blocks.l.hook_{q,k,v}_input``, ``[B, T, G, D]`` for k and v under GQA, ``blocks.l.hook_mlp_in``, and the last block's
``hook_resid_post`` for ``logits``); :meth:`Graph.sender_hooks` and :meth:`Graph.receiver_hooks`
group them per hook for the engine (:mod:`tutorial_utils.interchange`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from .names import QKV, Node, head_name, kv_head, mlp_name, nodes, receiver_name
from .names import n_kv_heads as cfg_kv_heads
from .errors import TutorialError
from .model_checks import check_additive_writers, check_hook_names

__all__ = ["Edge", "Graph", "count_edges", "SenderHook", "ReceiverHook"]

Edge = tuple[str, str]
_EDGE_RE = re.compile(r"^\s*(\S+?)\s*->\s*(\S+?)\s*$")
_FORMAT = "tutorial_utils.Graph/2"


@dataclass(frozen=True)
class SenderHook:
    """One sender hook: its name, the forward-index slice it covers, and whether it is per head."""

    name: str
    index: slice
    per_head: bool


@dataclass(frozen=True)
class ReceiverHook:
    """One receiver hook: its name, backward-index slice, how many senders come before it
    (forward indices ``0 .. n_prior-1`` may send to it), and whether it is per head."""

    name: str
    index: slice
    n_prior: int
    per_head: bool


@dataclass
class Graph:
    """Nodes and edges of an ``n_layers`` x ``n_heads`` decoder, with a circuit mask and scores.

    Attributes:
        n_layers, n_heads: the model's shape.
        in_graph: BoolTensor[n_forward, n_backward], edges in the circuit (subset of
            ``real_edges``); all edges at construction (the full model).
        scores: FloatTensor[n_forward, n_backward], attribution scores (0 off the real edges);
            ``None`` until an attribution method filled them.
        meta: free-form notes saved with the graph (task, method, model name, ...).
    """

    n_layers: int
    n_heads: int
    in_graph: Tensor = field(default=None, repr=False)  # type: ignore[assignment]
    scores: Tensor | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)
    n_kv_heads: int | None = None
    parallel: bool = False

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for what, v in (("n_layers", self.n_layers), ("n_heads", self.n_heads),
                        ("n_kv_heads", self.n_kv_heads)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise TutorialError(f"Graph: {what} must be an integer >= 1, got {v!r}; build "
                                    "the graph with Graph.from_model(model)")
        if self.n_heads % self.n_kv_heads:
            raise TutorialError(f"Graph: n_heads ({self.n_heads}) must be a multiple of "
                                f"n_kv_heads ({self.n_kv_heads}) (grouped-query attention)")
        self.parallel = bool(self.parallel)
        self.real_edges = _real_edges(self.n_layers, self.n_heads, self.n_kv_heads, self.parallel)
        self.nodes = nodes(self.n_layers, self.n_heads)
        self._node_by_name = {n.name: n for n in self.nodes}
        self.senders = self.forward_names
        self.receivers = self.backward_names
        self.sender_index = {s: i for i, s in enumerate(self.senders)}
        self.receiver_index = {r: i for i, r in enumerate(self.receivers)}
        # GQA: every query head's k/v name is an alias of its key/value head's receiver
        rep_ = self.n_heads // self.n_kv_heads
        for l in range(self.n_layers):
            for h in range(self.n_heads):
                for c in ("k", "v"):
                    self.receiver_index.setdefault(
                        receiver_name(l, h, c),
                        self.receiver_index[receiver_name(l, h - h % rep_, c)])
        if self.in_graph is None:
            self.in_graph = self.real_edges.clone()
        else:
            self.in_graph = self.check_mask(self.in_graph, "in_graph")
        if self.scores is not None:
            self.scores = self._check_scores(self.scores)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_model(cls, model: Any) -> "Graph":
        """The full graph of a ``TransformerBridge`` (or anything with ``cfg.n_layers/n_heads``)."""
        cfg = getattr(model, "cfg", None)
        if cfg is None or not hasattr(cfg, "n_layers"):
            raise TutorialError(f"Graph.from_model: expected a TransformerBridge from "
                                f"load_model(), got {type(model).__name__}")
        check_additive_writers(model, "the edge graph (edge and path patching, EAP, circuits)")
        g = cls(int(cfg.n_layers), int(cfg.n_heads), n_kv_heads=cfg_kv_heads(cfg),
                parallel=bool(getattr(cfg, "parallel_attn_mlp", False)))
        g.meta["model"] = getattr(model, "tutorial_model_name", None) or getattr(cfg, "model_name", "")
        return g

    @classmethod
    def from_config(cls, config: Any) -> "Graph":
        """The full graph from a Hugging Face config (``n_layer``/``num_hidden_layers``,
        ``n_head``/``num_attention_heads``, ``num_key_value_heads``, ``use_parallel_residual``)
        or a TransformerLens config (``n_layers``, ``n_heads``, ``n_key_value_heads``,
        ``parallel_attn_mlp``), without building the model."""
        def first(*keys: str) -> Any:
            for k in keys:
                v = getattr(config, k, None)
                if v is not None:
                    return v
            return None
        n_layers = first("n_layers", "n_layer", "num_hidden_layers")
        n_heads = first("n_heads", "n_head", "num_attention_heads")
        if n_layers is None or n_heads is None:
            raise TutorialError("Graph.from_config: config has neither n_layers/n_heads nor "
                                "n_layer/n_head nor num_hidden_layers/num_attention_heads; pass "
                                "a Hugging Face config or model.cfg")
        kv = first("n_key_value_heads", "num_key_value_heads")
        parallel = first("parallel_attn_mlp", "use_parallel_residual")
        if parallel is None:  # GPT-J style configs are parallel without the flag
            parallel = getattr(config, "model_type", "") in ("gptj",)
        return cls(int(n_layers), int(n_heads), n_kv_heads=None if kv is None else int(kv),
                   parallel=bool(parallel))

    def copy(self) -> "Graph":
        return Graph(self.n_layers, self.n_heads, self.in_graph.clone(),
                     None if self.scores is None else self.scores.clone(), dict(self.meta),
                     n_kv_heads=self.n_kv_heads, parallel=self.parallel)

    def with_edges(self, in_graph: Bool[Tensor, "sender receiver"]) -> "Graph":
        """A copy of this graph (same scores and meta) whose circuit is ``in_graph``."""
        g = self.copy()
        g.in_graph = g.check_mask(in_graph, "in_graph")
        return g

    def empty_mask(self) -> Bool[Tensor, "sender receiver"]:
        """BoolTensor[n_forward, n_backward] of zeros (no edge)."""
        return torch.zeros_like(self.real_edges)

    # ----------------------------------------------------------------- sizes and names
    @property
    def n_forward(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        return self.n_layers * (self.n_heads + 2 * self.n_kv_heads + 1) + 1

    def kv_head(self, head: int) -> int:
        """The key/value head query head ``head`` reads (``head // (H/G)``; itself without
        GQA)."""
        return kv_head(head, self.n_heads, self.n_kv_heads)

    @property
    def n_nodes(self) -> int:
        """embed + heads + MLPs + logits."""
        return self.n_forward + 1

    @property
    def n_edges(self) -> int:
        """Number of edges of the full graph."""
        return int(self.real_edges.sum())

    @property
    def n_edges_in_graph(self) -> int:
        return int(self.in_graph.sum())

    @property
    def forward_names(self) -> list[str]:
        """Sender names in forward-index order."""
        return [n.name for n in self.nodes[:-1]]

    @property
    def backward_names(self) -> list[str]:
        """Receiver names in backward-index order."""
        names = []
        rep = self.n_heads // self.n_kv_heads
        for l in range(self.n_layers):
            names += [receiver_name(l, h, "q") for h in range(self.n_heads)]
            for c in ("k", "v"):
                names += [receiver_name(l, g * rep, c) for g in range(self.n_kv_heads)]
            names.append(mlp_name(l))
        return names + ["logits"]

    @property
    def node_names(self) -> list[str]:
        """Every node: the senders, then ``logits``."""
        return [n.name for n in self.nodes]

    def node(self, name: str) -> Node:
        """The :class:`Node` called ``name``."""
        n = self._node_by_name.get(name) if isinstance(name, str) else None
        if n is None:
            raise self.unknown_name_error(name, "node")
        return n

    def unknown_name_error(self, name: Any, what: str) -> TutorialError:
        L, H = self.n_layers, self.n_heads
        forms = {"sender": "'embed', 'a<layer>.h<head>' or 'm<layer>'",
                 "receiver": "'a<layer>.h<head>.q' (or .k, .v), 'm<layer>' or 'logits'",
                 "node": "'embed', 'a<layer>.h<head>', 'm<layer>' or 'logits'"}[what]
        return TutorialError(f"unknown {what} {name!r}: {what}s are {forms} with layer < {L} "
                             f"and head < {H}")

    def fwd_index(self, name: str) -> int:
        """Forward index of ``embed``, ``a{l}.h{h}`` or ``m{l}``."""
        i = self.sender_index.get(name)
        if i is None:
            raise self.unknown_name_error(name, "sender")
        return i

    def bwd_index(self, name: str) -> int:
        """Backward index of ``a{l}.h{h}.{q,k,v}``, ``m{l}`` or ``logits``."""
        i = self.receiver_index.get(name)
        if i is None:
            raise self.unknown_name_error(name, "receiver")
        return i

    def is_edge(self, sender: str, receiver: str) -> bool:
        """True when ``sender`` writes to the residual stream before ``receiver`` reads it."""
        s, r = self.sender_index.get(sender), self.receiver_index.get(receiver)
        return s is not None and r is not None and bool(self.real_edges[s, r])

    def edge_index(self, edge: str | Edge) -> tuple[int, int]:
        """``(forward, backward)`` index of ``"a0.h1->a2.h3.q"`` or ``("a0.h1", "a2.h3.q")``."""
        if isinstance(edge, tuple) and len(edge) == 2:
            s_name, r_name = edge
        elif isinstance(edge, str) and (m := _EDGE_RE.match(edge)):
            s_name, r_name = m[1], m[2]
        else:
            raise TutorialError(f"an edge is 'sender->receiver' (e.g. 'a0.h1->a2.h3.q') or a pair "
                                f"('a0.h1', 'a2.h3.q'), got {edge!r}")
        s, r = self.fwd_index(s_name), self.bwd_index(r_name)
        if not self.real_edges[s, r]:
            raise TutorialError(f"{s_name} -> {r_name} is not an edge: {s_name} does not write "
                                f"before {r_name} reads")
        return s, r

    def check_edges(self, edges: Iterable[str | Edge]) -> list[Edge]:
        """The edges as ``(sender, receiver)`` pairs, each validated (:meth:`edge_index`)."""
        out = []
        for e in edges:
            s, r = self.edge_index(e)
            out.append((self.senders[s], self.receivers[r]))
        return out

    def edge_mask(self, edges: Iterable[str | Edge]) -> Bool[Tensor, "sender receiver"]:
        """BoolTensor[n_forward, n_backward] with the given edges set."""
        mask = self.empty_mask()
        for e in edges:
            mask[self.edge_index(e)] = True
        return mask

    def node_mask(self, nodes: Iterable[str]) -> Bool[Tensor, " sender"]:
        """BoolTensor[n_forward] with the given senders set (``logits`` is ignored)."""
        mask = torch.zeros(self.n_forward, dtype=torch.bool)
        for n in nodes:
            if n != "logits":
                mask[self.fwd_index(n)] = True
        return mask

    @property
    def edges(self) -> list[Edge]:
        """Every edge of the model as ``(sender, receiver)``, receiver-major index order."""
        S, R = self.senders, self.receivers
        return [(S[s], R[r]) for r, s in self.real_edges.T.nonzero().tolist()]

    def edge_name(self, s: int, r: int) -> str:
        return f"{self.senders[s]}->{self.receivers[r]}"

    def edge_names(self, mask: Bool[Tensor, "sender receiver"] | None = None) -> list[str]:
        """Names of the edges in ``mask`` (default: the circuit), in index order."""
        mask = self.in_graph if mask is None else self.check_mask(mask, "mask")
        return [self.edge_name(s, r) for s, r in mask.nonzero().tolist()]

    def receiver_inputs(self, node: str) -> list[str]:
        """The inputs of a node: ``aL.hH`` -> its q, k, v; ``mL`` -> itself; ``logits``."""
        if node == "embed":
            raise TutorialError("'embed' reads nothing: it is a sender only")
        n = self.node(node)
        if n.kind == "head":
            return [f"{node}.{c}" for c in QKV]
        return [node]

    def receiver_node(self, receiver: str) -> str:
        """The node a receiver input belongs to: ``aL.hH.q`` -> ``aL.hH``; ``mL``, ``logits``
        map to themselves."""
        self.bwd_index(receiver)
        return receiver.rsplit(".", 1)[0] if receiver.startswith("a") else receiver

    def receiver_owner(self) -> Int[Tensor, " receiver"]:
        """LongTensor[n_backward]: the node (forward index; ``n_forward`` for logits) each
        receiver belongs to (q, k and v of a head all map to the head; under GQA a shared
        k/v receiver maps to its group's first query head, see :meth:`receiver_readers`)."""
        return torch.tensor([self.fwd_index(self.receiver_node(r)) if r != "logits"
                             else self.n_forward for r in self.receivers], dtype=torch.long)

    def receiver_readers(self) -> Bool[Tensor, "receiver node"]:
        """BoolTensor[n_backward, n_nodes]: the nodes that read each receiver (one node, except
        a GQA key/value receiver, read by every query head of its group)."""
        out = torch.zeros(self.n_backward, self.n_nodes, dtype=torch.bool)
        rep = self.n_heads // self.n_kv_heads
        for r, name in enumerate(self.receivers):
            if name == "logits":
                out[r, self.n_forward] = True
                continue
            node = self.node(self.receiver_node(name))
            if node.kind == "head" and not name.endswith(".q"):
                l, h0 = node.layer, node.head
                for h in range(h0, h0 + rep):
                    out[r, self.fwd_index(head_name(l, h))] = True
            else:
                out[r, self.fwd_index(node.name)] = True
        return out

    def nodes_in_graph(self, mask: Bool[Tensor, "sender receiver"] | None = None) -> list[str]:
        """Nodes touched by at least one edge of ``mask`` (default: the circuit); a GQA
        key/value receiver touches every query head of its group."""
        mask = self.in_graph if mask is None else self.check_mask(mask, "mask")
        used = torch.zeros(self.n_nodes, dtype=torch.bool)
        used[: self.n_forward] |= mask.any(1)
        used |= self.receiver_readers()[mask.any(0)].any(0)
        return [n for n, u in zip(self.node_names, used.tolist()) if u]

    # ----------------------------------------------------------------- hooks
    def sender_hooks(self) -> list[SenderHook]:
        """One entry per sender hook, in forward order (heads of a layer share one hook)."""
        if getattr(self, "_sender_hooks", None) is not None:
            return list(self._sender_hooks)
        out: list[SenderHook] = []
        for i, n in enumerate(self.nodes[:-1]):
            if out and out[-1].name == n.out_hook:
                out[-1] = SenderHook(n.out_hook, slice(out[-1].index.start, i + 1), True)
            else:
                out.append(SenderHook(n.out_hook, slice(i, i + 1),  # type: ignore[arg-type]
                                      n.kind == "head"))
        self._sender_hooks = tuple(out)
        return out

    def receiver_hooks(self) -> list[ReceiverHook]:
        """One entry per receiver hook in forward order (q/k/v of a layer: one hook each)."""
        if getattr(self, "_receiver_hooks", None) is not None:
            return list(self._receiver_hooks)
        out: list[ReceiverHook] = []
        for r, name in enumerate(self.receivers):
            n = self.node(self.receiver_node(name))
            key = name.rsplit(".", 1)[1] if n.kind == "head" else next(iter(n.in_hooks))
            hook = n.in_hooks[key]
            n_prior = int(self.real_edges[:, r].sum())
            if out and out[-1].name == hook:
                out[-1] = ReceiverHook(hook, slice(out[-1].index.start, r + 1), n_prior, True)
            else:
                out.append(ReceiverHook(hook, slice(r, r + 1), n_prior, n.kind == "head"))
        self._receiver_hooks = tuple(out)
        return out

    def hook_names(self) -> list[str]:
        """Every hook the graph needs (senders then receivers)."""
        return [h.name for h in self.sender_hooks()] + [h.name for h in self.receiver_hooks()]

    # ----------------------------------------------------------------- editing
    def set_edge(self, edge: str | Edge, value: bool) -> None:
        self.in_graph[self.edge_index(edge)] = bool(value)

    def score(self, edge: str | Edge) -> float:
        if self.scores is None:
            raise TutorialError("this graph has no scores yet: run an attribution method first "
                                "(circuits.attribute(model, graph, dataset))")
        return float(self.scores[self.edge_index(edge)])

    def top_edges(self, k: int = 10, absolute: bool = True) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring edges (by |score| if ``absolute``) with their scores."""
        if self.scores is None:
            raise TutorialError("this graph has no scores yet: run an attribution method first "
                                "(circuits.attribute(model, graph, dataset))")
        key = self.scores.abs() if absolute else self.scores.clone()
        key = key.masked_fill(~self.real_edges, float("-inf")).flatten()
        idx = key.topk(min(k, self.n_edges)).indices
        nb = self.n_backward
        return [(self.edge_name(int(i) // nb, int(i) % nb), float(self.scores.flatten()[i]))
                for i in idx]

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        edges = {}
        for s, r in self.in_graph.nonzero().tolist():
            edges[self.edge_name(s, r)] = None if self.scores is None else float(self.scores[s, r])
        out = {"format": _FORMAT, "n_layers": self.n_layers, "n_heads": self.n_heads,
               "meta": self.meta, "edges": edges}
        if self.n_kv_heads != self.n_heads:
            out["n_kv_heads"] = self.n_kv_heads
        if self.parallel:
            out["parallel"] = True
        return out

    def to_json(self, path: str | Path) -> None:
        """Save the circuit (its edges with their scores, the model shape, ``meta``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Graph":
        """Read :meth:`to_dict`'s output. Files of format 1 (senders ``input``, receivers
        ``a0.h0<q>``) are translated to today's names."""
        for key in ("n_layers", "n_heads", "edges"):
            if key not in data:
                raise TutorialError(f"not a saved circuit: key {key!r} missing (expected what "
                                    "Graph.to_json writes)")
        legacy = str(data.get("format", "")).endswith("Graph/1")
        g = cls(int(data["n_layers"]), int(data["n_heads"]), meta=dict(data.get("meta", {})),
                n_kv_heads=data.get("n_kv_heads"), parallel=bool(data.get("parallel", False)))
        g.in_graph.zero_()
        has_scores = any(v is not None for v in data["edges"].values())
        if has_scores:
            g.scores = torch.zeros(g.n_forward, g.n_backward)
        for name, score in data["edges"].items():
            if legacy:
                name = re.sub(r"<([qkv])>", r".\1", re.sub(r"^\s*input\s*->", "embed->", name))
            s, r = g.edge_index(name)
            g.in_graph[s, r] = True
            if has_scores and score is not None:
                g.scores[s, r] = float(score)
        return g

    @classmethod
    def from_json(cls, path: str | Path) -> "Graph":
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ----------------------------------------------------------------- checks
    def check_model(self, model: Any) -> None:
        """The model must match the graph's shape and expose every hook the graph needs
        (``load_model(..., hooks=True)``)."""
        cfg = getattr(model, "cfg", None)
        if cfg is None:
            raise TutorialError(f"model: expected a TransformerBridge from load_model(..., "
                                f"hooks=True), got {type(model).__name__}")
        if (int(cfg.n_layers), int(cfg.n_heads)) != (self.n_layers, self.n_heads):
            raise TutorialError(
                f"graph is for {self.n_layers} layers x {self.n_heads} heads, the model has "
                f"{cfg.n_layers} x {cfg.n_heads}: build the graph with Graph.from_model(model)")
        kv = cfg_kv_heads(cfg)
        if kv != self.n_kv_heads:
            raise TutorialError(
                f"graph is for {self.n_kv_heads} key/value heads, the model has {kv} "
                "(grouped-query attention): build the graph with Graph.from_model(model)")
        par = bool(getattr(cfg, "parallel_attn_mlp", False))
        if par != self.parallel:
            raise TutorialError(
                f"graph is for {'parallel' if self.parallel else 'sequential'} attention and "
                f"MLP, the model's are {'parallel' if par else 'sequential'} (MLP l reads "
                f"{'only layers < l' if par else 'the heads of layer l'}): build the graph "
                "with Graph.from_model(model)")
        if getattr(cfg, "attn_only", False):
            raise TutorialError("attention-only models have no MLP nodes; the graph assumes MLPs")
        check_additive_writers(model, "the edge graph (edge and path patching, EAP, circuits)")
        check_hook_names(model, self.hook_names())

    def check_mask(self, mask: Bool[Tensor, "sender receiver"], what: str = "mask"
                   ) -> Bool[Tensor, "sender receiver"]:
        """``mask`` as a CPU BoolTensor[n_forward, n_backward] of real edges, else a TutorialError."""
        shape = (self.n_forward, self.n_backward)
        if not isinstance(mask, Tensor) or tuple(mask.shape) != shape:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise TutorialError(f"{what} must be a BoolTensor of shape {shape} (forward x "
                                f"backward nodes), got {got}")
        mask = mask.detach().to("cpu", torch.bool)
        if (mask & ~self.real_edges).any():
            raise TutorialError(f"{what} marks entries that are not edges (a receiver before its "
                                "sender); AND it with graph.real_edges")
        return mask.clone()

    def _check_scores(self, scores: Tensor) -> Tensor:
        shape = (self.n_forward, self.n_backward)
        if tuple(scores.shape) != shape:
            raise TutorialError(f"scores must have shape {shape}, got {tuple(scores.shape)}")
        return scores.detach().to("cpu", torch.float32).masked_fill(~self.real_edges, 0.0)



def _real_edges(n_layers: int, n_heads: int, n_kv_heads: int | None = None,
                parallel: bool = False) -> Tensor:
    """BoolTensor[n_forward, n_backward]: sender position < receiver position in the forward
    pass (embed 0; heads of layer l at 2l+1 and MLP l at 2l+2; logits last). Head receivers
    read at 2l+1; MLP l reads at 2l+2, or at 2l+1 (with the heads) when ``parallel``."""
    H, L = n_heads, n_layers
    G = H if n_kv_heads is None else n_kv_heads
    fpos = [0]
    for l in range(L):
        fpos += [2 * l + 1] * H + [2 * l + 2]
    bpos = []
    for l in range(L):
        bpos += [2 * l + 1] * (H + 2 * G) + [2 * l + 1 if parallel else 2 * l + 2]
    bpos.append(2 * L + 1)
    return torch.tensor(fpos)[:, None] < torch.tensor(bpos)[None, :]


def count_edges(n_layers: int, n_heads: int, n_kv_heads: int | None = None,
                parallel: bool = False) -> int:
    """Closed form of the number of edges (see the module docstring; ``G`` key/value heads
    give ``H + 2G`` head receivers per layer, and a parallel MLP does not read its own
    layer's ``H`` heads)."""
    L, H = n_layers, n_heads
    G = H if n_kv_heads is None else n_kv_heads
    heads = sum((H + 2 * G) * (1 + l * (H + 1)) for l in range(L))
    mlps = sum(1 + l * (H + 1) + (0 if parallel else H) for l in range(L))
    return heads + mlps + 1 + L * (H + 1)
