"""Benchmark: EAP and EAP-IG over every edge of a GPT-2-small-shaped model on CPU.

A GPT2LMHeadModel with GPT-2 small's shape (12 layers, 12 heads, d_model 768; 32,491 edges) and
random weights (no download) is saved with the real GPT-2 tokenizer and booted through
``load_model`` like the course's models. A batch of 8 random 16-token prompt pairs (clean and
corrupted differ at one position) is scored with a logit-difference metric.

    python benchmarks/bench_eap.py [--batch 16] [--seq 16] [--threads N] [--json out.json]

Reports seconds per example for EAP and EAP-IG (5 steps), their ratio, and the **peak memory of
each method** (issue 10: EAP-IG's peak must stay within 1.1x EAP's on the same batch). Each
method runs in its own fresh process (the model loaded from the same saved checkpoint), where a
sampling thread reads the resident set size every 2 ms; the peak is reported above the RSS
measured just before the call (model loaded, one forward done). The children run with glibc's
``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MiB (and ``MALLOC_TRIM_THRESHOLD_=0``), so every tensor
buffer is its own mapping, returned to the system when freed: the RSS then follows the live
tensors instead of what the allocator keeps cached. On a CUDA device the figure is
``torch.cuda.max_memory_allocated`` instead. Three runs: EAP; EAP-IG with the default chunking
(one IG step per forward, one running sum of gradients); EAP-IG with every step stacked in one
forward (``max_batch = steps * batch``, the old behaviour). The script also checks that the
chunked and stacked EAP-IG scores agree to 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tutorial_utils.circuits import Graph, count_edges, eap_ig_scores, eap_scores  # noqa: E402
from tutorial_utils.tasks.base import TaskDataset  # noqa: E402



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


def rss_now_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_during(fn) -> tuple[float, float, object]:
    """(seconds, peak memory above the start in MiB, result) of ``fn()``."""
    import threading

    dev_cuda = torch.cuda.is_available()
    if dev_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = rss_now_mib()
    peak = [base_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_now_mib())
            stop.wait(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    out = fn()
    if dev_cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    peak[0] = max(peak[0], rss_now_mib())
    if dev_cuda:
        return dt, (torch.cuda.max_memory_allocated() - base) / 2**20, out
    return dt, peak[0] - base_rss, out


def child(args) -> None:
    """One method in this (fresh) process; writes {"seconds", "peak_mib"} and the scores."""
    from tutorial_utils.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.model_dir, device=device, hooks=True, verbose=False)
    graph = Graph.from_model(model)
    ds = random_dataset(model.cfg.d_vocab, args.batch, args.seq)
    B = args.batch
    with torch.no_grad():
        model(ds.clean_tokens.to(device))  # lazy initialisations happen before the baseline
    if args.child == "eap":
        fn = lambda: eap_scores(model, graph, ds, batch_size=B)  # noqa: E731
    elif args.child == "eap-ig":
        fn = lambda: eap_ig_scores(model, graph, ds, steps=args.steps, batch_size=B)  # noqa: E731
    else:  # every step stacked in one forward
        fn = lambda: eap_ig_scores(model, graph, ds, steps=args.steps, batch_size=B,  # noqa: E731
                                   max_batch=args.steps * B)
    dt, peak, scores = peak_during(fn)
    torch.save(scores, args.out + ".pt")
    Path(args.out).write_text(json.dumps({"seconds": dt, "peak_mib": peak}))


def main() -> None:
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        build_model(tmp)
        for method in ("eap", "eap-ig", "eap-ig-stacked"):
            out = str(Path(tmp) / f"{method}.json")
            cmd = [sys.executable, __file__, "--child", method, "--model-dir", tmp, "--out", out,
                   "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1048576", MALLOC_TRIM_THRESHOLD_="0")
            subprocess.run(cmd, check=True, env=env)
            res[method] = json.loads(Path(out).read_text())
            res[method]["scores"] = torch.load(out + ".pt")
    diff = float((res["eap-ig"]["scores"] - res["eap-ig-stacked"]["scores"]).abs().max())
    B = args.batch
    out = {
        "edges": count_edges(12, 12), "batch": B, "seq": args.seq, "eap_ig_steps": args.steps,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "eap_s_per_example": res["eap"]["seconds"] / B,
        "eap_ig_s_per_example": res["eap-ig"]["seconds"] / B,
        "eap_ig_stacked_s_per_example": res["eap-ig-stacked"]["seconds"] / B,
        "eap_peak_mib": res["eap"]["peak_mib"],
        "eap_ig_peak_mib": res["eap-ig"]["peak_mib"],
        "eap_ig_stacked_peak_mib": res["eap-ig-stacked"]["peak_mib"],
        "eap_ig_over_eap_peak": res["eap-ig"]["peak_mib"] / res["eap"]["peak_mib"],
        "max_abs_diff_chunked_vs_stacked": diff,
    }
    for k, v in out.items():
        print(f"{k:34s} {v:.6g}" if isinstance(v, float) else f"{k:34s} {v}")
    ok = out["eap_ig_over_eap_peak"] <= 1.1 and diff <= 1e-5
    print("bar (EAP-IG peak <= 1.1x EAP, same scores to 1e-5):", "met" if ok else "NOT met")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
