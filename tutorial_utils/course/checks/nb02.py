"""Exercise checks for notebook 02 (context mixing).

Each check first runs the student's function on synthetic cases whose answer is known (identity
attention rolls out to the identity; one head with equal value norms gives back the attention
weights; a piece pointing away from the output gets no ALTI contribution; a value vector that is
already zero changes nothing when zeroed...), recognising the common mistakes by name, then
compares it with a reference on fresh random inputs and, where a model is passed, with the
library on the real model. Each check is an :class:`~tutorial_utils.course.answers.ExerciseCheck`:
``my_rollout = nb02.check_rollout(my_rollout)`` prints the verdict and returns the function later
cells use; ``check_rollout.judge(...)`` returns the
:class:`~tutorial_utils.course.grading.CheckResult` only.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..answers import exercise
from ..grading import CheckResult, as_tensor, close, compare_to_reference
from ..solutions import nb02 as solutions
from ..solutions.nb02 import run_layer
from ...context_mixing import rollout as _rollout
from ... import context_mixing as cm
from ...context_mixing.value_zeroing import _cosine_distance, value_zeroed_outputs

__all__ = ["check_rollout", "check_attention_norm", "check_alti_layer",
           "check_value_zeroing_one_token", "check_cue_share_per_layer", "run_layer"]


def _stochastic(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g).mul(2).softmax(-1)


# --------------------------------------------------------------------------------------------
# Exercise 2.1: attention rollout
# --------------------------------------------------------------------------------------------

@exercise("2.1", reference=solutions.rollout)
def check_rollout(student_fn: Callable[[torch.Tensor, bool], torch.Tensor]) -> CheckResult:
    """``student_fn(per_layer [L, T, T], add_residual) -> [L, T, T]``: ``R_0 = A~_0``,
    ``R_l = A~_l R_{l-1}`` with ``A~ = 0.5 A + 0.5 I`` when ``add_residual`` (else ``A``)."""
    name = "rollout"
    L, T = 3, 4
    eye = torch.eye(T).expand(L, T, T).clone()
    for res in (False, True):
        out = student_fn(eye.clone(), res)
        out = as_tensor(out, "your rollout [L, T, T]")
        if out.shape != (L, T, T):
            return CheckResult(name, False, f"returned shape {tuple(out.shape)} "
                                            f"for {L} layers of {T} tokens: return every layer's "
                                            f"R_l stacked, shape [L, T, T]")
        if not close(out, eye):
            return CheckResult(name, False, f"identity attention (every token attends only to "
                                            f"itself) must roll out to the identity in every layer "
                                            f"(add_residual={res}); it did not")
    # every token attends to the last token in layer 0, to its previous token in layer 1:
    # R_1 = A_1 A_0 sends everything to the last token; A_0 A_1 would send it to the one before
    to_last = torch.zeros(T, T)
    to_last[:, -1] = 1
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1
    A = torch.stack([to_last, prev])
    out = student_fn(A.clone(), False)
    out = as_tensor(out, "your rollout [L, T, T]")
    if close(out[-1:], (to_last @ prev)[None]):
        return CheckResult(name, False, "the layers are multiplied in the wrong order: layer l "
                                        "mixes what layers 0..l-1 produced, so R_l = A_l @ R_{l-1} "
                                        "(you computed R_{l-1} @ A_l)")
    if not close(out, torch.stack([to_last, prev @ to_last])):
        return CheckResult(name, False, "layer 0 sends every token to the last one and layer 1 "
                                        "to its previous token: after both, every row must be "
                                        "one-hot on the last token (rows of R_1 = A_1 @ R_0)")
    out = student_fn(to_last[None].clone(), True)
    if close(out, to_last[None]):
        return CheckResult(name, False, "add_residual=True must replace A by 0.5 A + 0.5 I before "
                                        "multiplying: you returned A unchanged")
    if not close(out, (0.5 * to_last + 0.5 * torch.eye(T))[None]):
        return CheckResult(name, False, "with add_residual=True, one layer A must give "
                                        "0.5 A + 0.5 I (rows renormalised)")

    def inputs(g: torch.Generator) -> tuple:
        L_, T_ = 2 + int(torch.randint(3, (1,), generator=g)), 3 + int(torch.randint(5, (1,), generator=g))
        return _stochastic(g, L_, T_, T_), bool(g.initial_seed() % 2 == 0)

    res = compare_to_reference(name, student_fn, lambda a, r: _rollout(a, add_residual=r),
                               inputs, n_trials=4)
    if res.passed:
        res.message = ("identity rolls out to the identity, the layer order and the residual are "
                       "right, and it " + res.message)
    return res


# --------------------------------------------------------------------------------------------
# Exercise 2.2: attention-norm and RES1
# --------------------------------------------------------------------------------------------

_ref_attention_norm = solutions.attention_norm


@exercise("2.2", reference=solutions.attention_norm)
def check_attention_norm(student_fn: Callable[..., torch.Tensor], model: Any = None,
                         tokens: torch.Tensor | None = None) -> CheckResult:
    """``student_fn(pattern [H, T, T], values [T, H, d_head], W_O [H, d_head, d], resid=None)
    -> [T, T]``: ``||sum_h alpha^h_ij v^h_j W_O^h||``, with ``resid [T, d]`` (RES1) ``x_i``
    added to the piece ``j = i`` first; not normalised. With ``model``/``tokens`` (one row) it
    is also compared, row-normalised, with ``cm.attention_norm`` on every layer."""
    name = "attention_norm"
    g = torch.Generator().manual_seed(0)
    T, d = 5, 6
    # one head whose transformed values all have norm 3: ||alpha_ij f(x_j)|| = 3 alpha_ij
    pattern = _stochastic(g, 1, T, T)
    v = torch.randn(T, 1, d, generator=g)
    v = 3 * v / v.norm(dim=-1, keepdim=True)
    W_O = torch.eye(d)[None]
    out = student_fn(pattern, v, W_O)
    if not close(out, 3 * pattern[0]):
        return CheckResult(name, False, "one head whose transformed values f(x_j) all have norm "
                                        "3 must give 3 * alpha_ij (attention-norm equals attention "
                                        "when value norms are equal); it did not")
    # W_O matters: the norm of the values alone is not the norm of what is written
    out = student_fn(pattern, v, 2 * W_O)
    if close(out, 3 * pattern[0]):
        return CheckResult(name, False, "doubling W_O must double the result: multiply the "
                                        "values by W_O before taking the norm")
    # two heads with the same weights whose transformed values cancel: z_ij = 0
    two = pattern.expand(2, T, T).clone()
    W2 = torch.stack([torch.eye(d), -torch.eye(d)])
    v2 = torch.cat([v, v], dim=1)
    out = student_fn(two, v2, W2)
    if close(out, 6 * pattern[0]):
        return CheckResult(name, False, "two heads whose vectors cancel must give 0, you gave the "
                                        "sum of the per-head norms: sum over heads first, then "
                                        "take one norm (heads can cancel each other)")
    if not close(out, torch.zeros(T, T)):
        return CheckResult(name, False, "two heads whose vectors cancel exactly must give 0 "
                                        "everywhere")
    # RES1: with zero values only the residual is left, on the diagonal
    resid = torch.randn(T, d, generator=g)
    out = student_fn(pattern, torch.zeros_like(v), W_O, resid)
    if not close(out, torch.diag(resid.norm(dim=-1))):
        off = as_tensor(out, "your matrix [T, T]", torch.float32)
        hint = (" You added x to every source: the residual is the query's own vector x_i, "
                "added only to the piece j == i." if off.shape == (T, T) and
                float((off - torch.diag(torch.diag(off))).abs().max()) > 1e-4 else "")
        return CheckResult(name, False, "with all values zero, RES1 must give ||x_i|| on the "
                                        "diagonal and 0 elsewhere." + hint)

    def inputs(gen: torch.Generator) -> tuple:
        H, T_, dh, d_ = 3, 5, 4, 8
        resid_ = torch.randn(T_, d_, generator=gen) if gen.initial_seed() % 2 else None
        return (_stochastic(gen, H, T_, T_), torch.randn(T_, H, dh, generator=gen),
                torch.randn(H, dh, d_, generator=gen), resid_)

    res = compare_to_reference(name, student_fn, _ref_attention_norm, inputs, n_trials=4)
    if not res.passed or model is None:
        return res

    toks = tokens.reshape(1, -1)
    lib = cm.attention_norm(model, toks[0], "res")
    for layer, it in enumerate(cm.collect_internals(model, toks)):
        out = student_fn(it.pattern[0], it.values[0], it.W_O, it.resid_pre[0])
        mine = cm.row_normalize(as_tensor(out, "your matrix [T, T]", torch.float32))
        if not close(mine, lib[layer].float(), atol=1e-4):
            return CheckResult(name, False, f"on layer {layer} of the real model your RES1 "
                                            f"(row-normalised) differs from cm.attention_norm")
    res.message = ("known answers right (equal value norms give the attention weights, "
                   "cancelling heads give 0, the residual sits on the diagonal), " + res.message
                   + f", and equals cm.attention_norm(..., 'res') on all {len(lib)} layers of "
                     "the model")
    return res


# --------------------------------------------------------------------------------------------
# Exercise 3.1: ALTI for one layer
# --------------------------------------------------------------------------------------------

_ref_alti_layer = solutions.alti_layer


@exercise("3.1", reference=solutions.alti_layer)
def check_alti_layer(student_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     model: Any = None, tokens: torch.Tensor | None = None) -> CheckResult:
    """``student_fn(pieces [T, T, d], output [T, d]) -> [T, T]``: ALTI's layer matrix,
    ``c_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1)`` normalised over ``j`` (Ferrando et al.
    2022). With ``model``/``tokens`` also compared with ``cm.alti(..., rollout=False)``."""
    name = "alti_layer"
    # a piece equal to the output takes all; zero pieces take nothing
    T, d = 3, 4
    g = torch.Generator().manual_seed(0)
    y = torch.randn(T, d, generator=g)
    pieces = torch.zeros(T, T, d)
    pieces[torch.arange(T), torch.arange(T)] = y
    out = student_fn(pieces, y)
    if not close(out, torch.eye(T)):
        return CheckResult(name, False, "when each token's own piece equals the output and the "
                                        "others are 0, the matrix must be the identity")
    # y = (1, 0): an aligned piece (1, 0) and a large orthogonal one (0, 3)
    y1 = torch.tensor([[1.0, 0.0]])
    p1 = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])
    out = student_fn(p1, y1)
    o = as_tensor(out, "your ALTI matrix [T, T]", torch.float32)
    if o.shape == (1, 2) and close(o, torch.tensor([[0.25, 0.75]])):
        return CheckResult(name, False, "you scored each piece by its own norm (that is "
                                        "attention-norm); ALTI scores by proximity to the output, "
                                        "||y_i||_1 - ||y_i - T_i(x_j)||_1")
    if o.shape == (1, 2) and not torch.isfinite(o).all():
        return CheckResult(name, False, "a piece far from the output has ||y||_1 - ||y - T||_1 < 0: "
                                        "clamp it at 0 before normalising (you got inf/nan)")
    if not close(o, torch.tensor([[1.0, 0.0]])):
        hint = (" Negative entries: clamp at 0 before normalising." if o.numel() and
                float(o.min()) < -1e-6 else "")
        return CheckResult(name, False, "with y = (1, 0), the piece (1, 0) must get 1 and the "
                                        "orthogonal piece (0, 3), which moves the sum away from y, "
                                        "must get 0." + hint)
    # L1, not L2: y = (1, 1), pieces (1, 0) and (0.75, 0.75)
    y2 = torch.tensor([[1.0, 1.0]])
    p2 = torch.tensor([[[1.0, 0.0], [0.75, 0.75]]])
    out = student_fn(p2, y2)
    if not close(out, _ref_alti_layer(p2, y2)):
        l2 = (y2.norm(dim=-1)[:, None] - (y2[:, None] - p2).norm(dim=-1)).clamp_min(0)
        if close(out, l2 / l2.sum(-1, keepdim=True)):
            return CheckResult(name, False, "you used the Euclidean (L2) norm; ALTI uses the L1 "
                                            "(Manhattan) norm, .abs().sum(-1)")
        return CheckResult(name, False, f"for y = (1, 1) with pieces (1, 0) and (0.75, 0.75) the "
                                        f"row must be {_ref_alti_layer(p2, y2)[0].tolist()}")

    def inputs(gen: torch.Generator) -> tuple:
        T_, d_ = 5, 8
        p = torch.randn(T_, T_, d_, generator=gen) * 0.3
        p[torch.arange(T_), torch.arange(T_)] += torch.randn(T_, d_, generator=gen)
        return p, p.sum(1) + 0.1 * torch.randn(T_, d_, generator=gen)

    res = compare_to_reference(name, student_fn, _ref_alti_layer, inputs, n_trials=3)
    if not res.passed or model is None:
        return res

    toks = tokens.reshape(1, -1)
    lib = cm.alti(model, toks[0], rollout=False)
    for layer in range(model.cfg.n_layers):
        dec = cm.decompose_attention_block(model, toks, layer)
        out = student_fn(dec.per_source[0], dec.output[0])
        if not close(out, lib[layer].float(), atol=1e-4):
            return CheckResult(name, False, f"on layer {layer} of the real model your matrix "
                                            f"differs from cm.alti(..., rollout=False)")
    res.message = ("known answers right (proximity, not norm; clamped at 0; L1), " + res.message
                   + f", and equals cm.alti(..., rollout=False) on all {len(lib)} layers")
    return res


# --------------------------------------------------------------------------------------------
# Exercise 4.1 (bonus): Value Zeroing for one token
# --------------------------------------------------------------------------------------------

def _zeroed(layer: Any, x: torch.Tensor, j: int, module: str = "value",
            keep_bias: bool = False) -> torch.Tensor:
    """``1 - cos`` with token ``j``'s output of ``layer.attention.self.<module>`` zeroed."""
    lin = getattr(layer.attention.self, module)

    def hook(_m: Any, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, j] = lin.bias if keep_bias else 0.0
        return out

    with torch.no_grad():
        clean = run_layer(layer, x)
        handle = lin.register_forward_hook(hook)
        try:
            new = run_layer(layer, x)
        finally:
            handle.remove()
    return 1 - torch.nn.functional.cosine_similarity(new, clean, dim=-1)[0]


def _tiny_bert_layer(seed: int, zero_wv: bool = False, zero_bv: bool = False) -> Any:
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    cfg = BertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = "eager"
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone
        torch.manual_seed(seed)
        layer = BertLayer(cfg).eval()
    with torch.no_grad():
        for p in layer.parameters():  # init weights are tiny; make them matter
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        if zero_wv:
            layer.attention.self.value.weight.zero_()
        if zero_bv:
            layer.attention.self.value.bias.zero_()
    for p in layer.parameters():
        p.requires_grad_(False)
    return layer


@exercise("4.1", reference=solutions.value_zeroing_one_token)
def check_value_zeroing_one_token(student_fn: Callable[..., torch.Tensor], model: Any = None,
                                  tokens: torch.Tensor | None = None) -> CheckResult:
    """``student_fn(layer, x [1, T, d], j) -> [T]``: run the Hugging Face BERT layer ``layer``
    on its input ``x`` once as it is and once with token ``j``'s whole value vector
    (``x_j W_V + b_V``) set to 0 in every head, and return ``1 - cos`` between each token's new
    and original output (Mohebbi et al. 2023). With ``model``/``tokens`` also compared with the
    library's ``value_zeroed_outputs`` on the real encoder."""
    name = "value_zeroing_one_token"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 5, 16, generator=g)
    # a value vector that is already zero: zeroing it changes nothing
    layer = _tiny_bert_layer(0, zero_wv=True, zero_bv=True)
    out = student_fn(layer, x, 2)
    if close(out, torch.ones(5), atol=1e-6):
        return CheckResult(name, False, "nothing changes when a zero value is zeroed, so every "
                                        "score must be 0 and you gave 1: you returned cos; the "
                                        "score is 1 - cos")
    if not close(out, torch.zeros(5), atol=1e-6):
        return CheckResult(name, False, "in a layer whose value vectors are all 0 already, "
                                        "zeroing one changes nothing: every score must be 0. Zero "
                                        "the value vector only: keep the attention weights and "
                                        "token j's own residual stream")
    # W_V = 0 but b_V != 0: the value vector is the bias, and it must go too
    layer = _tiny_bert_layer(1, zero_wv=True)
    expected = _zeroed(layer, x, 2)
    out = student_fn(layer, x, 2)
    if close(out, torch.zeros(5), atol=1e-6):
        return CheckResult(name, False, "when W_V = 0 the value vector is b_V, and zeroing it must "
                                        "change the output: zero the whole value vector "
                                        "x_j W_V + b_V, bias included (you left the bias)")
    if not close(out, expected, atol=1e-5):
        return CheckResult(name, False, "with W_V = 0 (values = b_V) your scores differ from "
                                        "zeroing token j's value vector in every head")
    layer = _tiny_bert_layer(2)
    expected = _zeroed(layer, x, 1)
    out = student_fn(layer, x, 1)
    o = as_tensor(out, "your scores [T]", torch.float32)
    if o.shape != expected.shape:
        return CheckResult(name, False, f"returned shape {tuple(o.shape)}, expected [T] = "
                                        f"{tuple(expected.shape)}: one score per token")
    if not close(o, expected, atol=1e-5):
        for wrong, what in (((1 - expected), "you returned cos; the score is 1 - cos"),
                            (_zeroed(layer, x, 1, "key"), "you zeroed the key, not the value"),
                            (_zeroed(layer, x, 1, "query"), "you zeroed the query, not the value")):
            if close(o, wrong, atol=1e-5):
                return CheckResult(name, False, what)
        return CheckResult(name, False, f"on a random BERT layer, token 1 zeroed: max abs error "
                                        f"{float((o - expected).abs().max()):.3g}. Zero the output "
                                        f"of attention.self.value at position j (all heads), "
                                        f"rerun the same layer on the same x, compare with cosine")
    if model is None:
        return CheckResult(name, True, "known answers right on synthetic BERT layers")

    toks = tokens.reshape(1, -1)
    hf = cm.original_hf_model(model)
    with torch.no_grad():
        hidden = hf(input_ids=toks, output_hidden_states=True).hidden_states
    T = toks.shape[1]
    for layer_idx, j in ((0, 1), (model.cfg.n_layers - 1, T - 2)):
        out = student_fn(hf.encoder.layer[layer_idx], hidden[layer_idx], j)
        ref = value_zeroed_outputs(model, toks, [(0, layer_idx, j), (0, layer_idx, -1)])
        ref = _cosine_distance(ref[0], ref[1]).float()
        if not close(as_tensor(out, "your scores [T]", torch.float32).reshape(-1), ref, atol=1e-5):
            return CheckResult(name, False, f"on layer {layer_idx} of the real encoder (token {j} "
                                            f"zeroed) your scores differ from the library's")
    return CheckResult(name, True, "known answers right on synthetic BERT layers (nothing to "
                                   "zero gives 0; the bias is zeroed too) and equals the library's "
                                   "Value Zeroing on the real encoder")


# --------------------------------------------------------------------------------------------
# Exercise 5.1: where does the verb read the subject? (cue share per layer)
# --------------------------------------------------------------------------------------------

_ref_share_per_layer = solutions.cue_share_per_layer


@exercise("5.1", reference=solutions.cue_share_per_layer)
def check_cue_share_per_layer(student_fn: Callable[..., torch.Tensor]) -> CheckResult:
    """``student_fn(maps [B, L, T, T], query [B], cue [B], distractor [B]) -> [L]``: per
    layer, the share of examples whose query row gives the cue strictly more than the
    distractor."""
    name = "cue_share_per_layer"
    B, L, T = 4, 2, 5
    q, c, dis = torch.full((B,), 4), torch.tensor([1, 2, 1, 2]), torch.tensor([3, 3, 0, 0])
    maps = torch.full((B, L, T, T), 1.0 / T)
    b = torch.arange(B)
    maps[b, 0, q, c] += 0.1       # layer 0: the query row favours the cue
    maps[b, 0, q, dis] -= 0.1
    maps[b, 1, q, c] -= 0.1       # layer 1: it favours the distractor
    maps[b, 1, q, dis] += 0.1
    maps[b, :, dis, q] += 0.2     # columns say the opposite of rows
    out = student_fn(maps, q, c, dis)
    o = as_tensor(out, "your shares [L]", torch.float32)
    if o.shape != (L,):
        return CheckResult(name, False, f"returned shape {tuple(o.shape)}: return one share per "
                                        f"layer, shape [L] = ({L},)")
    if close(o, torch.tensor([0.0, 1.0])):
        return CheckResult(name, False, "layer 0 favours the cue in every example and must score "
                                        "1: you swapped cue and distractor")
    if not close(o, torch.tensor([1.0, 0.0])):
        return CheckResult(name, False, f"expected [1, 0] (layer 0's query rows favour the cue, "
                                        f"layer 1's the distractor), got {o.tolist()}. Rows are "
                                        f"queries: read maps[b, l, query[b], :], not a column")
    out = student_fn(torch.full((B, L, T, T), 1.0 / T), q, c, dis)
    if not close(out, torch.zeros(L)):
        return CheckResult(name, False, "uniform maps are a tie everywhere, and a tie is not a "
                                        "win: use >, not >=")

    def inputs(g: torch.Generator) -> tuple:
        B_, L_, T_ = 12, 3, 7
        return (_stochastic(g, B_, L_, T_, T_), torch.randint(T_, (B_,), generator=g),
                torch.randint(T_, (B_,), generator=g), torch.randint(T_, (B_,), generator=g))

    res = compare_to_reference(name, student_fn, _ref_share_per_layer, inputs, n_trials=3)
    if res.passed:
        res.message = "known answers right (rows, per layer, ties lose), and it " + res.message
    return res
