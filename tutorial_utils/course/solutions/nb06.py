"""Reference solutions of ``notebooks/06_features``'s exercises."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ...features.evaluation import next_token_loss
from ...features.unfolded import FrozenState

__all__ = ["ablate_in_model", "edge_by_hand", "feature_dimensionality", "node_influence",
           "sae_loss", "splice_scores"]


def feature_dimensionality(W: Float[Tensor, "instances hidden features"]
                           ) -> Float[Tensor, "instances features"]:
    """Exercise 1.1: Elhage et al.'s ``D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2`` for every
    feature ``i`` (column ``W_i``) of every instance."""
    norms = W.norm(dim=1, keepdim=True)                          # [K, 1, n]
    unit = W / norms.clamp_min(1e-8)
    overlaps = torch.einsum("kmi,kmj->kij", unit, W).pow(2)      # (W_hat_i . W_j)^2, j = i included
    return norms[:, 0].pow(2) / overlaps.sum(-1).clamp_min(1e-12)


def sae_loss(x: Float[Tensor, "batch d"], W_enc: Float[Tensor, "features d"],
             b_enc: Float[Tensor, "features"], W_dec: Float[Tensor, "d features"],
             b_dec: Float[Tensor, "d"], l1_coeff: float, variance: float) -> Float[Tensor, ""]:
    """Exercise 2.1: a ReLU SAE's training loss, ``E||x - x_hat||^2 / V + l1_coeff * E[sum_i
    f_i] / sqrt(V)`` with ``f = ReLU(W_enc (x - b_dec) + b_enc)`` and ``x_hat = W_dec f +
    b_dec`` (sums over the vector, means over the batch)."""
    f = torch.relu((x - b_dec) @ W_enc.T + b_enc)                # the decoder bias comes off first
    x_hat = f @ W_dec.T + b_dec
    mse = (x - x_hat).pow(2).sum(-1).mean() / variance           # fraction of variance unexplained
    l1 = f.sum(-1).mean() / variance ** 0.5                      # features are >= 0: sum = L1 norm
    return mse + l1_coeff * l1


def splice_scores(lm: Any, sae: Any, tokens: Int[Tensor, "batch pos"]) -> tuple[float, float]:
    """Exercise 2.2: ``(fraction of variance explained, share of the next-token loss
    recovered)`` of an SAE on the residual stream before block ``sae.config.layer``, on the
    documents ``tokens``: ``FVE = 1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` over every
    token, and ``(L_zero - L_spliced) / (L_zero - L_clean)``."""
    layer = sae.config.layer
    site = f"resid_pre.{layer}"
    x = lm.activations(tokens, (site,))[site].reshape(-1, sae.config.d_in)   # every token a row
    x_hat = sae(x)
    fve = 1 - (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()

    def spliced(l: int, resid: Tensor) -> Tensor:
        return sae(resid) if l == layer else resid

    def zeroed(l: int, resid: Tensor) -> Tensor:
        return torch.zeros_like(resid) if l == layer else resid

    clean, with_sae, zero = (float(next_token_loss(lm.run(tokens, resid_edit=edit).logits, tokens))
                             for edit in (None, spliced, zeroed))
    return float(fve), (zero - with_sae) / (zero - clean)


def edge_by_hand(lm: Any, frozen: FrozenState, tokens: Int[Tensor, "pos"],
                 write: Float[Tensor, "d_model"], write_layer: int, write_pos: int,
                 read: Float[Tensor, "d_model"], read_layer: int, read_pos: int) -> float:
    """Exercise 4.1: the attribution edge from a source that adds ``write`` to the residual
    stream at ``write_pos`` (through MLP ``write_layer``'s output; ``-1``: the embeddings,
    before block 0) to a transcoder feature of layer ``read_layer`` at ``read_pos`` whose
    encoder row is ``read``: the change of ``read . ln2_out`` when the write is added to the
    model with attention patterns and LayerNorm denominators ``frozen`` and every MLP switched
    off (direct paths only)."""
    site = f"ln2_out.{read_layer}"

    def mlp_input(add: bool) -> Tensor:
        def mlps(layer: int, m_in: Tensor, m_out: Tensor) -> Tensor:
            out = torch.zeros_like(m_out)                    # MLPs off: only direct paths
            if add and layer == write_layer:
                out[:, write_pos] += write                   # a feature writes with its MLP
            return out

        def embeddings(layer: int, x: Tensor) -> Tensor:
            if add and write_layer == -1 and layer == 0:
                x = x.clone()
                x[:, write_pos] += write                     # an embedding enters before block 0
            return x

        res = lm.run(tokens[None], mlp_override=mlps, resid_edit=embeddings, frozen=frozen,
                     capture=(site,))
        return res.cache[site][0, read_pos]

    # frozen, everything is affine: the difference removes the constant terms (biases)
    return float(read @ (mlp_input(True) - mlp_input(False)))


def node_influence(adjacency: Float[Tensor, "nodes nodes"], logit_weights: Float[Tensor, "nodes"]
                   ) -> Float[Tensor, "nodes"]:
    """Exercise 4.2: every node's influence on the weighted logits, ``w^T (N + N^2 + ...)``
    with ``N`` the absolute adjacency (rows: targets) normalised so each row sums to 1."""
    A = adjacency.abs()
    N = A / A.sum(1, keepdim=True).clamp_min(1e-12)                   # each target's inputs sum to 1
    n = N.shape[0]
    eye = torch.eye(n, dtype=N.dtype)
    return logit_weights @ (torch.linalg.inv(eye - N) - eye)           # N + N^2 + ... (N nilpotent)


def ablate_in_model(lm: Any, rm: Any, graph: Any, node: int, target: int) -> float:
    """Exercise 5.1: the change of logit node ``target`` (its weights ``w`` over the vocabulary
    read the demeaned logits at the last position, ``w . (l - mean(l))``) when feature node
    ``node`` is switched off in the real model: ``-a W_dec[:, f]`` added to MLP ``l``'s output at
    position ``p``, everything downstream recomputed."""
    layer, pos, feature = graph.features[node].tolist()
    delta = -graph.activations[node] * rm.transcoders[layer].W_dec[:, feature]
    w = graph.logit_weights[target]

    def mlps(l: int, m_in: Tensor, m_out: Tensor) -> Tensor:
        if l != layer:
            return m_out
        m_out = m_out.clone()
        m_out[:, pos] += delta                              # only this feature's write goes
        return m_out

    def value(logits: Tensor) -> float:
        last = logits[0, -1]
        return float(w @ (last - last.mean()))

    tokens = graph.tokens[None]
    return value(lm.run(tokens, mlp_override=mlps).logits) - value(lm.run(tokens).logits)
