"""Greater-Than (Hanna, Liu & Variengien 2023, "How does GPT-2 compute greater-than?").

Clean: "The war lasted from the year 1741 to the year 17"  -> any two-digit year above 41.
Corrupted: the same prompt with the start year's two digits set to "01" ("1701"), which leaves
the set of admissible years almost unchanged and so removes the cue.

Metric (probability difference): with p = softmax(logits at the last position) and YY the
start year's two digits,

    PD = sum_{y > YY} p("y") - sum_{y <= YY} p("y"),   y ranging over the 100 tokens "00".."99".
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from .base import (TaskBuildError, TaskDataset, assemble, check_example_count, encode,
                   get_tokenizer, single_token_id)
from .vocab import CENTURIES, EVENT_NOUNS
from ..errors import TutorialError

__all__ = ["CANONICAL_FRAME", "frames", "is_heldout_start_year", "make_greater_than", "SPANS",
           "SUBJECTS", "VERBS", "year_token_ids"]

SUBJECTS = ("The {noun}", "This {noun}", "That {noun}", "Their {noun}", "Our {noun}",
            "His {noun}", "Her {noun}", "One {noun}")
VERBS = ("lasted", "continued", "ran", "went on", "stretched", "took place")
SPANS = (
    ("from the year {start}", "to the year {cc}"),
    ("from {start}", "to {cc}"),
    ("from the year {start}", "until the year {cc}"),
    ("from {start}", "until {cc}"),
    ("from {start}", "through {cc}"),
    ("between {start}", "and {cc}"),
    ("between the year {start}", "and the year {cc}"),
    ("from the year {start}", "to {cc}"),
    ("from {start}", "to the year {cc}"),
)


def _all_frames() -> list[tuple[tuple[int, int, int], str]]:
    frames = []
    for (i, s), (j, v), (k, (a, b)) in itertools.product(
        enumerate(SUBJECTS), enumerate(VERBS), enumerate(SPANS)
    ):
        frames.append(((i, j, k), f"{s} {v} {a} {b}"))
    return frames


#: The frame of Hanna et al. (2023); it is one of the held-out frames.
CANONICAL_FRAME = "The {noun} lasted from the year {start} to the year {cc}"


def frames(which: str) -> list[str]:
    """Prompt frames: ``canonical``, ``train`` (used in the offline corpus), ``heldout``
    (never in the corpus: every combination of subject, verb and span with (i+j+k) % 5 == 0),
    or ``all``. Each frame has the fields {noun}, {start} (four-digit year) and {cc}."""
    every = _all_frames()
    if which == "canonical":
        return [CANONICAL_FRAME]
    if which == "all":
        return [f for _, f in every]
    if which == "heldout":
        return [f for (i, j, k), f in every if (i + j + k) % 5 == 0]
    if which == "train":
        return [f for (i, j, k), f in every if (i + j + k) % 5 != 0]
    raise TutorialError(f"frames must be canonical, train, heldout or all; got {which!r}")


def is_heldout_start_year(yy: int) -> bool:
    """Start years whose last two digits are 2 mod 5 (02, 07, ..., 97) never start a span in
    the offline corpus (they still occur as end years)."""
    return yy % 5 == 2


def year_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the 100 two-digit tokens "00".."99" (no leading space), in order."""
    return [single_token_id(tokenizer, f"{y:02d}", "the year tokens") for y in range(100)]


def _year_splits(tokenizer: Any, cc: int, yy: int) -> bool:
    """Whether " {cc}{yy}" tokenises as " {cc}" + "{yy}" (Hanna et al. keep only such years)."""
    ids = encode(tokenizer, f" {cc}{yy:02d}")
    return len(ids) == 2 and ids == encode(tokenizer, f" {cc}") + encode(tokenizer, f"{yy:02d}")


def make_greater_than(
    tokenizer_or_model: Any,
    n: int = 100,
    frames_split: str = "canonical",
    nouns: str = "all",
    years: str = "all",
    centuries: tuple[int, ...] = CENTURIES,
    seed: int = 0,
) -> TaskDataset:
    """Build ``n`` Greater-Than prompt pairs for a tokenizer (or a model's tokenizer).

    Args:
        frames_split: ``canonical``, ``train``, ``heldout`` or ``all`` (see :func:`frames`).
        nouns: ``train``, ``heldout`` or ``all`` event nouns.
        years: ``train`` (start years seen in the corpus), ``heldout`` or ``all``.
        centuries: centuries to draw from; years whose clean or "01" form does not split into
            century + two digits for this tokenizer are skipped (as in Hanna et al.).

    Returns a :class:`TaskDataset` with ``meta`` keys noun, cc, yy, frame.
    """
    check_example_count(n)
    tok = get_tokenizer(tokenizer_or_model)
    frame_list = frames(frames_split)
    noun_list = EVENT_NOUNS.get(nouns)
    if years not in ("train", "heldout", "all"):
        raise TutorialError(f"years must be train, heldout or all; got {years!r}")
    valid = [
        (cc, yy)
        for cc in centuries
        if _year_splits(tok, cc, 1)
        for yy in range(2, 99)
        if _year_splits(tok, cc, yy)
        and (years == "all" or is_heldout_start_year(yy) == (years == "heldout"))
    ]
    if not valid:
        raise TaskBuildError(
            f"no start year in centuries {centuries} splits into century + two digits "
            "(with its '01' corruption) for this tokenizer"
        )
    year_ids = year_token_ids(tok)
    rng = random.Random(seed)
    clean, corrupted, cands, signs, answers = [], [], [], [], []
    meta: dict[str, list[Any]] = {"noun": [], "cc": [], "yy": [], "frame": []}
    for _ in range(n):
        frame = rng.choice(frame_list)
        noun = rng.choice(noun_list)
        cc, yy = rng.choice(valid)
        clean.append(frame.format(noun=noun, start=f"{cc}{yy:02d}", cc=cc))
        corrupted.append(frame.format(noun=noun, start=f"{cc}01", cc=cc))
        cands.append(year_ids)
        signs.append([1.0 if y > yy else -1.0 for y in range(100)])
        answers.append(f"> {yy:02d}")
        for key, val in zip(meta, (noun, cc, yy, frame)):
            meta[key].append(val)
    return assemble(tok, "greater_than", "prob_diff", clean, corrupted, cands, signs, answers, meta)
