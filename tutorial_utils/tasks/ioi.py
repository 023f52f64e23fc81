"""Indirect Object Identification (Wang et al. 2023, "Interpretability in the Wild").

Clean (ABBA): "When Mary and John went to the store, John gave a drink to" -> " Mary".
Clean (BABA): "When John and Mary went to the store, John gave a drink to" -> " Mary".
Corrupted (``corruption="s2"``, the default): the repeated subject S is replaced by a third name
C, so neither name is marked as the one to avoid: "When Mary and John went to the store, Tom
gave a drink to". ``"abc"``: all three names fresh, Wang et al.'s ABC distribution ("When Anna
and Paul went to the store, Tom gave a drink to"). ``"io"``: the indirect object replaced by a
fresh name ("When Tom and John went to the store, John gave a drink to"), so the answer moves.

Metric: logit difference  LD = logit(IO) - logit(S)  at the last position.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from .base import (TaskBuildError, TaskDataset, assemble, check_example_count, encode,
                   get_tokenizer, single_token_id)
from .vocab import IOI_OBJECTS, IOI_PLACES, NAMES

INTROS = (
    "When {a} and {b} went to the {place},",
    "After {a} and {b} arrived at the {place},",
    "While {a} and {b} were working at the {place},",
    "Then, {a} and {b} went to the {place}.",
    "Yesterday {a} and {b} met at the {place}.",
    "Once {a} and {b} got to the {place},",
    "As {a} and {b} walked into the {place},",
    "Later, {a} and {b} stayed at the {place}.",
)
ACTIONS = (
    "{s} gave a {obj} to",
    "{s} handed the {obj} to",
    "{s} passed the {obj} to",
    "{s} threw the {obj} to",
    "{s} sent a {obj} to",
    "{s} brought a {obj} to",
    "{s} showed the {obj} to",
    "{s} offered a {obj} to",
)

#: The template of Wang et al. (2023); it is one of the held-out frames.
CANONICAL_FRAME = INTROS[0] + " " + ACTIONS[0]


def frames(which: str) -> list[str]:
    """Frames with fields {a}, {b}, {place}, {s}, {obj}: ``canonical``, ``train``, ``heldout``
    (intro/action combinations with (i + j) % 4 == 0, never in the corpus) or ``all``."""
    combos = [((i, j), f"{x} {y}") for (i, x), (j, y) in
              itertools.product(enumerate(INTROS), enumerate(ACTIONS))]
    if which == "canonical":
        return [CANONICAL_FRAME]
    if which == "all":
        return [f for _, f in combos]
    if which == "heldout":
        return [f for (i, j), f in combos if (i + j) % 4 == 0]
    if which == "train":
        return [f for (i, j), f in combos if (i + j) % 4 != 0]
    raise TaskBuildError(f"frames must be canonical, train, heldout or all; got {which!r}")


def valid_names(tokenizer_or_model: Any, which: str = "all") -> list[str]:
    """The names of ``NAMES.get(which)`` that are one known token (with a leading space) for
    this tokenizer: an unknown word mapped to ``<unk>`` does not count. GPT-2's tokenizer keeps
    all of them; an older or foreign tokenizer may keep fewer."""
    tok = get_tokenizer(tokenizer_or_model)
    unk = getattr(tok, "unk_token_id", None)
    keep = []
    for name in NAMES.get(which):
        ids = encode(tok, f" {name}")
        if len(ids) == 1 and ids[0] != unk:
            keep.append(name)
    return keep


def make_ioi(
    tokenizer_or_model: Any,
    n: int = 100,
    frames_split: str = "canonical",
    names: str = "all",
    order: str = "both",
    seed: int = 0,
    corruption: str = "s2",
) -> TaskDataset:
    """Build ``n`` IOI prompt pairs (clean ABBA/BABA; corrupted as ``corruption`` says: by
    default S2 replaced by a third name C).

    Args:
        frames_split: see :func:`frames`.
        names: ``train``, ``heldout`` or ``all`` names (for A, B and C alike), restricted to
            the ones that are single tokens for this tokenizer (:func:`valid_names`).
        order: ``ABBA``, ``BABA`` or ``both`` (alternating).
        corruption: ``s2`` (S2 -> C), ``abc`` (IO, S1 and S2 -> three fresh names) or ``io``
            (IO -> C); names are single tokens, so clean and corrupted align token by token.

    Returns a :class:`TaskDataset` with ``meta`` keys io, s, c, order, frame, corruption. The
    metric is ``logit(IO) - logit(S)`` of the clean names in both runs.
    """
    check_example_count(n)
    if order not in ("ABBA", "BABA", "both"):
        raise TaskBuildError(f"order must be ABBA, BABA or both; got {order!r}")
    if corruption not in ("s2", "abc", "io"):
        raise TaskBuildError(f"corruption must be s2, abc or io; got {corruption!r}")
    tok = get_tokenizer(tokenizer_or_model)
    frame_list = frames(frames_split)
    name_list = valid_names(tok, names)
    need = 5 if corruption == "abc" else 3
    if len(name_list) < need:
        raise TaskBuildError(f"IOI ({corruption} corruption) needs at least {need} names that are "
                             f"single tokens for this tokenizer; only {len(name_list)} of the "
                             f"{names!r} names are")
    split = "heldout" if frames_split == "heldout" else "all"
    places, objects = IOI_PLACES.get(split), IOI_OBJECTS.get(split)
    rng = random.Random(seed)
    clean, corrupted, cands, signs, answers = [], [], [], [], []
    meta: dict[str, list[Any]] = {"io": [], "s": [], "c": [], "order": [], "frame": [],
                                  "corruption": []}
    for i in range(n):
        frame = rng.choice(frame_list)
        io, s, c = rng.sample(name_list, 3)
        if corruption == "abc":  # drawn only here, so the s2 and io streams stay as they were
            io2, s2 = rng.sample([x for x in name_list if x not in (io, s, c)], 2)
        kind = order if order != "both" else ("ABBA" if i % 2 == 0 else "BABA")
        a, b = (io, s) if kind == "ABBA" else (s, io)
        place, obj = rng.choice(places), rng.choice(objects)
        clean.append(frame.format(s=s, a=a, b=b, place=place, obj=obj))
        if corruption == "s2":
            corrupted.append(frame.format(s=c, a=a, b=b, place=place, obj=obj))
        elif corruption == "io":
            swap = {io: c, s: s}
            corrupted.append(frame.format(s=s, a=swap[a], b=swap[b], place=place, obj=obj))
        else:
            swap = {io: io2, s: s2}
            corrupted.append(frame.format(s=c, a=swap[a], b=swap[b], place=place, obj=obj))
        io_id = single_token_id(tok, f" {io}", f"IOI example {i}")
        s_id = single_token_id(tok, f" {s}", f"IOI example {i}")
        cands.append([io_id, s_id])
        signs.append([1.0, -1.0])
        answers.append(f" {io}")
        for key, val in zip(meta, (io, s, c, kind, frame, corruption)):
            meta[key].append(val)
    return assemble(tok, "ioi", "logit_diff", clean, corrupted, cands, signs, answers, meta)
