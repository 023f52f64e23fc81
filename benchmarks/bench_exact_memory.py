"""Benchmark: the memory exact edge patching adds, on a GPT-2-small-shaped model on CPU.

A GPT2LMHeadModel with GPT-2 small's shape (12 layers, 12 heads, d_model 768; 32,491 edges) and
random weights (no download) is saved with the real GPT-2 tokenizer and booted through
``load_model(..., hooks=True)``. ``circuits.exact_scores`` then patches ``--edges`` edges (the
first ones in index order) on 8 Greater-Than prompt pairs. A child process samples its resident
set size every 2 ms; the figure is the peak above the RSS just before the call (model loaded,
one forward done), with glibc's ``MALLOC_MMAP_THRESHOLD_`` at 1 MiB so freed tensors leave the
RSS (as ``bench_eap.py`` does).

    python benchmarks/bench_exact_memory.py [--edges 2048] [--threads 1]

Works on any checkout whose ``circuits.exact_scores`` takes ``(model, graph, dataset,
edges=mask)``, so the same script measures an older commit:
``PYTHONPATH=/path/to/old/checkout python benchmarks/bench_exact_memory.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _child(ckpt: str, n_edges: int, threads: int) -> None:
    import resource  # noqa: F401  (imported early: the sampler must not allocate much)

    import psutil
    import torch

    torch.set_num_threads(threads)
    from tutorial_utils.circuits import Graph, exact_scores
    from tutorial_utils.models import load_model
    from tutorial_utils.tasks import make_task

    model = load_model(ckpt, device="cpu", hooks=True, verbose=False)
    ds = make_task("greater_than", model, n=8, seed=0)
    g = Graph.from_model(model)
    pairs = g.real_edges.nonzero()[:n_edges]
    mask = torch.zeros_like(g.real_edges)
    mask[pairs[:, 0], pairs[:, 1]] = True
    with torch.no_grad():
        model(ds.clean_tokens)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    exact_scores(model, g, ds, edges=mask)
    seconds = time.perf_counter() - t0
    stop.set()
    t.join()
    print(json.dumps({"edges": int(mask.sum()), "seconds": seconds,
                      "added_mib": (peak[0] - base) / 2 ** 20, "base_mib": base / 2 ** 20}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--edges", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.child, args.edges, args.threads)
        return
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tutorial_utils.gpt2_tokenizer import load_gpt2_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).eval().save_pretrained(tmp)
        load_gpt2_tokenizer().save_pretrained(tmp)
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(2 ** 20), MALLOC_TRIM_THRESHOLD_="0",
                   OMP_NUM_THREADS=str(args.threads))
        out = subprocess.run([sys.executable, __file__, "--child", tmp, "--edges",
                              str(args.edges), "--threads", str(args.threads)],
                             env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"exact_scores over {result['edges']} edges of a GPT-2-small-shaped model: "
          f"{result['seconds']:.1f} s, peak memory added {result['added_mib']:.0f} MiB "
          f"(process at {result['base_mib']:.0f} MiB before the call)")


if __name__ == "__main__":
    main()
