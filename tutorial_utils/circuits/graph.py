"""The computational graph of a decoder, as seen by edge-level circuit discovery.

Every component of a pre-LN transformer *writes* an additive term into the residual stream and
*reads* the sum of everything written before it. Taking those writers and readers as nodes
(Elhage et al. 2021; Conmy et al. 2023; Hanna et al. 2024):

* **forward nodes** (senders, residual writers): ``input`` (token + position embeddings),
  every attention head ``a{l}.h{h}`` and every MLP ``m{l}``;
* **backward nodes** (receivers, residual readers): the query, key and value inputs of every
  head, ``a{l}.h{h}<q>``, ``<k>``, ``<v>``, every MLP input ``m{l}``, and ``logits`` (the input
  of the final LayerNorm and unembedding).

There is an edge from every sender to every receiver that comes later in the forward pass: the
heads of layer ``l`` read what ``input`` and layers ``< l`` wrote; MLP ``l`` also reads the heads
of its own layer; ``logits`` reads everything. For ``L`` layers of ``H`` heads that makes

    #nodes = 1 + L*H + L + 1,
    #edges = sum_l 3H (1 + l(H+1))  +  sum_l (1 + l(H+1) + H)  +  (1 + L(H+1)),

so GPT-2 small (L = H = 12) has 158 nodes and 32,491 edges.

Edges are stored as dense tensors of shape ``[n_forward, n_backward]``: ``real_edges`` (which
entries are edges at all), ``in_graph`` (which edges are in the circuit) and ``scores`` (an
attribution score per edge). Index layout:

* forward index: ``input`` = 0, head ``(l, h)`` = ``1 + l*(H+1) + h``, MLP ``l`` = ``1 + l*(H+1) + H``;
* backward index: head ``(l, h)`` input ``c`` (q=0, k=1, v=2) = ``l*(3H+1) + c*H + h``,
  MLP ``l`` = ``l*(3H+1) + 3H``, ``logits`` = ``L*(3H+1)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

QKV = ("q", "k", "v")
_EDGE_RE = re.compile(r"^\s*(\S+)\s*->\s*(\S+?)\s*$")


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

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"a graph needs n_layers >= 1 and n_heads >= 1, got "
                             f"{self.n_layers} and {self.n_heads}")
        self.real_edges = _real_edges(self.n_layers, self.n_heads)
        if self.in_graph is None:
            self.in_graph = self.real_edges.clone()
        else:
            self.in_graph = self._check_mask(self.in_graph, "in_graph")
        if self.scores is not None:
            self.scores = self._check_scores(self.scores)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_model(cls, model: Any) -> "Graph":
        """The full graph of a ``TransformerBridge`` (or anything with ``cfg.n_layers/n_heads``)."""
        cfg = model.cfg
        g = cls(int(cfg.n_layers), int(cfg.n_heads))
        g.meta["model"] = getattr(model, "tutorial_model_name", None) or getattr(cfg, "model_name", "")
        return g

    @classmethod
    def from_config(cls, config: Any) -> "Graph":
        """The full graph from a Hugging Face ``GPT2Config`` (``n_layer``, ``n_head``) or a
        TransformerLens config (``n_layers``, ``n_heads``), without building the model."""
        n_layers = getattr(config, "n_layers", None) or getattr(config, "n_layer", None)
        n_heads = getattr(config, "n_heads", None) or getattr(config, "n_head", None)
        if n_layers is None or n_heads is None:
            raise ValueError("config has neither n_layers/n_heads nor n_layer/n_head")
        return cls(int(n_layers), int(n_heads))

    def copy(self) -> "Graph":
        return Graph(self.n_layers, self.n_heads, self.in_graph.clone(),
                     None if self.scores is None else self.scores.clone(), dict(self.meta))

    def with_edges(self, in_graph: Tensor) -> "Graph":
        """A copy of this graph (same scores and meta) whose circuit is ``in_graph``."""
        g = self.copy()
        g.in_graph = g._check_mask(in_graph, "in_graph")
        return g

    # ----------------------------------------------------------------- sizes and names
    @property
    def n_forward(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_backward(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @property
    def n_nodes(self) -> int:
        """input + heads + MLPs + logits."""
        return self.n_forward + 1

    @property
    def n_edges(self) -> int:
        """Number of edges of the full graph."""
        return int(self.real_edges.sum())

    @property
    def n_edges_in_graph(self) -> int:
        return int(self.in_graph.sum())

    def fwd_index(self, name: str) -> int:
        """Forward index of ``input``, ``a{l}.h{h}`` or ``m{l}``."""
        if name == "input":
            return 0
        m = re.fullmatch(r"a(\d+)\.h(\d+)", name)
        if m:
            l, h = self._check_lh(int(m[1]), int(m[2]), name)
            return 1 + l * (self.n_heads + 1) + h
        m = re.fullmatch(r"m(\d+)", name)
        if m:
            l, _ = self._check_lh(int(m[1]), 0, name)
            return 1 + l * (self.n_heads + 1) + self.n_heads
        raise ValueError(f"{name!r} is not a sender node; senders are 'input', 'a<layer>.h<head>' "
                         "and 'm<layer>'")

    def bwd_index(self, name: str) -> int:
        """Backward index of ``a{l}.h{h}<q|k|v>``, ``m{l}`` or ``logits``."""
        if name == "logits":
            return self.n_layers * (3 * self.n_heads + 1)
        m = re.fullmatch(r"a(\d+)\.h(\d+)<([qkv])>", name)
        if m:
            l, h = self._check_lh(int(m[1]), int(m[2]), name)
            return l * (3 * self.n_heads + 1) + QKV.index(m[3]) * self.n_heads + h
        m = re.fullmatch(r"m(\d+)", name)
        if m:
            l, _ = self._check_lh(int(m[1]), 0, name)
            return l * (3 * self.n_heads + 1) + 3 * self.n_heads
        raise ValueError(f"{name!r} is not a receiver node; receivers are 'a<layer>.h<head><q>' "
                         "(or <k>, <v>), 'm<layer>' and 'logits'")

    @property
    def forward_names(self) -> list[str]:
        names = ["input"]
        for l in range(self.n_layers):
            names += [f"a{l}.h{h}" for h in range(self.n_heads)] + [f"m{l}"]
        return names

    @property
    def backward_names(self) -> list[str]:
        names = []
        for l in range(self.n_layers):
            names += [f"a{l}.h{h}<{c}>" for c in QKV for h in range(self.n_heads)] + [f"m{l}"]
        return names + ["logits"]

    @property
    def node_names(self) -> list[str]:
        """Every node: the senders, then ``logits``."""
        return self.forward_names + ["logits"]

    def edge_index(self, edge: str) -> tuple[int, int]:
        """``(forward, backward)`` index of an edge named ``"a0.h1->a2.h3<q>"``."""
        m = _EDGE_RE.match(edge)
        if not m:
            raise ValueError(f"edge names look like 'a0.h1->a2.h3<q>' or 'm1->logits', got {edge!r}")
        s, r = self.fwd_index(m[1]), self.bwd_index(m[2])
        if not self.real_edges[s, r]:
            raise ValueError(f"{edge!r} is not an edge: the receiver does not come after the sender")
        return s, r

    def edge_name(self, s: int, r: int) -> str:
        return f"{self.forward_names[s]}->{self.backward_names[r]}"

    def edge_names(self, mask: Tensor | None = None) -> list[str]:
        """Names of the edges in ``mask`` (default: the circuit), in index order."""
        mask = self.in_graph if mask is None else self._check_mask(mask, "mask")
        fw, bw = self.forward_names, self.backward_names
        return [f"{fw[s]}->{bw[r]}" for s, r in mask.nonzero().tolist()]

    def receiver_node(self) -> Tensor:
        """LongTensor[n_backward]: the node (forward index; ``n_forward`` for logits) each
        receiver belongs to (q, k and v of a head all map to the head)."""
        out = torch.empty(self.n_backward, dtype=torch.long)
        H = self.n_heads
        for l in range(self.n_layers):
            base = l * (3 * H + 1)
            for c in range(3):
                out[base + c * H: base + (c + 1) * H] = 1 + l * (H + 1) + torch.arange(H)
            out[base + 3 * H] = 1 + l * (H + 1) + H
        out[-1] = self.n_forward
        return out

    def nodes_in_graph(self, mask: Tensor | None = None) -> list[str]:
        """Nodes touched by at least one edge of ``mask`` (default: the circuit)."""
        mask = self.in_graph if mask is None else self._check_mask(mask, "mask")
        used = torch.zeros(self.n_nodes, dtype=torch.bool)
        used[: self.n_forward] |= mask.any(1)
        recv = self.receiver_node()
        used[recv[mask.any(0)]] = True
        return [n for n, u in zip(self.node_names, used.tolist()) if u]

    # ----------------------------------------------------------------- editing
    def set_edge(self, edge: str, value: bool) -> None:
        s, r = self.edge_index(edge)
        self.in_graph[s, r] = bool(value)

    def score(self, edge: str) -> float:
        if self.scores is None:
            raise ValueError("this graph has no scores yet: run an attribution method first")
        s, r = self.edge_index(edge)
        return float(self.scores[s, r])

    def top_edges(self, k: int = 10, absolute: bool = True) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring edges (by |score| if ``absolute``) with their scores."""
        if self.scores is None:
            raise ValueError("this graph has no scores yet: run an attribution method first")
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
        return {"format": "tutorial_utils.circuits.Graph/1", "n_layers": self.n_layers,
                "n_heads": self.n_heads, "meta": self.meta, "edges": edges}

    def to_json(self, path: str | Path) -> None:
        """Save the circuit (its edges with their scores, the model shape, ``meta``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Graph":
        for key in ("n_layers", "n_heads", "edges"):
            if key not in data:
                raise ValueError(f"not a saved circuit: key {key!r} missing")
        g = cls(int(data["n_layers"]), int(data["n_heads"]), meta=dict(data.get("meta", {})))
        g.in_graph.zero_()
        has_scores = any(v is not None for v in data["edges"].values())
        if has_scores:
            g.scores = torch.zeros(g.n_forward, g.n_backward)
        for name, score in data["edges"].items():
            s, r = g.edge_index(name)
            g.in_graph[s, r] = True
            if has_scores and score is not None:
                g.scores[s, r] = float(score)
        return g

    @classmethod
    def from_json(cls, path: str | Path) -> "Graph":
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ----------------------------------------------------------------- checks
    def _check_lh(self, l: int, h: int, name: str) -> tuple[int, int]:
        if not 0 <= l < self.n_layers:
            raise ValueError(f"{name!r}: layer {l} out of range for {self.n_layers} layers")
        if not 0 <= h < self.n_heads:
            raise ValueError(f"{name!r}: head {h} out of range for {self.n_heads} heads")
        return l, h

    def _check_mask(self, mask: Tensor, what: str) -> Tensor:
        shape = (self.n_forward, self.n_backward)
        if tuple(mask.shape) != shape:
            raise ValueError(f"{what} must have shape {shape} (forward x backward nodes), "
                             f"got {tuple(mask.shape)}")
        mask = mask.detach().to("cpu", torch.bool)
        if (mask & ~self.real_edges).any():
            raise ValueError(f"{what} marks entries that are not edges (a receiver before its "
                             "sender)")
        return mask.clone()

    def _check_scores(self, scores: Tensor) -> Tensor:
        shape = (self.n_forward, self.n_backward)
        if tuple(scores.shape) != shape:
            raise ValueError(f"scores must have shape {shape}, got {tuple(scores.shape)}")
        return scores.detach().to("cpu", torch.float32).masked_fill(~self.real_edges, 0.0)


def _real_edges(n_layers: int, n_heads: int) -> Tensor:
    """BoolTensor[n_forward, n_backward]: sender position < receiver position in the forward
    pass (input 0; heads of layer l at 2l+1 and MLP l at 2l+2; logits last)."""
    H, L = n_heads, n_layers
    fpos = [0]
    for l in range(L):
        fpos += [2 * l + 1] * H + [2 * l + 2]
    bpos = []
    for l in range(L):
        bpos += [2 * l + 1] * (3 * H) + [2 * l + 2]
    bpos.append(2 * L + 1)
    return torch.tensor(fpos)[:, None] < torch.tensor(bpos)[None, :]


def count_edges(n_layers: int, n_heads: int) -> int:
    """Closed form of the number of edges (see the module docstring)."""
    L, H = n_layers, n_heads
    heads = sum(3 * H * (1 + l * (H + 1)) for l in range(L))
    mlps = sum(1 + l * (H + 1) + H for l in range(L))
    return heads + mlps + 1 + L * (H + 1)
