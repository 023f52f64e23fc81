"""Train the offline GPT-2-architecture model from scratch on the synthetic corpus.

    python -m tutorial_utils.offline_model.train --out data/models/tiny-gpt2-tasks --seed 0

The script builds the tokenizer (:mod:`.tokenizer`), streams seeded documents from
:class:`.corpus.CorpusGenerator`, trains a ``GPT2LMHeadModel`` with AdamW (linear warm-up,
cosine decay), evaluates held-out task metrics every ``--eval-every`` steps, and saves the
checkpoint, the tokenizer and ``training_record.json`` (config, data sizes, steps, wall time,
final metrics) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .corpus import CorpusConfig, CorpusGenerator, corpus_vocab
from .evaluate import evaluate_model
from .tokenizer import make_hf_tokenizer


@dataclass
class TrainConfig:
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_inner: int = 512
    n_ctx: int = 64
    batch_size: int = 64
    steps: int = 5000
    lr: float = 2e-3
    warmup: int = 200
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    seed: int = 0
    eval_every: int = 1000
    threads: int = 2


def build_model(vocab_size: int, cfg: TrainConfig):
    """A fresh ``GPT2LMHeadModel`` (pre-LN, learned positions, tied embeddings, no dropout)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=cfg.n_ctx, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=cfg.n_inner, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, pad_token_id=0,
        attn_implementation="eager",
    )
    return GPT2LMHeadModel(config)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def train(cfg: TrainConfig, out_dir: Path, log=print) -> dict:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    vocab = corpus_vocab()
    tokenizer = make_hf_tokenizer(vocab)
    model = build_model(len(vocab), cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"vocab {len(vocab)}, parameters {n_params:,}, config {asdict(cfg)}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(0.9, 0.98))
    gen = CorpusGenerator(cfg.seed, CorpusConfig(n_ctx=cfg.n_ctx))
    history = []
    t0 = time.time()
    model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = torch.tensor(gen.batch(vocab, cfg.batch_size), dtype=torch.long)
        logits = model(batch).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                               batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            log(f"step {step} loss {loss.item():.3f} lr {lr_at(step, cfg):.2e} "
                f"elapsed {time.time() - t0:.0f}s")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            m = evaluate_model(model, tokenizer, n=100)
            history.append({"step": step + 1, "elapsed_s": time.time() - t0, **m.as_dict()})
            log(f"eval step {step + 1}: " + json.dumps(m.as_dict()))
    wall = time.time() - t0
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    final = evaluate_model(model, tokenizer, n=200)
    record = {
        "train_config": asdict(cfg),
        "corpus_config": asdict(CorpusConfig(n_ctx=cfg.n_ctx)),
        "vocab_size": len(vocab),
        "parameters": n_params,
        "tokens_seen": cfg.steps * cfg.batch_size * cfg.n_ctx,
        "documents_seen": cfg.steps * cfg.batch_size,
        "wall_time_s": round(wall, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"torch {torch.__version__}",
        "history": history,
        "final_metrics": final.as_dict(),
        "bar": final.meets_bar(),
    }
    (out_dir / "training_record.json").write_text(json.dumps(record, indent=1) + "\n")
    log(f"done in {wall:.0f}s; final {json.dumps(final.as_dict())}")
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--out", type=Path, default=Path("data/models/tiny-gpt2-tasks"))
    for name, field in TrainConfig.__dataclass_fields__.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(field.default),
                       default=field.default)
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    train(TrainConfig(**args), out)


if __name__ == "__main__":
    main()
