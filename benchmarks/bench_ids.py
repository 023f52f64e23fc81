"""The token ids the context-mixing benchmarks time, shared by ``bench_context_mixing.py`` (the
project's environment) and ``bench_references.py`` (the references' environment, where the
project cannot be imported): the course's words, repeated as needed, cut to exactly ``n`` ids
with the tokenizer's first and last special tokens kept (``[CLS] ... [SEP]``), and the one way
both time a call (:func:`median_time`). Imports nothing outside the standard library.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

WORDS = ("the keys on the old cabinet near the door of the house that the farmer saw were red "
         "and the dog liked the cat . the teachers behind the window are happy and the boys "
         "with the books were here . the queen of the river has a name and the students near "
         "the tables do not move . the doctor by the road looks tired and the horses under the "
         "trees seem old . the girl with the flowers is ready").split()


def ids_of_length(encode: Callable[[str], Sequence[int]], n: int) -> list[int]:
    """Exactly ``n`` ids: ``encode`` (text -> ids with the special tokens) of the words, the first
    ``n - 1`` ids and the last one."""
    ids = list(encode(" ".join(WORDS * (1 + n // 60))))
    if len(ids) < n:
        raise SystemExit(f"benchmark text has {len(ids)} tokens, need {n}")
    return ids[:n - 1] + ids[-1:]


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after one warm-up call (the first call
    loads checkpoints and caches weights)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
