"""Checks for the exercises of ``notebooks/01_model_agnostic_baselines.ipynb``.

Every check is an :class:`~tutorial_utils.course.answers.ExerciseCheck`: in the notebook
``my_occlusion = nb01.check_occlusion(my_occlusion, model)`` prints the verdict and returns the
function later cells use; ``check_occlusion.judge(...)`` returns the
:class:`~tutorial_utils.course.grading.CheckResult` only. Each one first tries the student's function on **synthetic cases with a known
answer**, where a wrong idea gives a recognisable wrong number and the message names the likely
mistake, then compares it with the library's reference on fresh random inputs:

* the attribution exercises run on :class:`ToyModel`, a two-line "model" whose target is an
  exact linear (or a known nonlinear) function of the token embeddings: gradient x input and
  integrated gradients of a linear target must equal ``(x - baseline) . w`` exactly, occlusion
  must score only the tokens the target reads, and IG must be complete (sum to
  ``f(x) - f(baseline)``);
* the probe must reach the optimum of its regularised loss;
* the control task must give one label per type of the token at the probed position;
* iterative nullspace projection must return an orthonormal basis after which a fresh probe is
  at chance on held-out data.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import torch

from ... import input_attribution as A
from ..answers import exercise
from ...errors import TutorialError
from ..grading import CheckResult, as_tensor, compare_to_reference
from ..solutions import nb01 as solutions
from ...concept_erasure import NullspaceEraser, random_eraser
from ...probing import train_probe

__all__ = ["ToyModel", "binary_probe_loss", "check_control_task", "check_gradient_x_input",
           "check_inlp", "check_integrated_gradients", "check_occlusion", "check_train_probe",
           "optimal_binary_probe_loss", "PROMPTS"]

PROMPTS = (
    "When Mary and John went to the store, John gave a drink to",
    "The keys on the cabinet",
    "The war lasted from the year 1741 to the year 17",
    "The doctor near the windows",
    "After Kate and Tom arrived at the park, Tom handed the ball to",
)



# --------------------------------------------------------------------------------------------
# A toy model with known attributions
# --------------------------------------------------------------------------------------------

class ToyModel(torch.nn.Module):
    """A causal "model" with the interface the attribution functions use (``embed``,
    ``run_with_hooks`` with the ``hook_embed`` hook, ``cfg``), whose logits are known functions
    of the token embeddings ``x`` ``[B, T, d]``:

    * ``mixing=False``: ``logits[:, t] = x_t @ W_U``: position ``t`` reads only its own token,
      so every attribution of a target at the last position is zero on the other tokens, and a
      logit target is linear: gradient x input = IG from a baseline ``x'`` =
      ``(x_t - x'_t) . W_U[:, a]`` exactly.
    * ``mixing=True``: ``logits[:, t] = tanh(mean_{s <= t} x_s) @ W_U``: every earlier token
      matters, nonlinearly (IG is complete only in the limit of many steps).
    """

    def __init__(self, d_vocab: int = 23, d_model: int = 6, mixing: bool = False, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_E = torch.nn.Parameter(torch.randn(d_vocab, d_model, generator=g))
        self.W_U = torch.nn.Parameter(torch.randn(d_model, d_vocab, generator=g))
        self.mixing = mixing
        self.cfg = SimpleNamespace(d_vocab=d_vocab, d_model=d_model, n_ctx=64, n_layers=0,
                                   architecture="ToyModel", original_architecture="ToyModel")
        self.requires_grad_(False)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.mixing:
            T = x.shape[1]
            x = torch.tanh(x.cumsum(1) / torch.arange(1, T + 1, dtype=x.dtype)[None, :, None])
        return x @ self.W_U

    def run_with_hooks(self, tokens: torch.Tensor, fwd_hooks=()) -> torch.Tensor:
        x = self.embed(tokens)
        for name, fn in fwd_hooks:
            if name != A.EMBED_HOOK:
                raise TutorialError(f"the toy model has only the hook {A.EMBED_HOOK}, not {name}")
            x = fn(x, None)
        return self._logits(x)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.run_with_hooks(tokens)


def _toy_case(seed: int, mixing: bool = False):
    g = torch.Generator().manual_seed(100 + seed)
    toy = ToyModel(mixing=mixing, seed=seed)
    tokens = torch.randint(toy.cfg.d_vocab, (3, 5), generator=g)
    a, b = (int(i) for i in torch.randperm(toy.cfg.d_vocab, generator=g)[:2])
    return toy, tokens, a, b


def _seeded_call(fn: Callable, *args) -> Any:
    """The student's function called with the global torch RNG seeded (the caller's RNG state
    restored after), so a method that draws baselines or labels is judged on one draw. A stub
    or a crash propagates: :meth:`ExerciseCheck.judge` reports it as the student's."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return fn(*args)


def _as_bt(name: str, out: Any, shape: tuple[int, int]) -> tuple[torch.Tensor | None,
                                                                 CheckResult | None]:
    out = as_tensor(out, "your scores [batch, seq]")
    if tuple(out.shape) != shape:
        hint = (" (did you forget to sum over the embedding dimension?)"
                if out.ndim == 3 else "")
        return None, CheckResult(name, False, f"output has shape {tuple(out.shape)}, expected "
                                              f"[batch, seq] = {shape}{hint}")
    return out.detach().float(), None


def _run_bt(name: str, fn: Callable, tokens: torch.Tensor, *args
            ) -> tuple[torch.Tensor | None, CheckResult | None]:
    """:func:`_seeded_call` on ``(model, tokens, *args)``-style calls whose answer is
    ``[batch, seq]`` like ``tokens``: returns the output as float, or the failed result."""
    return _as_bt(name, _seeded_call(fn, *args[:1], tokens, *args[1:]), tuple(tokens.shape))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.float(), b.float(), atol=tol, rtol=tol))


# --------------------------------------------------------------------------------------------
# Exercise 3.1: gradient x input
# --------------------------------------------------------------------------------------------

def _make_prompt_inputs(model: Any, gen: torch.Generator) -> tuple[torch.Tensor, A.TargetFn]:
    prompt = PROMPTS[int(torch.randint(len(PROMPTS), (1,), generator=gen))]
    tokens = model.to_tokens(prompt)
    ids = torch.randint(model.cfg.d_vocab, (2,), generator=gen)
    return tokens, A.contrastive_target(int(ids[0]), int(ids[1]))


@exercise("3.1", reference=solutions.gradient_x_input)
def check_gradient_x_input(student_fn: Callable, model: Any) -> CheckResult:
    """``student_fn(model, tokens, target_fn) -> [B, T]``. Known answer: on the linear
    :class:`ToyModel` the target ``logit(a) - logit(b)`` at the last position gives
    ``x_T . (W_U[:, a] - W_U[:, b])`` there and 0 elsewhere. Then the library's
    :func:`~tutorial_utils.input_attribution.gradient_x_input` on the course model."""
    name = "gradient_x_input"
    for seed in range(2):
        toy, tokens, a, b = _toy_case(seed)
        out, bad = _run_bt(name, student_fn, tokens, toy, A.contrastive_target(a, b))
        if bad:
            return bad
        x = toy.embed(tokens)
        w = toy.W_U[:, a] - toy.W_U[:, b]
        want = torch.zeros(tokens.shape)
        want[:, -1] = x[:, -1] @ w
        if _close(out, want):
            continue
        grad_norm = torch.zeros(tokens.shape)
        grad_norm[:, -1] = w.norm()
        if _close(out.abs(), grad_norm):
            return CheckResult(name, False, "you returned the gradient's norm (saliency); "
                               "multiply the gradient by the input embedding, then sum over d")
        if _close(out, -want):
            return CheckResult(name, False, "right magnitude, wrong sign: the score is "
                               "+ (df/dx) . x for the target f you were given")
        return CheckResult(name, False, "on a linear toy model (each position reads only its own "
                           "token, target logit(a) - logit(b) at the last position) the answer is "
                           "x_T . (W_U[:, a] - W_U[:, b]) at the last position and exactly 0 "
                           f"elsewhere; you gave {out[0].tolist()} for {want[0].tolist()}. Use "
                           "the gradient with respect to the token embeddings, times those "
                           "embeddings")

    def make_inputs(gen: torch.Generator):
        tokens, target = _make_prompt_inputs(model, gen)
        return (model, tokens, target)

    res = compare_to_reference(name, student_fn, A.gradient_x_input, make_inputs, atol=1e-5,
                               rtol=1e-4)
    if res.passed:
        res.message = "exact on a linear toy model, and matches the library on 3 random prompts"
    return res


# --------------------------------------------------------------------------------------------
# Exercise 3.2: integrated gradients (midpoint rule)
# --------------------------------------------------------------------------------------------

def _library_ig_midpoint(model: Any, tokens: torch.Tensor, target_fn: A.TargetFn,
                           baseline_embeds: torch.Tensor, n_steps: int) -> torch.Tensor:
    return A.integrated_gradients(model, tokens, target_fn, baseline=baseline_embeds,
                                  n_steps=n_steps, rule="riemann_middle",
                                  keep_first_token=False)


def _ig_rule(model: Any, tokens: torch.Tensor, target_fn: A.TargetFn,
             baseline: torch.Tensor, n_steps: int, offset: float) -> torch.Tensor:
    """IG with alphas (k + offset) / n_steps (offset 0: left rule, 1: right rule)."""
    x = A.token_embeddings(model, tokens)
    total = torch.zeros_like(x)
    for k in range(n_steps):
        alpha = (k + offset) / n_steps
        total += A.embedding_gradients(model, tokens, target_fn,
                                       embeds=baseline + alpha * (x - baseline))[1] / n_steps
    return ((x - baseline) * total).sum(-1)


@exercise("3.2", reference=solutions.integrated_gradients)
def check_integrated_gradients(student_fn: Callable, model: Any) -> CheckResult:
    """``student_fn(model, tokens, target_fn, baseline_embeds, n_steps) -> [B, T]``, the
    midpoint Riemann sum. Known answers: on the linear :class:`ToyModel`, IG equals
    ``(x - x') . w`` exactly for any number of steps; on the nonlinear toy with 200 steps the
    scores sum to ``f(x) - f(x')`` (completeness). Then the library's ``riemann_middle`` rule on
    the course model, with few steps (where the rule matters)."""
    name = "integrated_gradients"
    for seed in range(2):
        toy, tokens, a, b = _toy_case(seed)
        target = A.contrastive_target(a, b)
        x = toy.embed(tokens)
        base = 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        out, bad = _run_bt(name, student_fn, tokens, toy, target, base, 3)
        if bad:
            return bad
        w = toy.W_U[:, a] - toy.W_U[:, b]
        want = torch.zeros(tokens.shape)
        want[:, -1] = (x[:, -1] - base[:, -1]) @ w
        if _close(out, want):
            continue
        times_x = torch.zeros(tokens.shape)
        times_x[:, -1] = x[:, -1] @ w
        if _close(out, times_x):
            return CheckResult(name, False, "on a linear model IG must equal (x - baseline) . w; "
                               "you gave x . w: multiply the averaged gradient by "
                               "(x - baseline_embeds), not by x")
        if _close(out, -want):
            return CheckResult(name, False, "right magnitude, wrong sign: multiply by "
                               "(x - baseline), not (baseline - x)")
        return CheckResult(name, False, "on a linear toy model the gradient is the same at every "
                           "point of the path, so IG must equal (x - baseline) . w exactly, "
                           f"for any n_steps: expected {want[0].tolist()}, got "
                           f"{out[0].tolist()}. Check the path points baseline + alpha * "
                           "(x - baseline) and the final product with (x - baseline)")
    # completeness on a nonlinear toy
    toy, tokens, a, b = _toy_case(0, mixing=True)
    target = A.contrastive_target(a, b)
    x = toy.embed(tokens)
    base = torch.zeros_like(x)
    out, bad = _run_bt(name, student_fn, tokens, toy, target, base, 200)
    if bad:
        return bad
    delta = A.target_values(toy, tokens, target) - A.target_values(toy, tokens, target,
                                                                    embeds=base)
    if not _close(out.sum(-1), delta, tol=1e-3):
        return CheckResult(name, False, "completeness fails on a nonlinear toy model with 200 "
                           f"steps: your scores sum to {out.sum(-1).tolist()} but f(x) - "
                           f"f(baseline) = {delta.tolist()}. Average the gradients over the "
                           "steps (weight 1/n each) before multiplying by (x - baseline)")

    def make_inputs(gen: torch.Generator):
        tokens, target = _make_prompt_inputs(model, gen)
        x = A.token_embeddings(model, tokens)
        base = 0.1 * torch.randn(x.shape, generator=gen)
        base[:, 0] = x[:, 0]
        n_steps = int(torch.randint(4, 9, (1,), generator=gen))
        return (model, tokens, target, base, n_steps)

    res = compare_to_reference(name, student_fn, _library_ig_midpoint, make_inputs, atol=1e-4,
                               rtol=1e-3)
    if not res.passed and "differs" in res.message:
        tokens, target = _make_prompt_inputs(model, torch.Generator().manual_seed(0))
        xm = A.token_embeddings(model, tokens)
        b0 = 0.1 * torch.randn(xm.shape, generator=torch.Generator().manual_seed(0))
        b0[:, 0] = xm[:, 0]
        got = _seeded_call(student_fn, model, tokens, target, b0, 4)
        for offset, rule in ((0.0, "left"), (1.0, "right")):
            if isinstance(got, torch.Tensor) and got.shape == tokens.shape and _close(got, _ig_rule(model, tokens, target, b0,
                                                                      4, offset), 1e-3):
                return CheckResult(name, False, f"you used the {rule} Riemann rule (alpha = "
                                   f"(k + {offset:g}) / n); the exercise asks for midpoints, "
                                   "alpha_k = (k + 1/2) / n")
        res.message += (" — exact on the toy models, so the path and the product are right; "
                        "look at the alphas (midpoints (k + 1/2) / n) and the weights (1/n)")
    if res.passed:
        res.message = ("exact on a linear toy model, complete on a nonlinear one, and matches the "
                       "library's midpoint rule on 3 random prompts")
    return res


# --------------------------------------------------------------------------------------------
# Exercise 3.3: occlusion
# --------------------------------------------------------------------------------------------

def _library_occlusion(model: Any, tokens: torch.Tensor, target_fn: A.TargetFn,
                         replacement_id: int) -> torch.Tensor:
    return A.occlusion(model, tokens, target_fn, replacement=replacement_id)


@exercise("3.3", reference=solutions.occlusion)
def check_occlusion(student_fn: Callable, model: Any) -> CheckResult:
    """``student_fn(model, tokens, target_fn, replacement_id) -> [B, T]`` (position 0 not
    occluded, score 0). Known answer: on the linear :class:`ToyModel` only the last token
    matters, with score ``(W_E[x_T] - W_E[r]) . w``. Then the library's occlusion on the course
    model."""
    name = "occlusion"
    for seed in range(2):
        toy, tokens, a, b = _toy_case(seed)
        rep = int((tokens.max() + 1) % toy.cfg.d_vocab)
        out, bad = _run_bt(name, student_fn, tokens, toy, A.contrastive_target(a, b), rep)
        if bad:
            return bad
        w = toy.W_U[:, a] - toy.W_U[:, b]
        want = torch.zeros(tokens.shape)
        want[:, -1] = (toy.W_E[tokens[:, -1]] - toy.W_E[rep]) @ w
        if _close(out, want):
            continue
        if _close(out, -want):
            return CheckResult(name, False, "wrong sign: the score is f(x) - f(x with token t "
                               "replaced), positive when the token helps the target")
        return CheckResult(name, False, "on a linear toy model where each position reads only "
                           "its own token, only the last token can change the target: expected "
                           f"{want[0].tolist()}, got {out[0].tolist()}. Replace one position at "
                           "a time in a fresh copy of the tokens")
    # on the mixing toy every position reaches the target, BOS included: its score must stay 0
    toy, tokens, a, b = _toy_case(0, mixing=True)
    rep = int((tokens.max() + 1) % toy.cfg.d_vocab)
    out, bad = _run_bt(name, student_fn, tokens, toy, A.contrastive_target(a, b), rep)
    if bad:
        return bad
    if float(out[:, 0].abs().max()) > 1e-6:
        return CheckResult(name, False, "position 0 (BOS) must not be occluded: its score is "
                           "0; start the loop at t = 1")

    def make_inputs(gen: torch.Generator):
        tokens, target = _make_prompt_inputs(model, gen)
        rep = int(torch.randint(model.cfg.d_vocab, (1,), generator=gen))
        return (model, tokens, target, rep)

    res = compare_to_reference(name, student_fn, _library_occlusion, make_inputs, atol=1e-4,
                               rtol=1e-4)
    if res.passed:
        res.message = "exact on a linear toy model, and matches the library on 3 random prompts"
    return res


# --------------------------------------------------------------------------------------------
# Exercise 2.1: a logistic-regression probe
# --------------------------------------------------------------------------------------------

def binary_probe_loss(X: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                      weight_decay: float) -> torch.Tensor:
    """``mean_n BCE(sigmoid(X w + b), y) + weight_decay / 2 * ||w||^2``."""
    z = X.double() @ w.double() + b.double()
    return (torch.nn.functional.binary_cross_entropy_with_logits(z, y.double())
            + 0.5 * weight_decay * (w.double() ** 2).sum())


def _optimum(X: torch.Tensor, y: torch.Tensor, weight_decay: float, fit_bias: bool = True
             ) -> tuple[float, torch.Tensor, torch.Tensor]:
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=fit_bias)
    opt = torch.optim.LBFGS([w, b] if fit_bias else [w], max_iter=500, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = binary_probe_loss(X, y, w, b, weight_decay)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(binary_probe_loss(X, y, w.detach(), b.detach(), weight_decay)), w.detach(), \
        b.detach()


def optimal_binary_probe_loss(X: torch.Tensor, y: torch.Tensor, weight_decay: float) -> float:
    """The minimum of :func:`binary_probe_loss` (convex), by L-BFGS in float64."""
    return _optimum(X, y, weight_decay)[0]


@exercise("2.1", reference=solutions.train_binary_probe)
def check_train_probe(student_fn: Callable, weight_decay: float = 1e-2,
                      tolerance: float = 1e-3) -> CheckResult:
    """``student_fn(X [N, d], y [N] in {0, 1}, weight_decay) -> (w [d], b [])`` must reach the
    optimum of the regularised logistic loss within ``tolerance`` on fresh synthetic data (whose
    classes are unbalanced, so the bias matters); a failure names the likely mistake."""
    name = "train_probe"
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        X = torch.randn(200, 16, generator=gen)
        y = ((X @ torch.randn(16, generator=gen) + 1.5 + 0.5 * torch.randn(200, generator=gen))
             > 0).long()
        out = _seeded_call(student_fn, X.clone(), y.clone(), weight_decay)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            return CheckResult(name, False, "return a pair (w [d], b []), e.g. "
                               "`return w.detach(), b.detach()`")
        w = as_tensor(out[0], "your w", torch.float32).reshape(-1)
        b = as_tensor(out[1], "your b", torch.float32)
        if b.numel() != 1:
            return CheckResult(name, False, f"b has shape {tuple(b.shape)}: the bias is one "
                               "number, shape []")
        b = b.reshape(())
        if w.shape != (16,):
            return CheckResult(name, False, f"w has shape {tuple(w.shape)}, expected (16,)")
        got = float(binary_probe_loss(X, y, w, b, weight_decay))
        best, w_best, b_best = _optimum(X, y, weight_decay)
        if got <= best + tolerance:
            continue
        msg = (f"your probe's regularised loss {got:.4f} is above the optimum {best:.4f} by more "
               f"than {tolerance:g} (seed {seed}). ")
        if float(b.abs()) < 1e-8 and float(b_best.abs()) > 0.1:
            msg += "Your bias is 0: did you leave b out of the optimiser's parameters?"
        elif float(binary_probe_loss(X, y, w, b, 0.0)) < _optimum(X, y, 0.0)[0] + 0.02:
            msg += ("You are close to the *unregularised* optimum: add weight_decay / 2 * "
                    "||w||^2 to the loss (on w only, not on b)")
        elif float(binary_probe_loss(X, y, w, b, 2 * weight_decay)) < \
                _optimum(X, y, 2 * weight_decay)[0] + tolerance:
            msg += ("You reached the optimum of weight_decay * ||w||^2: the penalty is "
                    "weight_decay / 2 * ||w||^2")
        elif float((w.double() @ w_best) / (w.double().norm() * w_best.norm() + 1e-12)) < 0:
            msg += "Your w points the wrong way: BCE takes the logits X @ w + b and y, in that order"
        else:
            msg += ("Train longer (more iterations or a larger learning rate) or use L-BFGS; and "
                    "check the loss: mean BCE of the logits X @ w + b, plus weight_decay / 2 * "
                    "||w||^2 on w only (no penalty on b)")
        return CheckResult(name, False, msg)
    return CheckResult(name, True, f"reaches the optimal loss within {tolerance:g} on 3 "
                       "synthetic data sets")


# --------------------------------------------------------------------------------------------
# Exercise 2.2: the control task
# --------------------------------------------------------------------------------------------

@exercise("2.2", reference=solutions.control_task_labels)
def check_control_task(student_fn: Callable) -> CheckResult:
    """``student_fn(tokens [N, T], pos [N], labels [N], seed) -> [N]`` control labels (Hewitt &
    Liang 2019). Known properties: examples whose token at the probed position is the same get
    the same label, whatever the rest of the sequence; the labels are in the label set; over
    many types the share of each label follows the labels' empirical distribution; changing
    the seed changes the assignment."""
    name = "control_task"
    g = torch.Generator().manual_seed(0)
    N, T, V = 3000, 6, 1500
    tokens = torch.randint(V, (N, T), generator=g)
    pos = torch.randint(1, T, (N,), generator=g)
    labels = (torch.rand(N, generator=g) < 0.25).long()  # 25% positive
    out = _seeded_call(student_fn, tokens.clone(), pos.clone(), labels.clone(), 0)
    out = as_tensor(out, "your control labels")
    if tuple(out.shape) != (N,):
        return CheckResult(name, False, f"return a tensor [N] = ({N},) of labels, got shape "
                           f"{tuple(out.shape)}")
    if out.is_floating_point() and not bool((out == out.round()).all()):
        return CheckResult(name, False, "control labels must come from the task's label set "
                           "(here 0 and 1), not fractions")
    out = out.long()
    if not set(out.unique().tolist()) <= {0, 1}:
        return CheckResult(name, False, "control labels must come from the task's label set "
                           "(here 0 and 1)")
    at = tokens[torch.arange(N), pos]
    split = [int(v) for v in at.unique() if out[at == v].unique().numel() > 1]
    if split:
        subj = tokens[:, 2]
        same_subj = all(out[subj == v].unique().numel() == 1 for v in subj.unique())
        why = (" You labelled by the token at position 2 (e.g. the subject): the probe reads "
               "position pos[n], so label by tokens[n, pos[n]]." if same_subj else
               " The label must be a function of the token at the probed position "
               "tokens[n, pos[n]] alone (one random label per token type).")
        return CheckResult(name, False, f"{len(split)} token types at the probed position "
                           f"received different control labels (e.g. token {split[0]}).{why}")
    other = torch.randint(V, (N, T), generator=torch.Generator().manual_seed(1))
    other[torch.arange(N), pos] = at
    out2 = _seeded_call(student_fn, other, pos.clone(), labels.clone(), 0)
    out2 = as_tensor(out2, "your control labels")
    if out2.shape != out.shape or not torch.equal(out2.long(), out):
        return CheckResult(name, False, "changing the tokens at positions the probe does not "
                           "read changed the control labels: use only tokens[n, pos[n]]")
    types = at.unique()
    share = float(torch.stack([out[at == v][0] for v in types]).float().mean())
    if abs(share - 0.25) > 0.06:
        hint = (" You may have drawn 0 and 1 with equal probability" if abs(share - 0.5) < 0.06
                else " You may have copied a real label for each type")
        return CheckResult(name, False, f"{share:.2f} of the token types got label 1, but 25% of "
                           "the examples are positive: draw each type's label from the empirical "
                           f"distribution of the labels (e.g. a random element of labels).{hint}")
    if share == float(labels.float().mean()) and torch.equal(out, labels):
        return CheckResult(name, False, "you returned the real labels")
    out3 = _seeded_call(student_fn, tokens.clone(), pos.clone(), labels.clone(), 1)
    out3 = as_tensor(out3, "your control labels")
    if out3.shape == out.shape and torch.equal(out3.long(), out):
        return CheckResult(name, False, "the seed does not change the assignment: draw the "
                           "labels with a random generator seeded by `seed`")
    return CheckResult(name, True, "one label per token type at the probed position, "
                       "independent of the other tokens, drawn from the label distribution "
                       f"({share:.2f} of {len(types)} types positive for 25% positive examples)")


# --------------------------------------------------------------------------------------------
# Exercise 5.1: iterative nullspace projection
# --------------------------------------------------------------------------------------------

def _concept_data(n: int, seed: int, d: int = 20):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(2, (n,), generator=g)
    q, _ = torch.linalg.qr(torch.randn(d, 3, generator=torch.Generator().manual_seed(7)))
    scale = torch.linspace(0.5, 3.0, d)  # anisotropic noise: several directions carry y
    X = torch.randn(n, d, generator=g) * scale + (2 * y[:, None] - 1).float() * \
        (q @ torch.tensor([1.5, 1.0, 0.7]))
    return X, y


@exercise("5.1", reference=solutions.inlp)
def check_inlp(student_fn: Callable, n_iterations: int = 8) -> CheckResult:
    """``student_fn(X [N, d], y [N], n_iterations) -> basis [k, d]``: orthonormal rows spanning
    the removed subspace, ``k = n_iterations``; after projecting it out, a fresh probe trained
    on the erased training data must be at chance (|acc - 0.5| < 0.06) on erased held-out data,
    while a random subspace of the same rank leaves the concept readable."""
    name = "inlp"
    X, y = _concept_data(3000, 0)
    Xt, yt = _concept_data(3000, 1)
    out = _seeded_call(student_fn, X.clone(), y.clone(), n_iterations)
    out = as_tensor(out, "your basis [k, d]")
    if out.ndim != 2 or out.shape[1] != X.shape[1]:
        return CheckResult(name, False, f"return the basis as a tensor [k, d] (d = {X.shape[1]}), "
                           f"got shape {tuple(out.shape)}")
    basis = out.double()
    if basis.shape[0] != n_iterations:
        return CheckResult(name, False, f"{basis.shape[0]} directions for {n_iterations} "
                           "iterations: a binary probe removes one direction per iteration")
    gram = basis @ basis.T
    if not torch.allclose(gram, torch.eye(n_iterations, dtype=torch.float64), atol=1e-4):
        norms = gram.diagonal()
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
            return CheckResult(name, False, "the rows are not unit vectors: normalise each new "
                               "direction")
        return CheckResult(name, False, "the rows are not orthogonal: remove from each new probe "
                           "direction its components along the earlier ones (Gram-Schmidt), and "
                           "train each new probe on the *projected* data")
    mean = X.double().mean(0)
    er = NullspaceEraser(basis, mean)
    acc = train_probe(er(X.double()).float(), y).accuracy(er(Xt.double()).float(), yt)
    rnd = random_eraser(X.shape[1], n_iterations, mean, seed=0)
    acc_rnd = train_probe(rnd(X.double()).float(), y).accuracy(rnd(Xt.double()).float(), yt)
    if abs(acc - 0.5) >= 0.06:
        return CheckResult(name, False, f"after removing your {n_iterations} directions a fresh "
                           f"probe still reads the concept on held-out data (accuracy {acc:.2f}; "
                           f"a random subspace of the same rank: {acc_rnd:.2f}). Train each "
                           "iteration's probe on the data projected onto the nullspace of all "
                           "directions found so far, and take the probe's weight vector as the "
                           "direction")
    return CheckResult(name, True, f"orthonormal basis of rank {n_iterations}; held-out probe "
                       f"accuracy after erasure {acc:.2f} (a random subspace of the same rank "
                       f"leaves {acc_rnd:.2f})")
