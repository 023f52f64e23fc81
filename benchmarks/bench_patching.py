"""Benchmark: batched head x position patching sweep vs transformer_lens.patching.

Runs ``tutorial_utils.patching.patching_sweep(model, ds, "z", ("layer", "pos", "head"),
direction="denoise")`` and ``transformer_lens.patching.get_act_patch_attn_head_out_by_pos`` (one
forward per component) on the same Greater-Than prompts, checks the numbers agree, and reports
wall times. Our sweep is timed twice: as shipped (skipping components whose clean and corrupted
activations are identical, whose value is exactly the base metric) and with ``skip_noops=False``
(pure batching).

    python benchmarks/bench_patching.py [--model offline] [--n 20] [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="offline")
    ap.add_argument("--n", type=int, default=20, help="Greater-Than prompt pairs")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats (best is reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformer_lens.patching as tlp

    from tutorial_utils.models import load_model
    from tutorial_utils.patching import patching_sweep
    from tutorial_utils.tasks import make_task

    model = load_model(args.model, device=args.device)
    ds = make_task("greater_than", model, n=args.n, seed=0).to(model.cfg.device)
    metric = lambda logits: ds.metric(logits)  # noqa: E731
    n_cells = model.cfg.n_layers * ds.seq_len * model.cfg.n_heads

    def ours(skip: bool) -> torch.Tensor:
        return patching_sweep(model, ds, "z", ("layer", "pos", "head"), direction="denoise",
                              skip_noops=skip, progress=False).values

    def theirs() -> torch.Tensor:
        with torch.no_grad():
            _, clean_cache = model.run_with_cache(ds.clean_tokens)
            return tlp.get_act_patch_attn_head_out_by_pos(model, ds.corrupted_tokens, clean_cache,
                                                          metric).float().cpu()

    def best_time(fn) -> tuple[float, torch.Tensor]:
        times, out = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return min(times), out

    ours(True)  # warm-up
    t_tl, ref = best_time(theirs)
    t_ours, val = best_time(lambda: ours(True))
    t_nos, val_nos = best_time(lambda: ours(False))
    res = {
        "model": getattr(model, "tutorial_model_name", args.model),
        "device": str(model.cfg.device),
        "threads": torch.get_num_threads(),
        "n_prompts": len(ds),
        "seq_len": ds.seq_len,
        "components": n_cells,
        "transformer_lens_s": round(t_tl, 3),
        "ours_s": round(t_ours, 3),
        "ours_no_skip_s": round(t_nos, 3),
        "speedup": round(t_tl / t_ours, 2),
        "speedup_no_skip": round(t_tl / t_nos, 2),
        "max_abs_diff": float((val - ref).abs().max()),
        "max_abs_diff_no_skip": float((val_nos - ref).abs().max()),
    }
    print(f"head x position patching sweep, {res['components']} components, {len(ds)} prompts of "
          f"{ds.seq_len} tokens, {res['device']}, {res['threads']} threads")
    print(f"  transformer_lens.patching          {t_tl:8.2f} s")
    print(f"  tutorial_utils (batched + skip)    {t_ours:8.2f} s   speedup {res['speedup']:.1f}x")
    print(f"  tutorial_utils (batched only)      {t_nos:8.2f} s   speedup {res['speedup_no_skip']:.1f}x")
    print(f"  max |ours - TL| = {res['max_abs_diff']:.2e} (no skip: {res['max_abs_diff_no_skip']:.2e})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
