"""Reference solutions of ``notebooks/04_composition``'s exercises."""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["composition_score", "copying_score", "faithfulness", "head_dla", "patch_key_input"]


def composition_score(W_later: Float[Tensor, "d_model d_model"], W_OV: Float[Tensor, "d_model d_model"],
                      kind: str) -> Float[Tensor, ""]:
    """Exercise 1.1: Elhage et al.'s (2021) Q-, K- or V-composition,
    ``||product||_F / (||W_later||_F ||W_OV||_F)`` with product ``W_later W_OV^T`` for keys and
    ``W_OV W_later`` for queries and values (row-vector convention)."""
    if kind == "k":
        product = W_later @ W_OV.T  # keys: x_q @ W_QK @ (x @ W_OV)^T
    else:
        product = W_OV @ W_later  # query or value: (x @ W_OV) @ W_QK or @ W_OV^B
    return product.norm() / (W_later.norm() * W_OV.norm())


def patch_key_input(k_input: Float[Tensor, "batch pos head d_model"],
                    out_current: Float[Tensor, "batch pos d_model"],
                    out_source: Float[Tensor, "batch pos d_model"], head: int
                    ) -> Float[Tensor, "batch pos head d_model"]:
    """Exercise 1.2: one head's key input with one sender's term swapped:
    ``k_input[:, :, head] - out_current + out_source`` (a copy; other heads unchanged)."""
    new = k_input.clone()
    new[:, :, head] = new[:, :, head] + (out_source - out_current)
    return new


def copying_score(emb: Float[Tensor, "n d_model"], W_OV: Float[Tensor, "d_model d_model"],
                  W_U: Float[Tensor, "d_model vocab"], ids: Int[Tensor, "n"], k: int = 1) -> float:
    """Exercise 1.3: the share of tokens whose own logit under ``emb @ W_OV @ W_U`` is among the
    top ``k`` of the whole vocabulary (fewer than ``k`` tokens strictly above it)."""
    logits = emb @ W_OV @ W_U  # [n, d_vocab]
    beaten_by = (logits > logits.gather(1, ids[:, None])).sum(-1)  # tokens above the own logit
    return float((beaten_by < k).float().mean())


def head_dla(result: Float[Tensor, "batch head d_model"], scale: Float[Tensor, "batch 1"],
             W_U: Float[Tensor, "d_model vocab"], io_ids: Int[Tensor, "batch"],
             s_ids: Int[Tensor, "batch"]) -> Float[Tensor, "head"]:
    """Exercise 2.1: each head's direct logit attribution to ``logit(IO) - logit(S)``: its
    output divided by the final LayerNorm's (frozen) scale, dotted with
    ``W_U[:, IO] - W_U[:, S]``, averaged over prompts."""
    direction = (W_U[:, io_ids] - W_U[:, s_ids]).T  # [B, d]: one direction per prompt
    normalised = result / scale[:, :, None]  # what W_U sees of each head's output
    return (normalised * direction[:, None]).sum(-1).mean(0)


def faithfulness(m_circuit: float, m_full: float, m_corrupted: float) -> float:
    """Exercise 3.1: normalised faithfulness ``(M(circuit) - M(corrupted)) / (M(full) -
    M(corrupted))`` (Wang et al. 2023)."""
    return (m_circuit - m_corrupted) / (m_full - m_corrupted)
