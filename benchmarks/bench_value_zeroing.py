"""Benchmark: batched Value Zeroing against the straightforward per-token loop.

Usage (from the repository root)::

    python benchmarks/bench_value_zeroing.py [--decoder NAME_OR_PATH] [--encoder NAME] [--repeats 3]

For a 20-token sentence on the decoder (``load_model``) and the encoder (``load_encoder``) it
prints the max abs difference between :func:`value_zeroing` and :func:`value_zeroing_loop`
(the bar: <= 1e-5) and the best-of-``repeats`` wall times and speed-up (the bar: >= 5x).
Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from tutorial_utils.context_mixing import value_zeroing, value_zeroing_loop
from tutorial_utils.models import load_encoder, load_model

SENTENCE_DEC = ("The keys on the old cabinet near the door of the house that the farmer saw "
                "were red and the dog liked the cat")
SENTENCE_ENC = "The keys on the old cabinet near the door of the house [MASK] red and clean and the dog is happy ."


def _best(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench(model, tokens: torch.Tensor, repeats: int) -> dict[str, float]:
    value_zeroing(model, tokens)  # warm-up
    t_fast, fast = _best(lambda: value_zeroing(model, tokens), repeats)
    t_slow, slow = _best(lambda: value_zeroing_loop(model, tokens), max(1, repeats - 1))
    return {"tokens": tokens.shape[-1], "max_abs_diff": float((fast - slow).abs().max()),
            "batched_s": t_fast, "loop_s": t_slow, "speedup": t_slow / t_fast}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decoder", default="offline")
    ap.add_argument("--encoder", default="offline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    runs = [("decoder", load_model(args.decoder, device=args.device), SENTENCE_DEC),
            ("encoder", load_encoder(args.encoder, device=args.device), SENTENCE_ENC)]
    for kind, model, text in runs:
        toks = model.to_tokens(text)[:, :20]
        if toks.shape[1] != 20:
            raise ValueError(f"benchmark sentence has {toks.shape[1]} tokens, need 20")
        r = bench(model, toks, args.repeats)
        ok = r["max_abs_diff"] <= 1e-5 and r["speedup"] >= 5
        print(f"{kind} {getattr(model, 'tutorial_model_name', '')}: {r['tokens']} tokens, "
              f"max |batched - loop| = {r['max_abs_diff']:.2e}, batched {r['batched_s']:.3f} s, "
              f"loop {r['loop_s']:.3f} s, speed-up {r['speedup']:.1f}x "
              f"[{'meets' if ok else 'MISSES'} the bar: <= 1e-5 and >= 5x]")


if __name__ == "__main__":
    main()
