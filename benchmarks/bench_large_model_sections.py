"""Time and peak memory of each notebook's "Now on GPT-2 small / BERT" section (issue 12).

Each section runs in a fresh Python process, through the notebooks' own entry point
``run_section(NN, run=True)`` with its default sizes, on random-weight checkpoints of GPT-2
small's and BERT-base's exact shapes (built here, no download; the compute does not depend on
the weights). The time includes loading the model(s); the peak memory is the child's
``ru_maxrss`` (from ``os.wait4``). The bar: every section <= 3 min, all six <= 10 min, peak
RSS <= 10 GB (a free Colab has ~12 GB).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_large_model_sections.py
    python benchmarks/bench_large_model_sections.py --sections 03 05 --checkpoints /tmp/ckpt

``--checkpoints DIR`` keeps (and reuses) the checkpoints in ``DIR``; ``--sections`` picks some.
The machine's load average is printed before and after: other processes slow the sections.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys
from tutorial_utils.course.large_model_sections import run_section
run_section(sys.argv[1], run=True, decoder=sys.argv[2], encoder=sys.argv[3])
"""


def _checkpoints(root: Path) -> tuple[Path, Path]:
    from tutorial_utils.course.large_model_sections import build_random_checkpoint

    gpt2, bert = root / "gpt2", root / "bert"
    if not (gpt2 / "config.json").exists():
        build_random_checkpoint("gpt2", gpt2, seed=0)
    if not (bert / "config.json").exists():
        build_random_checkpoint("bert-base-uncased", bert, seed=1)
    return gpt2, bert


def run_one(nb: str, gpt2: Path, bert: Path, show: bool) -> tuple[float, float, int]:
    """``(wall seconds, peak RSS in GB, exit status)`` of one section in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, nb, str(gpt2), str(bert)],
                            stdout=None if show else subprocess.DEVNULL,
                            stderr=None if show else subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024 ** 2, proc.returncode  # Linux: ru_maxrss in KiB


def main(argv: list[str] | None = None) -> int:
    from tutorial_utils.course.large_model_sections import SECTIONS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", nargs="*", default=sorted(SECTIONS))
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="directory to keep the random-weight checkpoints in (default: a temp dir)")
    ap.add_argument("--quiet", action="store_true", help="hide the sections' own output")
    args = ap.parse_args(argv)
    tmp = None
    if args.checkpoints is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
    else:
        root = args.checkpoints
        root.mkdir(parents=True, exist_ok=True)
    gpt2, bert = _checkpoints(root)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{os.cpu_count()} CPUs; OMP_NUM_THREADS={threads}", flush=True)
    rows, failed = [], False
    for nb in args.sections:
        wall, rss, rc = run_one(nb, gpt2, bert, show=not args.quiet)
        rows.append((nb, wall, rss, rc))
        failed |= rc != 0
        print(f"--> section {nb}: {wall:.1f} s, peak RSS {rss:.2f} GB, exit {rc}", flush=True)
    total = sum(r[1] for r in rows)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'section':>8} {'what':<58} {'wall s':>7} {'peak RSS GB':>12} {'ok':>4}")
    for nb, wall, rss, rc in rows:
        ok = rc == 0 and wall <= 180 and rss <= 10
        print(f"{nb:>8} {SECTIONS[nb][0]:<58} {wall:7.1f} {rss:12.2f} {'yes' if ok else 'NO':>4}")
    print(f"{'total':>8} {'':<58} {total:7.1f} {max(r[2] for r in rows):12.2f} "
          f"{'yes' if total <= 600 and not failed else 'NO':>4}")
    if tmp is not None:
        tmp.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
