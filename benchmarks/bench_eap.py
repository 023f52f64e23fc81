"""Benchmark: EAP and EAP-IG over every edge of a GPT-2-small-shaped model on CPU.

A GPT2LMHeadModel with GPT-2 small's shape (12 layers, 12 heads, d_model 768; 32,491 edges) and
random weights (no download) is saved with the real GPT-2 tokenizer and booted through
``load_model`` like the course's models. A batch of 8 random 16-token prompt pairs (clean and
corrupted differ at one position) is scored with a logit-difference metric.

    python benchmarks/bench_eap.py [--threads N] [--repeats 3] [--json out.json]

Reports seconds per example for EAP and EAP-IG (5 steps), their ratio (the bar: within 7x) and
the peak resident memory of the process after each method (``ru_maxrss``), plus the torch
profiler's peak CPU allocation when available.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tutorial_utils.circuits import Graph, eap_ig_scores, eap_scores  # noqa: E402
from tutorial_utils.tasks.base import TaskDataset  # noqa: E402


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_model(tmp: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tutorial_utils.gpt2_tokenizer import load_gpt2_tokenizer
    from tutorial_utils.models import load_model

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=12, n_head=12, n_embd=768)
    GPT2LMHeadModel(cfg).eval().save_pretrained(tmp)
    load_gpt2_tokenizer().save_pretrained(tmp)
    return load_model(tmp, device="cpu", hooks=True, verbose=False)


def random_dataset(vocab: int, batch: int, seq: int, seed: int = 0) -> TaskDataset:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (batch, seq), generator=g)
    corrupted = clean.clone()
    corrupted[:, seq // 2] = torch.randint(0, vocab, (batch,), generator=g)
    cands = torch.randint(0, vocab, (batch, 2), generator=g)
    return TaskDataset("random", "logit_diff", [""] * batch, [""] * batch, clean, corrupted,
                       torch.full((batch,), seq - 1), cands,
                       torch.tensor([[1.0, -1.0]] * batch), [""] * batch)


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rss0 = rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(tmp)
    rss_model = rss_mib()
    graph = Graph.from_model(model)
    ds = random_dataset(model.cfg.d_vocab, args.batch, args.seq)
    B = args.batch
    eap_scores(model, graph, ds, batch_size=B)  # warm-up
    t_eap = timed(lambda: eap_scores(model, graph, ds, batch_size=B), args.repeats)
    rss_eap = rss_mib()
    t_ig = timed(lambda: eap_ig_scores(model, graph, ds, steps=args.steps, batch_size=B),
                 args.repeats)
    rss_ig = rss_mib()
    out = {
        "edges": graph.n_edges, "nodes": graph.n_nodes, "batch": B, "seq": args.seq,
        "threads": torch.get_num_threads(),
        "eap_s_per_example": t_eap / B, "eap_ig_s_per_example": t_ig / B,
        "eap_ig_steps": args.steps, "eap_ig_over_eap": t_ig / t_eap,
        "rss_before_model_mib": rss0, "rss_peak_after_model_mib": rss_model,
        "rss_peak_after_eap_mib": rss_eap, "rss_peak_after_eap_ig_mib": rss_ig,
    }
    for k, v in out.items():
        print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
