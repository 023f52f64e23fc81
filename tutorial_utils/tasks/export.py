"""Write the course's task datasets as CSV files under ``data/tasks/``.

    python -m tutorial_utils.tasks.export [--out-dir DIR]

One file per task and tokenizer (GPT-2's real tokenizer and the offline model's), with the
prompt pairs, answers and metadata the notebooks use (canonical frames, seed 0, 100 pairs).
``tests/test_tasks.py`` checks that the files are up to date.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..paths import DATA_DIR
from . import make_facts, make_greater_than, make_ioi, make_sva
from ..gpt2_tokenizer import load_gpt2_tokenizer

__all__ = ["export_all", "TASK_DIR"]

TASK_DIR = DATA_DIR / "tasks"


def export_all(out_dir: Path = TASK_DIR, tokenizers: dict[str, Any] | None = None) -> list[Path]:
    """Write every task's CSV for each tokenizer (default: GPT-2 and the offline model's)."""
    if tokenizers is None:
        from transformers import AutoTokenizer

        tokenizers = {
            "gpt2": load_gpt2_tokenizer(),
            "offline": AutoTokenizer.from_pretrained(str(DATA_DIR / "models" / "tiny-gpt2-tasks")),
        }
    written = []
    for tok_name, tok in tokenizers.items():
        for name, ds in (("greater_than", make_greater_than(tok, n=100)),
                         ("sva", make_sva(tok, n=100)),
                         ("ioi", make_ioi(tok, n=100)),
                         ("facts", make_facts(tok))):
            path = out_dir / f"{name}_{tok_name}.csv"
            ds.to_csv(path)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=TASK_DIR,
                        help=f"where the CSV files go (default {TASK_DIR})")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in export_all(args.out_dir):
        print("wrote", path)


if __name__ == "__main__":
    main()
