"""Subject-verb agreement with attractors (Linzen et al. 2016; Finlayson et al. 2021).

Clean: "The keys on the cabinet"  -> a plural verb ("are", "were", "have", ...).
Corrupted: "The key on the cabinet" (only the subject's number flips; same token length).

Metric (probability difference over the verb list): with p = softmax(logits at the last
position), V the (singular, plural) verb pairs of ``vocab.SVA_VERBS``,

    PD = sum_{v in V} p(agreeing form of v) - p(disagreeing form of v),

agreement judged against the *clean* subject's number.
"""

from __future__ import annotations

import random
from typing import Any

from .base import (TaskBuildError, TaskDataset, assemble, check_example_count, get_tokenizer,
                   single_token_id)
from .vocab import SVA_NOUNS, SVA_VERBS
from ..errors import TutorialError

__all__ = ["CANONICAL_FRAME", "frames", "make_sva", "PREPOSITIONS_HELDOUT", "PREPOSITIONS_TRAIN",
           "RC_VERBS_HELDOUT", "RC_VERBS_TRAIN", "verb_token_ids"]

PREPOSITIONS_TRAIN = ("on", "near", "behind", "under", "by", "with", "in", "inside")
PREPOSITIONS_HELDOUT = ("above", "beside")
RC_VERBS_TRAIN = ("saw", "liked", "found")
RC_VERBS_HELDOUT = ("wanted",)

#: The frame most SVA studies start from; it is a training frame.
CANONICAL_FRAME = "The {subj} on the {attr}"


def frames(which: str) -> list[str]:
    """Prompt frames with fields {subj} and {attr}: ``canonical``, ``train``, ``heldout``
    (prepositions and relative-clause verbs never used in the corpus's agreement sentences),
    ``all``, or ``none`` (no attractor: "The {subj}")."""
    pp = lambda preps: [f"The {{subj}} {p} the {{attr}}" for p in preps]
    rc = lambda verbs: [f"The {{subj}} that the {{attr}} {v}" for v in verbs]
    if which == "canonical":
        return [CANONICAL_FRAME]
    if which == "train":
        return pp(PREPOSITIONS_TRAIN) + rc(RC_VERBS_TRAIN)
    if which == "heldout":
        return pp(PREPOSITIONS_HELDOUT) + rc(RC_VERBS_HELDOUT)
    if which == "all":
        return frames("train") + frames("heldout")
    if which == "none":
        return ["The {subj}"]
    raise TutorialError(f"frames must be canonical, train, heldout, all or none; got {which!r}")


def verb_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Ids of the singular and the plural verb forms (with a leading space)."""
    sing = [single_token_id(tokenizer, f" {s}", "the verb list") for s, _ in SVA_VERBS]
    plur = [single_token_id(tokenizer, f" {p}", "the verb list") for _, p in SVA_VERBS]
    return sing, plur


def make_sva(
    tokenizer_or_model: Any,
    n: int = 100,
    frames_split: str = "canonical",
    nouns: str = "all",
    attractor: str = "opposite",
    seed: int = 0,
) -> TaskDataset:
    """Build ``n`` agreement prompt pairs.

    Args:
        frames_split: see :func:`frames`.
        nouns: ``train``, ``heldout`` or ``all`` subject nouns (attractors come from all nouns).
        attractor: ``opposite`` (attractor number differs from the clean subject's, the hard
            case), ``same``, or ``none`` (forces the ``none`` frame).

    Returns a :class:`TaskDataset` with ``meta`` keys subject, attractor, plural (the clean
    subject's number), frame.
    """
    check_example_count(n)
    if attractor not in ("opposite", "same", "none"):
        raise TutorialError(f"attractor must be opposite, same or none; got {attractor!r}")
    tok = get_tokenizer(tokenizer_or_model)
    frame_list = frames("none" if attractor == "none" else frames_split)
    subjects = SVA_NOUNS.get(nouns)
    sing_ids, plur_ids = verb_token_ids(tok)
    rng = random.Random(seed)
    clean, corrupted, cands, signs, answers = [], [], [], [], []
    meta: dict[str, list[Any]] = {"subject": [], "attractor": [], "plural": [], "frame": []}
    for _ in range(n):
        frame = rng.choice(frame_list)
        subj = rng.choice(subjects)
        attr = rng.choice([p for p in SVA_NOUNS.all if p != subj])
        plural = rng.random() < 0.5
        attr_plural = (not plural) if attractor == "opposite" else plural
        a = attr[int(attr_plural)]
        clean.append(frame.format(subj=subj[int(plural)], attr=a))
        corrupted.append(frame.format(subj=subj[int(not plural)], attr=a))
        good, bad = (plur_ids, sing_ids) if plural else (sing_ids, plur_ids)
        cands.append(good + bad)
        signs.append([1.0] * len(good) + [-1.0] * len(bad))
        answers.append("plural verb" if plural else "singular verb")
        for key, val in zip(meta, (subj[int(plural)], a, plural, frame)):
            meta[key].append(val)
    return assemble(tok, "sva", "prob_diff", clean, corrupted, cands, signs, answers, meta)
