"""Measure the offline model on held-out prompts: the numbers its model card reports.

Every task set is built by :mod:`tutorial_utils.tasks` from frames, words and start years that
the corpus never used in that task's sentences (see ``frames("heldout")`` and ``vocab.Split``).

Induction (Olsson et al. 2022): on ``BOS + r + r`` with ``r`` a random sequence of ``L`` tokens,
the loss on the second copy should be far below the first, and an induction head at query
position ``i`` of the second copy attends to ``i - L + 1`` (the token after the previous
occurrence of the current token). A head's induction score is that attention averaged over the
second copy's positions and over sequences.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..induction import induction_scores_from_patterns, per_token_loss, repeated_random_tokens
from ..tasks import accuracy, make_facts, make_greater_than, make_ioi, make_sva, top1_accuracy


@dataclass
class OfflineMetrics:
    greater_than_pd: float
    greater_than_pd_corrupted: float
    greater_than_acc: float
    sva_pd: float
    sva_acc: float
    ioi_logit_diff: float
    ioi_acc: float
    induction_loss_first: float
    induction_loss_second: float
    induction_best_score: float
    induction_best_head: str
    facts_top1: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def meets_bar(self) -> dict[str, bool]:
        """Each target of the offline-model issue, True when met."""
        return {
            "greater_than_pd>=0.80": self.greater_than_pd >= 0.80,
            "greater_than_corrupted_far_lower": self.greater_than_pd_corrupted
            <= self.greater_than_pd - 0.5,
            "sva_pd>=0.80": self.sva_pd >= 0.80,
            "sva_acc>=0.95": self.sva_acc >= 0.95,
            "ioi_logit_diff>=2.0": self.ioi_logit_diff >= 2.0,
            "ioi_acc>=0.90": self.ioi_acc >= 0.90,
            "induction_second<first/2": self.induction_loss_second
            < self.induction_loss_first / 2,
            "induction_score>=0.5": self.induction_best_score >= 0.5,
            "facts_top1>=0.95": self.facts_top1 >= 0.95,
        }


def _logits(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Logits from a HF causal LM or a TransformerBridge."""
    out = model(tokens)
    return out.logits if hasattr(out, "logits") else out


@torch.no_grad()
def evaluate_model(model: Any, tokenizer: Any, n: int = 200, seed: int = 0,
                   induction_len: int = 20) -> OfflineMetrics:
    """Compute every model-card metric for a HF ``GPT2LMHeadModel`` (eager attention).

    ``n`` prompts per task; the fact set is every trained fact.
    """
    was_training = model.training
    model.eval()
    gt = make_greater_than(tokenizer, n=n, frames_split="heldout", nouns="heldout",
                           years="heldout", seed=seed)
    gt_clean = _logits(model, gt.clean_tokens)
    gt_corr = _logits(model, gt.corrupted_tokens)
    sva_ds = make_sva(tokenizer, n=n, frames_split="heldout", nouns="heldout",
                      attractor="opposite", seed=seed)
    sva_logits = _logits(model, sva_ds.clean_tokens)
    ioi_ds = make_ioi(tokenizer, n=n, frames_split="heldout", names="heldout", seed=seed)
    ioi_logits = _logits(model, ioi_ds.clean_tokens)
    facts = make_facts(tokenizer, seed=seed)
    facts_logits = _logits(model, facts.clean_tokens)

    bos = tokenizer.bos_token_id
    toks = repeated_random_tokens(len(tokenizer), induction_len, 50, bos, seed=seed)
    out = model(toks, output_attentions=True)
    nll = per_token_loss(out.logits, toks)
    L = induction_len
    first = nll[:, 1:L].mean()  # predicting tokens 2..L of the first copy
    second = nll[:, L + 1:].mean()  # predicting tokens 2..L of the second copy
    scores = induction_scores_from_patterns(torch.stack(out.attentions), L)  # [layer, head]
    best = int(scores.argmax())
    n_heads = scores.shape[1]
    model.train(was_training)
    return OfflineMetrics(
        greater_than_pd=float(gt.metric(gt_clean)),
        greater_than_pd_corrupted=float(gt.metric(gt_corr)),
        greater_than_acc=accuracy(gt_clean, gt),
        sva_pd=float(sva_ds.metric(sva_logits)),
        sva_acc=accuracy(sva_logits, sva_ds),
        ioi_logit_diff=float(ioi_ds.metric(ioi_logits)),
        ioi_acc=accuracy(ioi_logits, ioi_ds),
        induction_loss_first=float(first),
        induction_loss_second=float(second),
        induction_best_score=float(scores.max()),
        induction_best_head=f"L{best // n_heads}H{best % n_heads}",
        facts_top1=top1_accuracy(facts_logits, facts),
    )


@torch.no_grad()
def generalisation_breakdown(model: Any, tokenizer: Any, n: int = 200, seed: int = 5
                             ) -> list[dict[str, Any]]:
    """IOI and SVA metrics for every combination of trained/held-out frames and words, to show
    which kind of novelty a model handles (rows: task, frames, words, metric, accuracy)."""
    model.eval()
    rows = []
    for frames in ("train", "heldout", "canonical"):
        for words in ("train", "heldout"):
            for task, build in (("ioi", lambda: make_ioi(tokenizer, n=n, frames_split=frames,
                                                         names=words, seed=seed)),
                                ("sva", lambda: make_sva(tokenizer, n=n, frames_split=frames,
                                                         nouns=words, seed=seed))):
                ds = build()
                logits = _logits(model, ds.clean_tokens)
                rows.append({"task": task, "frames": frames, "words": words,
                             "metric": float(ds.metric(logits)), "accuracy": accuracy(logits, ds)})
    return rows
