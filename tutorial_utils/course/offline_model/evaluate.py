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

from ...induction import induction_scores_from_patterns, per_token_loss, repeated_random_tokens
from ...tasks import accuracy, make_facts, make_greater_than, make_ioi, make_sva, top1_accuracy
from ...composition import attention_between, copying_scores, induction_classes, induction_composition_patching, induction_patching_data, ioi_positions, parse_head, top_heads
from ...path_patching import iterative_path_patching
from ...tasks.ioi import valid_names
from ...names import head_name


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
        """Each held-out target of the offline-decoder v3 issue, True when met."""
        return {
            "greater_than_pd>=0.85": self.greater_than_pd >= 0.85,
            "greater_than_corrupted_far_lower": self.greater_than_pd_corrupted
            <= self.greater_than_pd - 0.5,
            "sva_pd>=0.80": self.sva_pd >= 0.80,
            "sva_acc>=0.95": self.sva_acc >= 0.95,
            "ioi_logit_diff>=3.0": self.ioi_logit_diff >= 3.0,
            "ioi_acc>=0.90": self.ioi_acc >= 0.90,
            "induction_second<0.2*first": self.induction_loss_second
            < 0.2 * self.induction_loss_first,
            "induction_score>=0.5": self.induction_best_score >= 0.5,
            "facts_top1>=0.95": self.facts_top1 >= 0.95,
        }


def _logits(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Logits (on the CPU) from a HF causal LM or a TransformerBridge on any device."""
    out = model(tokens.to(next(model.parameters()).device))
    return (out.logits if hasattr(out, "logits") else out).cpu()


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
    out = model(toks.to(next(model.parameters()).device), output_attentions=True)
    nll = per_token_loss(out.logits.cpu(), toks)
    L = induction_len
    first = nll[:, 1:L].mean()  # predicting tokens 2..L of the first copy
    second = nll[:, L + 1:].mean()  # predicting tokens 2..L of the second copy
    scores = induction_scores_from_patterns(torch.stack(out.attentions).cpu(), L)  # [layer, head]
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
        induction_best_head=head_name(best // n_heads, best % n_heads),
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


def composition_evidence(bridge: Any, n_ioi: int = 24, threshold: float = 0.05,
                         seed: int = 0) -> dict[str, Any]:
    """The evidence that the model's circuits compose, measured with the package's own tools on
    a ``TransformerBridge`` loaded with ``hooks=True``:

    * IOI (canonical ABBA/BABA prompts, ABC corruption): :func:`iterative_path_patching` with
      ``threshold`` (a fraction of the clean - corrupted logit difference). Reports the layers
      whose heads the walk keeps, every head -> head edge (into a query, key or value input)
      with its normalised effect, and the *name movers*: heads whose direct edge to the logits
      carries >= ``threshold`` of the effect, with their copying score over every name
      (:func:`tutorial_utils.composition.copying_scores`, and anti-copying with
      ``negative=True``) and mean attention from the final position to the indirect object and
      to the second subject mention.
    * Induction: :func:`tutorial_utils.composition.induction_composition_patching` (the
      previous-token head's output patched into the induction head's q, k or v input alone).
    """
    ds = make_ioi(bridge, n=n_ioi, frames_split="canonical", seed=seed)
    kept, steps = iterative_path_patching(bridge, ds, threshold=threshold, max_nodes=16)
    is_head = lambda node: node.startswith("a")  # "aL.hH" (senders) / "aL.hH.q|k|v" (receivers)
    heads = sorted({s for (s, r), _ in kept if is_head(s)}
                   | {r.rsplit(".", 1)[0] for (s, r), _ in kept if is_head(r)})
    layers = sorted({parse_head(h)[0] for h in heads})
    head_to_head = [{"sender": s, "receiver": r, "effect": round(x, 4)}
                    for (s, r), x in kept if is_head(s) and is_head(r)]
    head_to_head.sort(key=lambda e: -abs(e["effect"]))
    name_ids = [bridge.to_single_token(f" {n}") for n in valid_names(bridge)]
    copy = copying_scores(bridge, name_ids)
    pos = ioi_positions(ds)
    att_io = attention_between(bridge, ds.clean_tokens, pos["END"], pos["IO"])
    att_s2 = attention_between(bridge, ds.clean_tokens, pos["END"], pos["S2"])
    anti = copying_scores(bridge, name_ids, negative=True)
    movers = []
    for (s, r), x in kept:
        if r == "logits" and is_head(s) and x >= threshold:
            l, h = parse_head(s)
            movers.append({"head": s, "direct_effect": round(x, 4),
                           "copying_score": round(float(copy[l, h]), 4),
                           "anti_copying_score": round(float(anti[l, h]), 4),
                           "attention_end_to_io": round(float(att_io[l, h]), 4),
                           "attention_end_to_s2": round(float(att_s2[l, h]), 4)})
    ind = induction_composition_patching(bridge)
    # the same with the two heads of highest previous-token score (no threshold), since a model
    # can split the previous-token role between a strong head and a weaker one

    tokens, _ = induction_patching_data(bridge, 20, 16, 0)
    cls = induction_classes(bridge, tokens, 20)
    lowest = min(parse_head(h)[0] for h in cls.induction_heads)
    prev = top_heads(cls.prev_token_scores[:lowest], 2)
    ind2 = induction_composition_patching(bridge, prev_heads=prev[:2],
                                          induction_heads=ind.induction_heads)
    return {
        "ioi": {"n_prompts": n_ioi, "threshold": threshold,
                "edges": [{"sender": s, "receiver": r, "effect": round(x, 4)} for (s, r), x in kept],
                "heads": heads, "layers_with_heads": layers, "head_to_head_edges": head_to_head,
                "name_movers": movers,
                "logit_diff_clean": round(steps[0].scores.metric_clean, 4),
                "logit_diff_corrupted": round(steps[0].scores.metric_corrupted, 4)},
        "induction": {"prev_token_heads": ind.prev_heads, "induction_heads": ind.induction_heads,
                      "prev_token_scores": [round(x, 4) for x in ind.prev_token_scores],
                      "induction_scores": [round(x, 4) for x in ind.induction_scores],
                      "effect_removed_via": {k: round(v, 4) for k, v in ind.effects.items()},
                      "two_strongest_prev_heads": list(prev[:2]),
                      "effect_removed_via_two_strongest":
                          {k: round(v, 4) for k, v in ind2.effects.items()}},
        "command": "python -m tutorial_utils.course.offline_model.model_card DIR --measure",
    }
