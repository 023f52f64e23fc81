"""The clean/corrupted prompt-pair dataset shared by every task, and its metric.

A task example is a *clean* prompt, a *corrupted* prompt of exactly the same token length that
differs only where the task's cue is (e.g. "1741" -> "1701"), and a set of scored answer
tokens. Every task's metric has the same vectorised form

    metric_b = sum_k sign[b, k] * score(logits[b, answer_pos[b]])[candidate_ids[b, k]]

where ``score`` is ``softmax`` for probability-difference metrics (Greater-Than, Hanna et al.
2023; subject-verb agreement) and the identity for logit differences (IOI, Wang et al. 2023).
``sign`` is +1 for tokens that count as correct, -1 for tokens that count as wrong, and 0 for
padding. The corrupted prompt is always scored against the *clean* answer, so the metric on the
corrupted run tells how much of the behaviour the corruption removed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..errors import TutorialError
from ..model_checks import check_tokens, require_decoder
from ..validation import check_same_shape
from .metrics import Metric, check_metric, check_metric_value

__all__ = ["accuracy", "assemble", "bos_id", "check_dataset", "check_example_count", "encode",
           "get_tokenizer",
           "metric_of_variants", "MetricKind", "single_token_id", "task_metric", "TaskBuildError",
           "TaskDataset"]

MetricKind = Literal["prob_diff", "logit_diff", "custom"]


class TaskBuildError(TutorialError):
    """A prompt or answer does not tokenise the way the task needs (named in the message)."""


def get_tokenizer(tokenizer_or_model: Any) -> Any:
    """Return the HF tokenizer of a ``TransformerBridge`` (or the tokenizer itself).

    Raises a :class:`TutorialError` for an encoder model (every task here is next-token
    prediction) and for anything that is neither a model nor a tokenizer.
    """
    if tokenizer_or_model is None or isinstance(tokenizer_or_model, (str, bytes, int, float)):
        raise TutorialError(f"expected a model from load_model() or its tokenizer, got "
                            f"{tokenizer_or_model!r}")
    if hasattr(tokenizer_or_model, "cfg"):
        require_decoder(tokenizer_or_model, "the course tasks")
    tok = getattr(tokenizer_or_model, "tokenizer", None)
    tok = tok if tok is not None else tokenizer_or_model
    if not callable(tok) or not hasattr(tok, "convert_ids_to_tokens"):
        raise TutorialError(f"expected a model from load_model() or a Hugging Face tokenizer, got "
                            f"{type(tokenizer_or_model).__name__}")
    return tok


def check_example_count(n: Any) -> int:
    """``n`` examples: an integer >= 1 (a bool, a float or a string is refused)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TaskBuildError(f"n must be a positive integer number of examples, got {n!r}")
    return n


def bos_id(tokenizer: Any) -> int:
    """The id prepended to every prompt (GPT-2's ``<|endoftext|>``, the offline model's BOS)."""
    tid = tokenizer.bos_token_id
    if tid is None:
        tid = tokenizer.cls_token_id
    if tid is None:
        raise TaskBuildError("tokenizer has neither a BOS nor a CLS token to prepend")
    return int(tid)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def single_token_id(tokenizer: Any, text: str, context: str = "") -> int:
    """The id of ``text`` if it is exactly one token, else a :class:`TaskBuildError`."""
    ids = encode(tokenizer, text)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        where = f" in {context}" if context else ""
        raise TaskBuildError(
            f"answer {text!r}{where} is not a single token for this tokenizer: {pieces}"
        )
    return ids[0]


@dataclass
class TaskDataset:
    """Clean/corrupted prompt pairs with the answer tokens a task metric scores.

    Shapes (B examples, T tokens including the prepended BOS, K scored candidates):
      clean_tokens, corrupted_tokens: LongTensor[B, T] (right-padded with BOS when lengths differ)
      answer_pos: LongTensor[B], the position whose next-token logits are scored
      candidate_ids: LongTensor[B, K]; candidate_sign: FloatTensor[B, K] in {+1, -1, 0}
      custom_metric: for ``metric_kind="custom"`` (:meth:`from_tokens`), the metric
        ``(logits[B, T, V], dataset) -> [B] or []`` that replaces the task metric.

    This is the one input boundary of the method modules: they take a TaskDataset; raw token
    pairs enter through :meth:`from_tokens`.
    """

    name: str
    metric_kind: MetricKind
    clean_prompts: list[str]
    corrupted_prompts: list[str]
    clean_tokens: Tensor
    corrupted_tokens: Tensor
    answer_pos: Tensor
    candidate_ids: Tensor
    candidate_sign: Tensor
    answers: list[str]
    meta: dict[str, list[Any]] = field(default_factory=dict)
    custom_metric: Metric | None = field(default=None, repr=False)

    @classmethod
    def from_tokens(cls, clean_tokens: Int[Tensor, "batch pos"],
                    corrupted_tokens: Int[Tensor, "batch pos"], metric: Metric, *,
                    name: str = "tokens") -> "TaskDataset":
        """A dataset from raw token pairs ``[B, T]`` and a metric
        ``metric(logits[B, T, V], dataset) -> [B] or []`` (:mod:`tutorial_utils.tasks.metrics`:
        called on one run of the ``B`` examples, in order)."""
        for what, t in (("clean_tokens", clean_tokens), ("corrupted_tokens", corrupted_tokens)):
            if not isinstance(t, Tensor) or t.ndim != 2:
                raise TutorialError(f"TaskDataset.from_tokens: {what} must be a LongTensor "
                                    f"[batch, seq], got "
                                    f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TutorialError(f"TaskDataset.from_tokens: {what} must hold integer token "
                                    f"ids, got dtype {t.dtype}")
            if t.numel() == 0:
                raise TutorialError(f"TaskDataset.from_tokens: {what} is empty, shape "
                                    f"{tuple(t.shape)}")
        check_same_shape(clean_tokens, corrupted_tokens)
        if metric is None:
            raise TutorialError("TaskDataset.from_tokens: raw token pairs have no task metric; "
                                "pass metric(logits, dataset) -> [B] or []")
        check_metric(metric, "TaskDataset.from_tokens: metric")
        B, T = clean_tokens.shape
        return cls(name=name, metric_kind="custom", clean_prompts=[""] * B,
                   corrupted_prompts=[""] * B, clean_tokens=clean_tokens.long(),
                   corrupted_tokens=corrupted_tokens.long(),
                   answer_pos=torch.full((B,), T - 1, dtype=torch.long),
                   candidate_ids=torch.zeros(B, 0, dtype=torch.long),
                   candidate_sign=torch.zeros(B, 0), answers=[""] * B, custom_metric=metric)

    def __len__(self) -> int:
        return len(self.clean_prompts)

    @property
    def is_aligned(self) -> bool:
        """True when every prompt has the same length, so positions mean the same thing."""
        return bool((self.answer_pos == self.answer_pos[0]).all())

    @property
    def seq_len(self) -> int:
        return int(self.clean_tokens.shape[1])

    def to(self, device: torch.device | str) -> "TaskDataset":
        """Move the tensors to ``device`` (returns self)."""
        for key in ("clean_tokens", "corrupted_tokens", "answer_pos", "candidate_ids",
                    "candidate_sign"):
            setattr(self, key, getattr(self, key).to(device))
        return self

    def subset(self, idx: Sequence[int] | slice) -> "TaskDataset":
        """A new dataset with the examples ``idx``."""
        if isinstance(idx, slice):
            idx = list(range(len(self)))[idx]
        if isinstance(idx, Tensor):
            idx = idx.tolist()
        idx = list(idx)
        N = len(self)
        for i in idx:
            if isinstance(i, bool) or not isinstance(i, int) or not -N <= i < N:
                raise TutorialError(f"subset: index {i!r} is not an example of this dataset of "
                                    f"{N} (valid: integers in [{-N}, {N}))")
        idx = [i % N for i in idx]
        sel = torch.tensor(idx, dtype=torch.long)
        return TaskDataset(
            name=self.name,
            metric_kind=self.metric_kind,
            clean_prompts=[self.clean_prompts[i] for i in idx],
            corrupted_prompts=[self.corrupted_prompts[i] for i in idx],
            clean_tokens=self.clean_tokens[sel.to(self.clean_tokens.device)],
            corrupted_tokens=self.corrupted_tokens[sel.to(self.corrupted_tokens.device)],
            answer_pos=self.answer_pos[sel.to(self.answer_pos.device)],
            candidate_ids=self.candidate_ids[sel.to(self.candidate_ids.device)],
            candidate_sign=self.candidate_sign[sel.to(self.candidate_sign.device)],
            answers=[self.answers[i] for i in idx],
            meta={k: [v[i] for i in idx] for k, v in self.meta.items()},
            custom_metric=self.custom_metric,
        )

    def metric(self, logits: Float[Tensor, "batch pos vocab"] | Float[Tensor, "batch vocab"],
               per_example: bool = False) -> Float[Tensor, ""] | Float[Tensor, " batch"]:
        """The dataset's metric of one run of its ``B`` examples: the mean ``[]``, or ``[B]``
        with ``per_example``. The task metric (:func:`task_metric`), or the metric given to
        :meth:`from_tokens`."""
        B = len(self)
        if not isinstance(logits, Tensor) or logits.ndim not in (2, 3) or logits.shape[0] != B:
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise TutorialError(f"logits must be [{B}, seq, vocab] (or [{B}, vocab]) for this "
                                f"dataset of {B} examples, got {got}; for stacked variants use "
                                "tasks.metric_of_variants")
        return metric_of_variants(None, logits, self, 1, per_example)[0]

    def to_csv(self, path: str | Path) -> None:
        """Write prompts, answers and metadata (one row per pair) to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.meta)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["clean_prompt", "corrupted_prompt", "answer", *keys])
            for i in range(len(self)):
                writer.writerow([self.clean_prompts[i], self.corrupted_prompts[i],
                                 self.answers[i], *[self.meta[k][i] for k in keys]])


def task_metric(logits: Float[Tensor, "rows pos vocab"] | Float[Tensor, "rows vocab"],
                dataset: TaskDataset) -> Float[Tensor, "variants batch"]:
    """The task metric of every example of ``n`` stacked runs of the dataset, ``[n, B]``.

    ``logits``: ``[n*B, T, V]`` full-sequence logits or ``[n*B, V]`` logits already taken at the
    answer position, variant-major (rows ``k*B:(k+1)*B`` are run ``k``). The score is
    ``sum_k sign[b, k] * score(logits[b, answer_pos[b]])[candidate_ids[b, k]]`` (module
    docstring). Only for task datasets; a :meth:`TaskDataset.from_tokens` dataset has its own
    metric.
    """
    B = len(dataset)
    if dataset.custom_metric is not None:
        raise TutorialError("this dataset was built with TaskDataset.from_tokens and its own "
                            "metric: call dataset.metric(logits)")
    if B == 0:
        raise TutorialError("the dataset is empty: build it with n >= 1 examples")
    if logits.ndim not in (2, 3):
        raise TutorialError(f"logits must be [batch, seq, vocab] or [batch, vocab], got "
                            f"{tuple(logits.shape)}")
    if logits.shape[0] % B != 0:
        raise TutorialError(f"logits batch {logits.shape[0]} is not a multiple of the dataset "
                            f"size {B}")
    n = logits.shape[0] // B
    dev = logits.device
    pos = dataset.answer_pos.to(dev).repeat(n)
    if logits.ndim == 3:
        if int(pos.max()) >= logits.shape[1]:
            raise TutorialError(f"answer position {int(pos.max())} outside logits of length "
                                f"{logits.shape[1]}")
        logits = logits[torch.arange(n * B, device=dev), pos]
    scores = logits.float().softmax(-1) if dataset.metric_kind == "prob_diff" else logits.float()
    cand = dataset.candidate_ids.to(dev).repeat(n, 1)
    sign = dataset.candidate_sign.to(dev).repeat(n, 1)
    return (scores.gather(-1, cand) * sign).sum(-1).reshape(n, B)


def metric_of_variants(metric: Metric | None, logits: Float[Tensor, "rows pos vocab"],
                       dataset: TaskDataset, n_variants: int, per_example: bool = False,
                       need_grad: bool = False) -> Float[Tensor, " variants"] | Float[Tensor, "variants batch"]:
    """The metric of each of ``n_variants`` runs of the dataset stacked along the batch
    (``logits[k*B:(k+1)*B]`` is run ``k``): ``[n]`` means, or ``[n, B]`` with ``per_example``.

    This is where the metric contract (:mod:`tutorial_utils.tasks.metrics`) is applied: a
    given ``metric`` is called once per run, on that run's ``[B, ...]`` logits and the dataset;
    ``None`` is the dataset's own metric (the task metric, vectorised over the runs).
    """
    B = len(dataset)
    if logits.shape[0] != n_variants * B:
        raise TutorialError(f"logits have {logits.shape[0]} rows, expected {n_variants} runs x "
                            f"{B} examples")
    fn = metric if metric is not None else dataset.custom_metric
    if fn is None:
        values = task_metric(logits, dataset)
        return values if per_example else values.mean(-1)
    out = []
    for k in range(n_variants):
        v = check_metric_value(fn(logits[k * B:(k + 1) * B], dataset), B, need_grad=need_grad)
        if per_example and v.ndim == 0:
            raise TutorialError("per-example values need a metric that returns one value per "
                                f"example ([B] = [{B}]); this one returned their mean")
        out.append(v if per_example else v.mean())
    return torch.stack(out)


def check_dataset(dataset: Any, model: Any = None, what: str = "dataset") -> None:
    """A :class:`TaskDataset` with at least one example, clean and corrupted tokens of equal
    shape, and (given ``model``) token ids the model can read."""
    if not isinstance(dataset, TaskDataset):
        hint = (" (for raw token pairs use TaskDataset.from_tokens(clean, corrupted, metric))"
                if isinstance(dataset, (tuple, list, Tensor)) else "")
        raise TutorialError(f"{what} must be a TaskDataset (tasks.make_task(...)), got "
                            f"{type(dataset).__name__}{hint}")
    if len(dataset) == 0 or dataset.clean_tokens.shape[0] == 0:
        raise TutorialError(f"{what} is empty: build it with n >= 1 examples")
    if dataset.clean_tokens.shape != dataset.corrupted_tokens.shape:
        raise TutorialError(
            f"{what}: clean tokens {tuple(dataset.clean_tokens.shape)} and corrupted tokens "
            f"{tuple(dataset.corrupted_tokens.shape)} differ in shape: patching needs prompt "
            "pairs of equal token length")
    if model is not None:
        check_tokens(model, dataset.clean_tokens, f"{what}.clean_tokens")
        check_tokens(model, dataset.corrupted_tokens, f"{what}.corrupted_tokens")


def accuracy(logits: Float[Tensor, "batch pos vocab"], dataset: TaskDataset) -> float:
    """Share of examples whose metric is positive (more mass on correct than wrong answers)."""
    return float((dataset.metric(logits, per_example=True) > 0).float().mean())


def assemble(
    tokenizer: Any,
    name: str,
    metric_kind: MetricKind,
    clean: list[str],
    corrupted: list[str],
    candidates: list[list[int]],
    signs: list[list[float]],
    answers: list[str],
    meta: dict[str, list[Any]],
) -> TaskDataset:
    """Tokenise prompt pairs (BOS prepended), check equal lengths and build a TaskDataset.

    Raises :class:`TaskBuildError` naming the first pair whose clean and corrupted prompts
    differ in token length.
    """
    if not clean:
        raise TaskBuildError(f"{name}: no examples were built")
    bos = bos_id(tokenizer)
    clean_ids, corr_ids = [], []
    for i, (c, r) in enumerate(zip(clean, corrupted)):
        ci, ri = [bos] + encode(tokenizer, c), [bos] + encode(tokenizer, r)
        if len(ci) != len(ri):
            raise TaskBuildError(
                f"{name} example {i}: clean and corrupted prompts differ in token length "
                f"({len(ci)} vs {len(ri)}): {c!r} / {r!r}"
            )
        clean_ids.append(ci)
        corr_ids.append(ri)
    T = max(len(x) for x in clean_ids)
    pad = lambda rows: torch.tensor([r + [bos] * (T - len(r)) for r in rows], dtype=torch.long)
    K = max(len(c) for c in candidates)
    cand = torch.tensor([c + [0] * (K - len(c)) for c in candidates], dtype=torch.long)
    sign = torch.tensor([s + [0.0] * (K - len(s)) for s in signs], dtype=torch.float)
    return TaskDataset(
        name=name,
        metric_kind=metric_kind,
        clean_prompts=list(clean),
        corrupted_prompts=list(corrupted),
        clean_tokens=pad(clean_ids),
        corrupted_tokens=pad(corr_ids),
        answer_pos=torch.tensor([len(x) - 1 for x in clean_ids], dtype=torch.long),
        candidate_ids=cand,
        candidate_sign=sign,
        answers=list(answers),
        meta=meta,
    )
