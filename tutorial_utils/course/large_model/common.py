"""What the "Now on GPT-2 small / BERT" sections share: which models each needs, the published
figures they print beside their own numbers, and small formatting helpers."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor

from transformers.utils import logging as hf_logging

from ...composition import top_heads
from ...names import head_name, parse_head
from ...validation import check_int

#: notebook id -> (what runs, which published models it needs)
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "00": ("the residual stream and induction heads", ("gpt2",)),
    "01": ("behaviour, probing and input attribution", ("gpt2",)),
    "02": ("context mixing", ("bert-base-uncased", "gpt2")),
    "03": ("activation patching, logit lens and DLA on Greater-Than", ("gpt2",)),
    "04": ("induction and IOI composition", ("gpt2",)),
    "05": ("EAP, EAP-IG and faithfulness on Greater-Than", ("gpt2",)),
    "06": ("a TopK sparse autoencoder on the residual stream", ("gpt2",)),
}

#: Published figures the sections print next to their own numbers (never computed here).
PUBLISHED: dict[str, str] = {
    "induction": "Olsson et al. 2022 / ARENA: GPT-2 small has induction heads, e.g. 5.1, 5.5, "
                 "6.9",
    "greater_than": "Hanna et al. 2023: GPT-2 small's probability difference on Greater-Than "
                    "0.817; their path-patching circuit 0.727 (89.5% of it); the EACL 2024 "
                    "tutorial slides show a smaller-dataset circuit at 0.78",
    "greater_than_circuit": "Hanna et al. 2023: the Greater-Than circuit runs through MLPs 8-11 "
                            "and attention heads of layers 5-9 (e.g. 9.1)",
    "sva": "EACL 2024 tutorial slides (slide 14, 'The keys on the cabinet' vs 'The key'): "
           "mean probability difference on its agreement set 0.351",
    "ioi": "Wang et al. 2023 (IOI) head classes: name movers 9.9, 9.6, 10.0; S-inhibition 7.3, "
           "7.9, 8.6, 8.10; induction 5.5, 6.9; duplicate token 0.1, 3.0; previous token 2.2, "
           "4.11",
    "features": "Bloom 2024: GPT-2 small residual-stream SAEs of 24,576 features per layer, "
                "trained on OpenWebText; Gao et al. 2024 (OpenAI): TopK SAEs of GPT-2 small with "
                "32k and 128k latents. Dictionaries of that size and data, not a minute on task "
                "prompts, are what the field reads features from",
    "context_mixing": "Kobayashi et al. 2020: in BERT, attention weights on [CLS]/[SEP] are "
                      "large while the norms ||alpha f(x)|| of what they contribute are small; "
                      "Ferrando et al. 2022 (ALTI) and Mohebbi et al. 2023 (Value Zeroing) report "
                      "that their measures agree better with gradient and erasure attributions "
                      "than raw attention does",
}

#: Wang et al. (2023) IOI head classes in GPT-2 small, as (layer, head).
IOI_CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "name mover": ((9, 9), (9, 6), (10, 0)),
    "S-inhibition": ((7, 3), (7, 9), (8, 6), (8, 10)),
    "induction": ((5, 5), (6, 9)),
    "duplicate token": ((0, 1), (3, 0)),
    "previous token": ((2, 2), (4, 11)),
}
#: Induction heads of GPT-2 small named by Olsson et al. (2022) / ARENA, as (layer, head).
INDUCTION_HEADS: tuple[tuple[int, int], ...] = ((5, 1), (5, 5), (6, 9))


def published_lines(*keys: str) -> str:
    return "\n".join(f"  [published, not this run] {PUBLISHED[k]}" for k in keys)


def gpu_hint(notebook: str, example: str) -> str:
    return (f"  (sizes fit a free Colab CPU; on a GPU try run_section(\"{notebook}\", run=True, "
            f"{example}))")


def model_label(model: Any) -> str:
    return str(getattr(model, "tutorial_model_name", None)
               or getattr(model.cfg, "model_name", "model"))


def model_shape(model: Any) -> str:
    c = model.cfg
    return f"{c.n_layers} layers x {c.n_heads} heads, d_model {c.d_model}"


def heads_in_model(model: Any, heads: Any) -> list[tuple[int, int]]:
    """The (layer, head) pairs that exist in ``model`` (a published list may not fit it)."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    return [(l, h) for l, h in heads if l < L and h < H]


def format_heads(model: Any, grid: Tensor, heads: Any) -> str:

    inside = heads_in_model(model, heads)
    if not inside:
        return "n/a (this model is smaller)"
    return ", ".join(f"{head_name(l, h)} {float(grid[l, h]):+.2f}" for l, h in inside)


def top_named(grid: Tensor, k: int, largest: bool = True) -> list[tuple[str, float]]:

    return [(h, float(grid[parse_head(h)])) for h in top_heads(grid, k, largest)]


def batched_logits(model: Any, tokens: Tensor, batch_size: int) -> Tensor:
    """Last-dimension logits of ``tokens`` in chunks, without gradients."""
    out = []
    with torch.no_grad():
        for i in range(0, tokens.shape[0], batch_size):
            out.append(model(tokens[i:i + batch_size].to(model.cfg.device)).float().cpu())
    return torch.cat(out)


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Hugging Face's "Loading weights" bars off (they would be saved in a notebook)."""

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def check_positive(**sizes: int) -> None:
    """Every keyword is an integer >= 1 (:func:`tutorial_utils.validation.check_int`)."""
    for k, v in sizes.items():
        check_int(v, k, minimum=1)
