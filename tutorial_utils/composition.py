"""How attention heads compose: scores read from the weights, and the path-patching evidence.

A head reads the residual stream through three inputs (query, key, value) and writes into it
through its OV circuit. A later head *composes* with an earlier one when it reads what the
earlier one wrote (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"):

* **Q-composition**: the earlier head's output feeds the later head's *query*;
* **K-composition**: ... its *key* (the previous-token -> induction head pair);
* **V-composition**: ... its *value*.

With TransformerLens's row-vector convention (``x @ W``), per head ``W_OV = W_V @ W_O`` and
``W_QK = W_Q @ W_K^T`` (both ``[d_model, d_model]``), and for an earlier head A and a later head B

    Q-comp(A, B) = ||W_OV^A @ W_QK^B||_F   / (||W_OV^A||_F ||W_QK^B||_F)
    K-comp(A, B) = ||W_QK^B @ W_OV^A^T||_F / (||W_OV^A||_F ||W_QK^B||_F)
    V-comp(A, B) = ||W_OV^A @ W_OV^B||_F   / (||W_OV^A||_F ||W_OV^B||_F)

(Elhage et al. 2021, section "Virtual weights and composition"; their column-vector formulas
transposed). A score means little on its own: compare it with :func:`composition_baseline`, the
same score for random matrices of the same shapes.

The **copying score** of a head (Wang et al. 2023, name movers; Elhage et al. 2021, "copying"
OV circuits) asks whether its OV circuit maps a token to itself: for each token ``t`` of a list,

    logits_t = W_E[t] @ W_V^h @ W_O^h @ W_U          ([d_vocab])
    copying_score = mean_t [ argmax(logits_t) == t ]

(no biases, no positional embedding; layer norms are scalings here and do not change an argmax,
since compatibility mode folds their weights and centres W_E, W_O and W_U). A negative copying
score (``-logits``) finds anti-copying heads such as Wang et al.'s negative name movers.

The weight-based scores say what *could* compose; :func:`induction_composition_patching`
measures what *does*: path patching the previous-token head's output into the induction head's
query, key or value input alone (see :mod:`tutorial_utils.path_patching`).

Weights are read from a ``TransformerBridge`` in compatibility mode (``model.W_Q`` etc.,
``[n_layers, n_heads, d_model, d_head]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .errors import TutorialError
from .induction import attention_patterns, induction_scores_from_patterns, model_repeated_tokens
from .interchange import baseline_metrics
from .model_checks import check_head
from .names import head_name, kv_head, n_kv_heads, parse_head
from .path_patching import edge_patching
from .tasks.base import TaskDataset
from .tasks.metrics import normalize

__all__ = [
    "ov_matrix",
    "qk_matrix",
    "composition_score",
    "composition_scores",
    "composition_baseline",
    "copying_fraction",
    "copying_scores",
    "previous_token_scores",
    "induction_patching_data",
    "induction_composition_patching",
    "InductionComposition",
    "InductionClasses",
    "induction_classes",
    "head_grid",
    "top_heads",
    "ioi_positions",
    "attention_between",
]

Kind = Literal["q", "k", "v"]


def _shared_kv(W: Tensor, model: Any, layer: int, head: int) -> Tensor:
    """``W_K``/``W_V`` of the key/value head that query head ``head`` reads (its own without
    grouped-query attention)."""
    if W.shape[1] == model.cfg.n_heads:
        return W[layer, head]
    return W[layer, kv_head(head, model.cfg.n_heads, n_kv_heads(model.cfg))]


def ov_matrix(model: Any, layer: int, head: int) -> Float[Tensor, "d_model d_model"]:
    """``W_V @ W_O`` of one head: ``[d_model, d_model]`` (row vectors: ``x @ W_OV``)."""
    layer, head = check_head(model, layer, head)
    return (_shared_kv(model.W_V, model, layer, head) @ model.W_O[layer, head]).detach()


def qk_matrix(model: Any, layer: int, head: int) -> Float[Tensor, "d_model d_model"]:
    """``W_Q @ W_K^T`` of one head: ``[d_model, d_model]`` (score = ``x_q @ W_QK @ x_k^T``)."""
    layer, head = check_head(model, layer, head)
    return (model.W_Q[layer, head] @ _shared_kv(model.W_K, model, layer, head).T).detach()


def _comp(kind: Kind, ov_a: Tensor, later: Tensor) -> Tensor:
    """The normalised product of the module docstring; ``later`` is W_QK (q, k) or W_OV (v)."""
    if kind not in ("q", "k", "v"):
        raise TutorialError(f"kind must be 'q', 'k' or 'v', got {kind!r}")
    prod = later @ ov_a.T if kind == "k" else ov_a @ later
    return prod.norm() / (ov_a.norm() * later.norm())


def composition_score(model: Any, earlier: tuple[int, int], later: tuple[int, int],
                      kind: Kind) -> float:
    """Elhage et al.'s Q/K/V-composition score of head ``earlier`` = (layer, head) into head
    ``later`` (formulas in the module docstring). ``earlier`` must sit in a lower layer."""
    la, ha = check_head(model, *earlier)
    lb, hb = check_head(model, *later)
    if kind not in ("q", "k", "v"):
        raise TutorialError(f"kind must be 'q', 'k' or 'v', got {kind!r}")
    if la >= lb:
        raise TutorialError(f"the earlier head must be in a lower layer: got layers {la} and {lb}")
    later_m = ov_matrix(model, lb, hb) if kind == "v" else qk_matrix(model, lb, hb)
    return float(_comp(kind, ov_matrix(model, la, ha), later_m))


def composition_scores(model: Any, kind: Kind
                       ) -> Float[Tensor, "layer_a head_a layer_b head_b"]:
    """Every pair at once: ``[L, H, L, H]``, entry ``[la, ha, lb, hb]`` the score of head
    (la, ha) into head (lb, hb); NaN where ``la >= lb`` (no composition is possible)."""
    if kind not in ("q", "k", "v"):
        raise TutorialError(f"kind must be 'q', 'k' or 'v', got {kind!r}")
    L, H = model.cfg.n_layers, model.cfg.n_heads
    ov = torch.stack([torch.stack([ov_matrix(model, l, h) for h in range(H)]) for l in range(L)])
    later = ov if kind == "v" else torch.stack(
        [torch.stack([qk_matrix(model, l, h) for h in range(H)]) for l in range(L)])
    out = torch.full((L, H, L, H), float("nan"))
    for la in range(L):
        for lb in range(la + 1, L):
            for ha in range(H):
                for hb in range(H):
                    out[la, ha, lb, hb] = _comp(kind, ov[la, ha], later[lb, hb])
    return out


def composition_baseline(model: Any, kind: Kind, n_samples: int = 200, seed: int = 0) -> float:
    """Mean score of random Gaussian ``W_Q, W_K, W_V, W_O`` of the model's shapes: the level a
    composition score must clearly exceed to mean anything."""
    if kind not in ("q", "k", "v"):
        raise TutorialError(f"kind must be 'q', 'k' or 'v', got {kind!r}")
    if n_samples < 1:
        raise TutorialError(f"n_samples must be >= 1, got {n_samples}")
    d, dh = model.cfg.d_model, model.cfg.d_head
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    vals = []
    for _ in range(n_samples):
        ov_a = r(d, dh) @ r(dh, d)
        later = r(d, dh) @ r(dh, d)
        vals.append(float(_comp(kind, ov_a, later)))
    return sum(vals) / len(vals)


def copying_fraction(emb: Float[Tensor, "n d_model"], ov: Float[Tensor, "d_model d_model"],
                     W_U: Float[Tensor, "d_model vocab"], ids: Int[Tensor, " n"],
                     negative: bool = False) -> float:
    """Fraction of rows whose own token wins: ``mean_i [argmax(emb[i] @ ov @ W_U) == ids[i]]``.

    ``emb`` ``[n, d]`` (the tokens' embeddings), ``ov`` ``[d, d]``, ``W_U`` ``[d, V]``, ``ids``
    ``[n]``; with ``negative`` the logits are negated first (anti-copying)."""
    logits = emb @ ov @ W_U
    if negative:
        logits = -logits
    return float((logits.argmax(-1).cpu() == ids.cpu()).float().mean())


def copying_scores(model: Any, token_ids: Sequence[int] | Int[Tensor, " n"], negative: bool = False
                   ) -> Float[Tensor, "layer head"]:
    """``[L, H]``: for every head, the fraction of ``token_ids`` whose own logit is the largest
    of the whole vocabulary under ``W_E[t] @ W_OV @ W_U`` (``-`` that with ``negative=True``)."""
    raw = torch.as_tensor(token_ids)
    if raw.numel() == 0:
        raise TutorialError("token_ids is empty: pass the ids of the tokens to copy (e.g. names)")
    if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool:
        raise TutorialError(f"token_ids must be integer token ids, got dtype {raw.dtype} "
                            f"({raw.flatten()[:4].tolist()}); use model.to_single_token(word)")
    ids = raw.long().flatten()
    if ids.numel() == 0:
        raise TutorialError("token_ids is empty: pass the ids of the tokens to copy (e.g. names)")
    V = model.cfg.d_vocab
    if int(ids.min()) < 0 or int(ids.max()) >= V:
        raise TutorialError(f"token ids must be in [0, {V}), got range "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    L, H = model.cfg.n_layers, model.cfg.n_heads
    emb = model.W_E[ids.to(model.W_E.device)].detach()  # [n, d]
    W_U = model.W_U.detach()
    out = torch.zeros(L, H)
    with torch.no_grad():
        for l in range(L):
            for h in range(H):
                out[l, h] = copying_fraction(emb, ov_matrix(model, l, h), W_U, ids, negative)
    return out


def previous_token_scores(model: Any, tokens: Int[Tensor, "batch pos"],
                          patterns: Float[Tensor, "layer batch head query key"] | None = None
                          ) -> Float[Tensor, "layer head"]:
    """``[L, H]``: mean attention from each position to the one before it (positions 2..T-1,
    skipping the BOS column so that a head resting on BOS does not count). ``patterns`` (from
    one forward pass, ``[L, B, H, q, k]``) may be passed to avoid running the model again."""
    pats = attention_patterns(model, tokens) if patterns is None else patterns
    q = torch.arange(2, tokens.shape[1], device=pats.device)
    return pats[..., q, q - 1].mean(dim=(1, -1)).cpu()


def induction_patching_data(model: Any, seq_len: int = 20, batch: int = 16, seed: int = 0
                            ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """A clean/corrupted pair for induction: clean ``BOS + r + r``; corrupted ``BOS + r' + r``
    (the first copy replaced by other random tokens, so nothing in it predicts the second copy).
    Both ``[batch, 1 + 2 * seq_len]``."""
    clean = model_repeated_tokens(model, seq_len, batch, seed)
    other = model_repeated_tokens(model, seq_len, batch, seed + 10_000)
    corrupted = clean.clone()
    corrupted[:, 1:seq_len + 1] = other[:, 1:seq_len + 1]
    return clean, corrupted


@dataclass
class InductionClasses:
    """The induction circuit's two head classes on repeated random tokens, with every head's
    scores (``[L, H]``) they were read from."""

    prev_heads: list[str]
    induction_heads: list[str]
    prev_token_scores: Tensor
    induction_scores: Tensor


def induction_classes(model: Any, tokens: Int[Tensor, "batch pos"], seq_len: int, prev_threshold: float = 0.4,
                      induction_threshold: float = 0.5) -> InductionClasses:
    """Induction heads: the heads (layer >= 1) with induction score >= ``induction_threshold``
    (else the best one). Previous-token heads: the heads below the lowest induction head with
    previous-token score >= ``prev_threshold`` (else the best one there). ``tokens`` are
    ``BOS + r + r`` with ``len(r) = seq_len``; both scores come from one forward pass."""
    pats = attention_patterns(model, tokens)
    ind = induction_scores_from_patterns(pats, seq_len).cpu()
    prev = previous_token_scores(model, tokens, pats)
    L, H = ind.shape
    if L < 2:
        raise TutorialError("induction needs two layers: this model has one")
    no_layer0 = torch.cat([torch.full((1, H), float("nan")), ind[1:]])
    induction_heads = [head_name(l, h) for l in range(1, L) for h in range(H)
                       if ind[l, h] >= induction_threshold] or top_heads(no_layer0, 1)
    lowest = min(parse_head(h)[0] for h in induction_heads)
    prev_heads = [head_name(l, h) for l in range(lowest) for h in range(H)
                  if prev[l, h] >= prev_threshold] or top_heads(prev[:lowest], 1)
    return InductionClasses(prev_heads, induction_heads, prev, ind)


@dataclass
class InductionComposition:
    """Path-patching evidence for the previous-token -> induction-head composition.

    ``effects[kind]`` is the share of the induction effect (clean - corrupted metric) removed by
    patching the previous-token heads' outputs (from the corrupted run) into the induction
    heads' ``kind`` input alone (every edge prev -> induction.kind at once):
    ``(clean - patched) / (clean - corrupted)``. Scores are per head, in the order of the lists.
    """

    prev_heads: list[str]
    induction_heads: list[str]
    metric_clean: float
    metric_corrupted: float
    effects: dict[str, float]
    prev_token_scores: list[float]
    induction_scores: list[float]


def induction_composition_patching(model: Any, prev_heads: Sequence[str] | None = None,
                                   induction_heads: Sequence[str] | None = None, *,
                                   prev_threshold: float = 0.4, induction_threshold: float = 0.5,
                                   seq_len: int = 20, batch: int = 16, seed: int = 0
                                   ) -> InductionComposition:
    """Patch the previous-token heads -> induction heads edges into the induction heads' query,
    key or value inputs alone, from the corrupted run of :func:`induction_patching_data`.

    Heads (names ``"aL.hH"``) default to the *classes* of :func:`induction_classes`, because a
    model often spreads a role over several heads and patching one edge of a redundant pair
    shows little. The model needs ``hooks=True``. Expected for K-composition: a large ``k``
    effect, small ``q`` and ``v`` effects. Effects are ``1 - normalize(patched, clean,
    corrupted)`` (:func:`tutorial_utils.tasks.metrics.normalize`: NaN if the corruption changes
    nothing).
    """
    clean, corrupted = induction_patching_data(model, seq_len, batch, seed)
    classes = induction_classes(model, clean, seq_len, prev_threshold, induction_threshold)
    ind, prev = classes.induction_scores, classes.prev_token_scores
    if induction_heads is None:
        induction_heads = classes.induction_heads
    ind_lh = [check_head(model, *parse_head(h)) for h in induction_heads]
    lowest = min(l for l, _ in ind_lh)
    if lowest == 0:
        raise TutorialError("an induction head in layer 0 has no earlier head to compose with")
    if prev_heads is None:
        prev_heads = [h for h in classes.prev_heads if parse_head(h)[0] < lowest] or \
            top_heads(prev[:lowest], 1)
    prev_lh = [check_head(model, *parse_head(h)) for h in prev_heads]
    for l, h in prev_lh:
        if l >= lowest:
            raise TutorialError(f"previous-token head {head_name(l, h)} must sit below every "
                             f"induction head (lowest induction layer {lowest})")
    targets = clean[:, seq_len + 2:]  # tokens predicted from positions seq_len+1 .. 2*seq_len-1

    def metric(logits: Tensor, dataset: Any) -> Tensor:
        """Mean log-probability of the second copy's tokens 2..L, per example: [B]."""
        lp_ = logits[:, seq_len + 1:-1].log_softmax(-1)
        return lp_.gather(-1, targets.to(lp_.device)[..., None])[..., 0].mean(-1)

    data = TaskDataset.from_tokens(clean, corrupted, metric, name="induction")
    variants = [[(p, f"{i}.{k}") for p in prev_heads for i in induction_heads]
                for k in ("q", "k", "v")]
    vals = edge_patching(model, data, variants)
    mc, mk = baseline_metrics(model, data)
    effects = {k: 1.0 - float(normalize(v, mc, mk)) for k, v in zip(("q", "k", "v"), vals)}
    return InductionComposition(list(prev_heads), list(induction_heads), mc, mk, effects,
                                [float(prev[l, h]) for l, h in prev_lh],
                                [float(ind[l, h]) for l, h in ind_lh])


def top_heads(scores: Float[Tensor, "layer head"], k: int = 3, largest: bool = True) -> list[str]:
    """Names of the ``k`` heads with the largest (or smallest) value in ``scores [L, H]``."""
    if scores.ndim != 2:
        raise TutorialError(f"scores must be [n_layers, n_heads], got {tuple(scores.shape)}")
    flat = scores.flatten().nan_to_num(float("-inf") if largest else float("inf"))
    idx = flat.topk(min(k, flat.numel()), largest=largest).indices
    H = scores.shape[1]
    return [head_name(int(i) // H, int(i) % H) for i in idx]


def head_grid(model: Any, scores: Any) -> Float[Tensor, "layer head"]:
    """``[L, H]`` of the normalised effects of a path-patching result whose senders are heads
    (:class:`tutorial_utils.path_patching.EdgeScores`, e.g. every head into ``["logits"]``);
    senders that are not heads (``embed``, MLPs) are left out, heads not scored stay 0."""
    grid = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for (sender, _), x in zip(scores.edges, scores.normalized_effect()):
        if sender.startswith("a"):
            grid[parse_head(sender)] = float(x)
    return grid


def ioi_positions(dataset: Any) -> dict[str, Int[Tensor, " batch"]]:
    """Positions of the indirect object (``IO``), the first and second subject mentions (``S1``,
    ``S2``) and the final position (``END``) in each clean IOI prompt, each ``[B]``."""
    toks, cand = dataset.clean_tokens, dataset.candidate_ids
    io, s1, s2 = [], [], []
    for row, (io_id, s_id) in zip(toks, cand[:, :2].tolist()):
        io_hits = (row == io_id).nonzero().flatten()
        s_hits = (row == s_id).nonzero().flatten()
        if len(io_hits) != 1 or len(s_hits) != 2:
            raise TutorialError("not an IOI prompt: the indirect object must occur once and the "
                             "subject twice (build it with tasks.make_ioi)")
        io.append(int(io_hits[0]))
        s1.append(int(s_hits[0]))
        s2.append(int(s_hits[1]))
    return {"IO": torch.tensor(io), "S1": torch.tensor(s1), "S2": torch.tensor(s2),
            "END": dataset.answer_pos.clone()}


def attention_between(model: Any, tokens: Int[Tensor, "batch pos"], query_pos: Int[Tensor, " batch"],
                      key_pos: Int[Tensor, " batch"]) -> Float[Tensor, "layer head"]:
    """``[L, H]``: mean over the batch of every head's attention from ``query_pos[b]`` to
    ``key_pos[b]`` (one forward pass, patterns only)."""
    if query_pos.shape != key_pos.shape or query_pos.shape[0] != tokens.shape[0]:
        raise TutorialError("query_pos and key_pos must both be [batch] for tokens [batch, seq]")
    b = torch.arange(tokens.shape[0])
    # per layer, pattern[b, :, q_b, k_b] is [B, H] (the indexed axes come first)
    return torch.stack([p[b, :, query_pos, key_pos].mean(0)
                        for p in attention_patterns(model, tokens)]).cpu()
