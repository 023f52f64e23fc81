"""Factual recall: "The capital of France is" -> " Paris".

Corrupted prompts name another country, so the metric is the logit difference between the
clean country's capital and the corrupted country's capital:

    LD = logit(capital(country)) - logit(capital(other country)).
"""

from __future__ import annotations

import random
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from .base import TaskDataset, assemble, get_tokenizer, single_token_id
from .vocab import CAPITALS

__all__ = ["FRAME", "make_facts", "top1_accuracy"]

FRAME = "The capital of {country} is"


def make_facts(tokenizer_or_model: Any, seed: int = 0) -> TaskDataset:
    """One prompt pair per country of ``vocab.CAPITALS`` (corrupted: a random other country).

    ``meta`` keys: country, capital, other.
    """
    tok = get_tokenizer(tokenizer_or_model)
    rng = random.Random(seed)
    countries = list(CAPITALS)
    clean, corrupted, cands, signs, answers = [], [], [], [], []
    meta: dict[str, list[Any]] = {"country": [], "capital": [], "other": []}
    for country in countries:
        other = rng.choice([c for c in countries if c != country])
        clean.append(FRAME.format(country=country))
        corrupted.append(FRAME.format(country=other))
        good = single_token_id(tok, f" {CAPITALS[country]}", f"the fact about {country}")
        bad = single_token_id(tok, f" {CAPITALS[other]}", f"the fact about {other}")
        cands.append([good, bad])
        signs.append([1.0, -1.0])
        answers.append(f" {CAPITALS[country]}")
        for key, val in zip(meta, (country, CAPITALS[country], other)):
            meta[key].append(val)
    return assemble(tok, "facts", "logit_diff", clean, corrupted, cands, signs, answers, meta)


def top1_accuracy(logits: Float[Tensor, "batch pos vocab"], dataset: TaskDataset) -> float:
    """Share of prompts whose arg-max next token is the correct answer (``candidate_ids[:, 0]``)."""
    if logits.ndim == 3:
        logits = logits[torch.arange(len(dataset), device=logits.device),
                        dataset.answer_pos.to(logits.device)]
    pred = logits.argmax(-1)
    return float((pred == dataset.candidate_ids[:, 0].to(pred.device)).float().mean())
