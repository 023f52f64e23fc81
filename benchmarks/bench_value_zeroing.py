"""Benchmark: batched Value Zeroing against a per-token loop that also starts at layer l.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/bench_value_zeroing.py [--decoder offline]
        [--encoder offline --encoder minilm-l6] [--lengths 20 60] [--repeats 3]

Both sides start every variant from the clean hidden state at layer ``l``'s input (neither
re-runs layers ``0..l-1``): :func:`value_zeroing` runs the ``T`` variants of a layer as one
batched call of that layer; :func:`value_zeroing_loop` (the context-mixing toolkit's shape)
calls the Hugging Face block module once per (layer, source) with a hook that zeroes the value
vector. For each model and length it prints the max abs difference between the batched
float32 difference form and the float64 loop (the bar: <= 1e-5, the tolerance
``tests/test_context_mixing_weights.py`` states), the best-of-``repeats`` wall times and the
speed-up (the bar: >= 5x at 20 tokens on the small course models; on MiniLM the FFN dominates,
see below). ``benchmarks/bench_context_mixing.py`` times every method on MiniLM.
Not a test: timings depend on the machine.

What bounds the speed-up on a CPU: both sides must evaluate the FFN (and the LayerNorms) at
``T x T`` distinct points per layer, one per (query, zeroed source); batching removes the
per-call overhead and the ``T`` recomputations of the Q/K/V/O projections (``4 d^2`` of the
``12 d^2`` multiply-adds per token and layer), not the FFN's ``8 d^2``. Once the loop's calls are
large enough to be compute-bound (MiniLM, longer sentences) the ratio tends to about 1.5x plus the
overhead saved.
"""

from __future__ import annotations

import argparse
import time

import torch

from tutorial_utils.context_mixing import value_zeroing, value_zeroing_loop
from tutorial_utils.models import load_encoder, load_model

WORDS = ("the keys on the old cabinet near the door of the house that the farmer saw were red "
         "and the dog liked the cat . the teachers behind the window are happy and the boys "
         "with the books were here . the queen of the river has a name and the students near "
         "the tables do not move . the doctor by the road looks tired and the horses under the "
         "trees seem old . the girl with the flowers is ready").split()


def _best(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def tokens_of_length(model, n: int) -> torch.Tensor:
    """Exactly ``n`` tokens: the model's own start token(s) plus course words, cut to ``n``
    (an encoder keeps its final ``[SEP]``)."""
    toks = model.to_tokens(" ".join(WORDS))[0]
    if toks.shape[0] < n:
        raise ValueError(f"benchmark text has {toks.shape[0]} tokens, need {n}")
    sep = getattr(model.tokenizer, "sep_token_id", None)
    if sep is not None and int(toks[-1]) == sep:
        return torch.cat([toks[:n - 1], toks[-1:]])
    return toks[:n]


def bench(model, tokens: torch.Tensor, repeats: int) -> dict[str, float]:
    value_zeroing(model, tokens)  # warm-up (loads the original weights once)
    t_fast, fast = _best(lambda: value_zeroing(model, tokens), repeats)
    t_slow, slow = _best(lambda: value_zeroing_loop(model, tokens), max(1, repeats - 1))
    return {"tokens": tokens.shape[-1], "max_abs_diff": float((fast - slow).abs().max()),
            "batched_s": t_fast, "loop_s": t_slow, "speedup": t_slow / t_fast}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decoder", action="append")
    ap.add_argument("--encoder", action="append")
    ap.add_argument("--lengths", type=int, nargs="+", default=[20, 60])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    runs = [("decoder", load_model(n, device=args.device, verbose=False))
            for n in (args.decoder or ["offline"])]
    runs += [("encoder", load_encoder(n, device=args.device, verbose=False))
             for n in (args.encoder or ["offline"])]
    print(f"torch threads: {torch.get_num_threads()}")
    for kind, model in runs:
        for n in args.lengths:
            r = bench(model, tokens_of_length(model, n), args.repeats)
            ok = r["max_abs_diff"] <= 1e-5 and (r["speedup"] >= 5 or n != 20)
            print(f"{kind} {getattr(model, 'tutorial_model_name', '')}: {r['tokens']} tokens, "
                  f"max |batched - loop| = {r['max_abs_diff']:.1e}, batched {r['batched_s']:.3f} s, "
                  f"loop {r['loop_s']:.3f} s, speed-up {r['speedup']:.1f}x "
                  f"[{'meets' if ok else 'MISSES'} the bar: <= 1e-5, >= 5x at 20 tokens]")


if __name__ == "__main__":
    main()
