"""Exercise checks for notebook 06 (features: superposition, SAEs, transcoders, attribution
graphs).

Each check first runs the student's function on a case whose answer is known by construction
(an antipodal pair of toy features has dimensionality 1/2, an SAE that reconstructs its input
exactly explains all the variance and recovers all the loss, a write after the read has no
edge, a chain graph's influence sums its paths by hand, a feature whose decoder column is zero
changes nothing when switched off, ...) and, when it is wrong, compares it with the answers the likely
mistakes give to name the mistake; then it compares with the reference or the library on fresh
inputs or on the notebook's model. Each check is an
:class:`~tutorial_utils.course.answers.ExerciseCheck`: ``sae_loss = nb06.check_sae_loss(sae_loss)``
prints the verdict and returns what later cells use; ``check_sae_loss.judge(...)`` returns the
:class:`~tutorial_utils.course.grading.CheckResult` only.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import Tensor

from ..answers import exercise
from ..grading import (CheckResult, InvalidAnswer, as_number, as_tensor, compare_to_reference,
                       raised)
from ..solutions import nb06 as solutions
from ...features.dictionary import DictionaryConfig, SparseDictionary
from ...features.evaluation import next_token_loss
from ...features.interventions import model_deltas
from ...features.replacement import ReplacementModel
from ...features.superposition import feature_geometry

__all__ = ["check_ablate_in_model", "check_edge_by_hand", "check_feature_dimensionality",
           "check_node_influence", "check_sae_loss", "check_splice_scores"]


def _near(a: float, b: float, tol: float = 1e-4) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


# --------------------------------------------------------------------------------------------
# Exercise 1.1: feature dimensionality
# --------------------------------------------------------------------------------------------

def _known_toy_weights() -> tuple[Tensor, Tensor]:
    """Four instances of 2 hidden dimensions x 5 features with known dimensionalities:
    two orthogonal features (1 each), two antipodal pairs (1/2 each), a regular pentagon (2/5
    each) and the pentagon scaled by 2 (still 2/5); dropped features (W_i = 0) get 0."""
    W = torch.zeros(4, 2, 5)
    W[0, :, 0] = torch.tensor([1.0, 0.0])
    W[0, :, 1] = torch.tensor([0.0, 1.0])
    W[1, :, 0], W[1, :, 1] = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])
    W[1, :, 2], W[1, :, 3] = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    angles = torch.arange(5) * (2 * math.pi / 5)
    W[2] = torch.stack([angles.cos(), angles.sin()])
    W[3] = 2 * W[2]
    expected = torch.tensor([[1, 1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5, 0], [0.4] * 5, [0.4] * 5])
    return W, expected


@exercise("1.1", reference=solutions.feature_dimensionality)
def check_feature_dimensionality(fn: Callable) -> CheckResult:
    """``fn(W [K, m, n]) -> [K, n]``: ``D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2``."""
    name = "feature_dimensionality"
    W, expected = _known_toy_weights()
    try:
        got = as_tensor(fn(W.clone()), "your dimensionalities [instances, features]",
                        torch.float32)
    except InvalidAnswer as e:
        msg = str(e)
        if "NaN" in msg:
            msg += ("; here a dropped feature (W_i = 0) has dimensionality 0: clamp the norm "
                    "before dividing by it")
        return CheckResult(name, False, msg)
    except Exception as e:  # noqa: BLE001
        return raised(name, e)
    if tuple(got.shape) != tuple(expected.shape):
        return CheckResult(name, False, f"return one value per instance and feature: shape "
                                        f"{tuple(expected.shape)} for W of shape {tuple(W.shape)}, "
                                        f"got {tuple(got.shape)}")
    live = expected > 0
    if not torch.allclose(got[live], expected[live], atol=1e-4):
        antipodal, ortho = float(got[1, 0]), float(got[0, 0])
        if math.isinf(ortho) or abs(antipodal - 1.0) < 1e-3:
            hint = ("the sum over j includes j = i itself: a feature alone in its dimension has "
                    "D = 1, an antipodal pair 1/2")
        elif abs(float(got[3, 0]) - 0.1) < 1e-3:
            hint = ("the overlap uses the *unit* vector W_hat_i = W_i / ||W_i|| (your pentagon of "
                    "norm-2 features gives 0.1 instead of 2/5: D does not depend on the scale)")
        elif abs(float(got[3, 0]) - 1.6) < 1e-3:
            hint = ("the overlap is W_hat_i . W_j: the unit vector of feature i with the *raw* "
                    "column W_j (with unit vectors on both sides your norm-2 pentagon gives "
                    "1.6, its squared norm times 2/5, instead of 2/5)")
        elif abs(float(got[3, 0]) - 0.8) < 1e-3 or abs(float(got[3, 0]) - 0.2) < 1e-3:
            hint = "the numerator is the squared norm ||W_i||^2, and each overlap is squared"
        else:
            hint = "D_i = ||W_i||^2 / sum_j (W_hat_i . W_j)^2, columns W_i of W[k] (axis 1 is hidden)"
        return CheckResult(name, False, f"known arrangements: orthogonal features D = 1, antipodal "
                                        f"pairs 1/2, a pentagon 2/5 and the same pentagon at norm "
                                        f"2 (still 2/5); you gave {ortho:.3g}, {antipodal:.3g}, "
                                        f"{float(got[2, 0]):.3g}, {float(got[3, 0]):.3g}: {hint}")
    if not torch.allclose(got[~live], torch.zeros(int((~live).sum())), atol=1e-4):
        return CheckResult(name, False, "a dropped feature (W_i = 0) must get dimensionality 0 "
                                        "(clamp the norm you divide by)")

    def make(g: torch.Generator):
        K, m, n = (int(x) for x in torch.randint(2, 7, (3,), generator=g))
        W_ = torch.randn(K, m, n + 2, generator=g)
        return (W_ / W_.norm(dim=1, keepdim=True) * (0.2 + torch.rand(K, 1, n + 2, generator=g)),)

    res = compare_to_reference(name, fn, solutions.feature_dimensionality, make, atol=1e-4)
    if res.passed:
        lib = feature_geometry(W)["dimensionality"]
        res.message = (f"orthogonal 1, antipodal 1/2, pentagon 2/5 (any scale), dropped 0, and "
                       f"the reference on 3 random arrangements (feature_geometry agrees: "
                       f"{bool(torch.allclose(lib, expected, atol=1e-4))})")
    return res


# --------------------------------------------------------------------------------------------
# Exercise 2.1: the SAE's forward and loss
# --------------------------------------------------------------------------------------------

def _sae_loss_variant(x: Tensor, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor,
                      l1: float, V: float, mistake: str) -> float:
    """The loss with one likely mistake (``mistake`` names it)."""
    pre = (x - (0 if mistake == "no_b_pre" else b_dec)) @ W_enc.T + b_enc
    f = pre if mistake == "no_relu" else torch.relu(pre)
    x_hat = f @ W_dec.T + (0 if mistake == "no_b_dec_out" else b_dec)
    err = (x - x_hat).pow(2)
    mse = err.mean() if mistake == "mean_over_elements" else err.sum(-1).mean()
    mse = mse if mistake == "mse_not_normalised" else mse / V
    l1_term = {"l1_raw": f.sum(-1).mean(), "l1_over_V": f.sum(-1).mean() / V,
               "l1_abs_pre": pre.abs().sum(-1).mean() / V ** 0.5}.get(mistake, f.sum(-1).mean() / V ** 0.5)
    return float(mse + l1 * l1_term)


_SAE_MISTAKES = {
    "no_relu": "apply the ReLU to the pre-activations: f = ReLU(W_enc (x - b_dec) + b_enc)",
    "no_b_pre": "subtract the decoder bias from x before encoding: W_enc (x - b_dec) + b_enc",
    "no_b_dec_out": "add the decoder bias back: x_hat = W_dec f + b_dec",
    "mean_over_elements": "sum the squared error over the vector, then average over the batch "
                          "(you averaged over every element)",
    "mse_not_normalised": "divide the squared error by the variance V (the loss is the fraction "
                          "of variance unexplained plus the penalty)",
    "l1_raw": "divide the L1 term by sqrt(V), so one coefficient means the same on any site",
    "l1_over_V": "the L1 term is divided by sqrt(V), not V (activations scale like sqrt(V))",
    "l1_abs_pre": "the L1 penalty is on the activations f (after the ReLU), not on the "
                  "pre-activations",
}


def _sae_known_case() -> tuple[tuple, float]:
    """x, weights and V for which every mistake of :data:`_SAE_MISTAKES` gives another loss."""
    x = torch.tensor([[3.0, 1.0], [1.0, 4.0], [0.0, 0.5]])
    W_enc = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    b_enc = torch.tensor([0.0, 0.0, -0.25])
    W_dec = 0.5 * W_enc.T
    b_dec = torch.tensor([1.0, 1.0])
    args = (x, W_enc, b_enc, W_dec, b_dec, 0.5, 9.0)
    return args, float(solutions.sae_loss(*args))


@exercise("2.1", reference=solutions.sae_loss)
def check_sae_loss(fn: Callable) -> CheckResult:
    """``fn(x [B, d], W_enc [F, d], b_enc [F], W_dec [d, F], b_dec [d], l1_coeff, variance) ->
    loss``."""
    name = "sae_loss"
    args, expected = _sae_known_case()
    try:
        got = fn(*(a.clone() if isinstance(a, Tensor) else a for a in args))
    except Exception as e:  # noqa: BLE001
        return raised(name, e)
    got = as_number(got, "your loss")
    if not _near(got, expected):
        for mistake, hint in _SAE_MISTAKES.items():
            if _near(got, _sae_loss_variant(*args, mistake)):
                return CheckResult(name, False, f"on a small known case the loss is "
                                                f"{expected:.4f}, you gave {got:.4f}: {hint}")
        return CheckResult(name, False, f"on a small known case the loss is {expected:.4f}, you "
                                        f"gave {got:.4f}: f = ReLU(W_enc (x - b_dec) + b_enc), "
                                        f"x_hat = W_dec f + b_dec, loss = mean_b ||x - x_hat||^2 "
                                        f"/ V + l1_coeff * mean_b sum_i f_i / sqrt(V)")

    def make(g: torch.Generator):
        B, d, F = (int(v) for v in torch.randint(3, 9, (3,), generator=g))
        return (torch.randn(B, d, generator=g), torch.randn(F, d, generator=g),
                torch.randn(F, generator=g), torch.randn(d, F, generator=g),
                torch.randn(d, generator=g), float(torch.rand((), generator=g)),
                float(torch.rand((), generator=g) * 5 + 0.5))

    res = compare_to_reference(name, fn, solutions.sae_loss, make, atol=1e-4)
    if res.passed:
        res.message = "the known case and the reference on 3 random SAEs"
    return res


# --------------------------------------------------------------------------------------------
# Exercise 2.2: variance explained and loss recovered by splicing
# --------------------------------------------------------------------------------------------

def _pair(value: Any) -> tuple[float, float]:
    """Two numbers from a tuple, a list, a tensor or a dict with two entries."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, Tensor):
        value = value.flatten().tolist()
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidAnswer("return two numbers: (fraction of variance explained, loss recovered)")
    return as_number(value[0], "your variance explained"), as_number(value[1], "your loss recovered")


def _exact_sae(d_model: int, layer: int) -> SparseDictionary:
    """An SAE that reconstructs its input exactly: features relu(x) and relu(-x)."""
    d = SparseDictionary(DictionaryConfig("sae", d_model, d_model, 2 * d_model, "relu",
                                          layer=layer))
    eye = torch.eye(d_model)
    with torch.no_grad():
        d.W_enc.copy_(torch.cat([eye, -eye]))
        d.W_dec.copy_(torch.cat([eye, -eye], 1))
        d.b_enc.zero_()
        d.b_dec.zero_()
    return d.requires_grad_(False).eval()


def _constant_sae(d_model: int, layer: int, value: Tensor) -> SparseDictionary:
    """An SAE whose reconstruction is always ``value`` (its decoder writes nothing)."""
    d = SparseDictionary(DictionaryConfig("sae", d_model, d_model, 4, "relu", layer=layer))
    with torch.no_grad():
        d.W_dec.zero_()
        d.b_dec.copy_(value)
    return d.requires_grad_(False).eval()


@torch.no_grad()
def _splice_variants(lm: Any, sae: Any, tokens: Tensor) -> dict[str, tuple[float, float]]:
    """(FVE, loss recovered) as the reference computes them and with the likely mistakes."""
    layer, site = sae.config.layer, f"resid_pre.{sae.config.layer}"
    x3 = lm.activations(tokens, (site,))[site]
    x = x3.reshape(-1, x3.shape[-1])
    sse = (x - sae(x)).pow(2).sum()
    fve = float(1 - sse / (x - x.mean(0)).pow(2).sum())
    fve_raw = float(1 - sse / x.pow(2).sum())
    fve_pos = float(1 - sse / (x3 - x3.mean(0)).pow(2).sum())

    def loss(edit: Any) -> float:
        return float(next_token_loss(lm.run(tokens, resid_edit=edit).logits, tokens))

    def at(l: int, fn: Callable[[Tensor], Tensor]) -> Callable:
        return lambda layer_, r: fn(r) if layer_ == l else r

    mean = x.mean(0)
    clean, spliced, zero = loss(None), loss(at(layer, sae)), loss(at(layer, torch.zeros_like))
    meaned = loss(at(layer, lambda r: mean.expand_as(r)))
    lr = (zero - spliced) / (zero - clean)
    out = {"reference": (fve, lr), "fve_uncentred": (fve_raw, lr), "fve_per_position": (fve_pos, lr),
           "lr_inverted": (fve, 1 - lr), "lr_mean_ablation": (fve, (meaned - spliced) / (meaned - clean))}
    for name, other in (("wrong_layer_after", layer + 1), ("wrong_layer_before", layer - 1)):
        if 0 <= other <= lm.w.n_layers:      # resid_edit's layer n_layers: before ln_f
            z = loss(at(other, torch.zeros_like))
            out[name] = (fve, (z - loss(at(other, sae))) / (z - clean))
    return out


_SPLICE_MISTAKES = {
    "fve_uncentred": "variance explained divides by the total variance sum ||x - mean(x)||^2, "
                     "not sum ||x||^2 (centre x first)",
    "fve_per_position": "centre x by its mean over every token (all documents and positions "
                        "together), not per position",
    "lr_inverted": "loss recovered is (L_zero - L_spliced) / (L_zero - L_clean): 1 when the "
                   "SAE is as good as the model (you gave 1 minus it)",
    "lr_mean_ablation": "the baseline replaces the site by zeros (zero ablation), not by its mean",
}
_SPLICE_MISTAKES["wrong_layer_after"] = _SPLICE_MISTAKES["wrong_layer_before"] = (
    "the SAE reads the residual stream before block sae.config.layer: splice and ablate there "
    "(resid_edit's layer argument)")


@exercise("2.2", reference=solutions.splice_scores)
def check_splice_scores(fn: Callable, lm: Any, sae: Any, tokens: Any) -> CheckResult:
    """``fn(lm, sae, tokens) -> (fve, loss_recovered)``, first on an SAE that reconstructs
    exactly (1, 1) and one that always outputs the mean (FVE 0) and zero (loss recovered 0),
    then against the library on the notebook's SAE and documents."""
    name = "splice_scores"
    small = tokens[:8]
    d_model, layer = sae.config.d_in, sae.config.layer
    site = f"resid_pre.{layer}"
    mean = lm.activations(small, (site,))[site].reshape(-1, d_model).mean(0)
    cases = [("an SAE that reconstructs its input exactly", _exact_sae(d_model, layer), (1.0, 1.0)),
             ("an SAE whose output is always the mean of x", _constant_sae(d_model, layer, mean),
              None),
             ("an SAE whose output is always 0", _constant_sae(d_model, layer, torch.zeros(d_model)),
              None)]
    for what, d, known in cases:
        ref = _splice_variants(lm, d, small)
        want = known or ref["reference"]
        try:
            got = _pair(fn(lm, d, small))
        except InvalidAnswer as e:
            return CheckResult(name, False, str(e))
        except Exception as e:  # noqa: BLE001
            return raised(name, e)
        if "mean" in what and not _near(got[0], 0.0, 1e-3):
            want_msg = "explains none of the variance (FVE 0)"
        elif "always 0" in what and not _near(got[1], 0.0, 1e-3):
            want_msg = "is the zero ablation itself (loss recovered 0)"
        elif known and not (_near(got[0], 1.0, 1e-3) and _near(got[1], 1.0, 1e-3)):
            want_msg = "explains all the variance and recovers all the loss (1, 1)"
        elif not (_near(got[0], want[0], 1e-3) and _near(got[1], want[1], 1e-3)):
            want_msg = f"gives ({want[0]:.3f}, {want[1]:.3f})"
        else:
            continue
        for mistake, hint in _SPLICE_MISTAKES.items():
            v = ref.get(mistake)
            if v is not None and _near(got[0], v[0], 1e-3) and _near(got[1], v[1], 1e-3):
                return CheckResult(name, False, f"{what} {want_msg}; you gave ({got[0]:.3f}, "
                                                f"{got[1]:.3f}): {hint}")
        return CheckResult(name, False, f"{what} {want_msg}; you gave ({got[0]:.3f}, "
                                        f"{got[1]:.3f})")
    ref = _splice_variants(lm, sae, tokens)["reference"]
    try:
        got = _pair(fn(lm, sae, tokens))
    except InvalidAnswer as e:
        return CheckResult(name, False, str(e))
    except Exception as e:  # noqa: BLE001
        return raised(name, e)
    if not (_near(got[0], ref[0], 1e-3) and _near(got[1], ref[1], 1e-3)):
        return CheckResult(name, False, f"on the notebook's SAE the library measures FVE "
                                        f"{ref[0]:.3f} and loss recovered {ref[1]:.3f}, you gave "
                                        f"({got[0]:.3f}, {got[1]:.3f})")
    return CheckResult(name, True, f"an exact SAE scores (1, 1), a constant one FVE 0 / loss "
                                   f"recovered 0, and the notebook's SAE ({ref[0]:.3f}, "
                                   f"{ref[1]:.3f}) as the library measures")


# --------------------------------------------------------------------------------------------
# Exercise 4.1: one attribution edge by hand
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def _edge_variant(lm: Any, frozen: Any, tokens: Tensor, write: Tensor, write_layer: int,
                  write_pos: int, read: Tensor, read_layer: int, read_pos: int, *,
                  freeze: bool = True, mlps_off: bool = True, difference: bool = True,
                  before_attention: bool = False) -> float:
    """The edge as the reference computes it, or with one switch flipped (a likely mistake)."""
    site = f"ln2_out.{read_layer}"
    at_resid = write_layer == -1 or before_attention
    resid_layer = 0 if write_layer == -1 else write_layer

    def run(add: bool) -> Tensor:
        def mlps(layer: int, m_in: Tensor, m_out: Tensor) -> Tensor:
            out = torch.zeros_like(m_out) if mlps_off else m_out.clone()
            if add and not at_resid and layer == write_layer:
                out[:, write_pos] += write
            return out

        def resid(layer: int, x: Tensor) -> Tensor:
            if add and at_resid and layer == resid_layer:
                x = x.clone()
                x[:, write_pos] += write
            return x

        res = lm.run(tokens[None], mlp_override=mlps, resid_edit=resid,
                     frozen=frozen if freeze else None, capture=(site,))
        return res.cache[site][0, read_pos]

    return float(read @ (run(True) - run(False))) if difference else float(read @ run(True))


def _edge_ingredients(rm: Any, graph: Any, target: int, source: int) -> tuple:
    """(write, write_layer, write_pos, read, read_layer, read_pos) of a graph edge."""
    lt, pt, ft = graph.features[target].tolist()
    read = rm.transcoders[lt].W_enc[ft]
    if graph.node_kind(source) == "embed":
        p = source - graph.slices()["embed"].start
        return rm.lm.w.W_E[graph.tokens[p]], -1, p, read, lt, pt
    ls, ps, fs = graph.features[source].tolist()
    return graph.activations[source] * rm.transcoders[ls].W_dec[:, fs], ls, ps, read, lt, pt


def _pick_edges(graph: Any) -> list[tuple[str, int, int]]:
    """The largest edge of each kind: an embedding into a layer-0 feature at its own position
    and at a later one (through attention), a feature into a later layer's feature at the same
    position and at another one."""
    A, s = graph.adjacency, graph.slices()
    layer, pos = graph.node_layer(), graph.node_pos()
    feats = torch.arange(graph.n_features)
    embeds = torch.arange(s["embed"].start, s["embed"].stop)
    kinds = [("an embedding into a layer-0 feature, same position", embeds, feats[layer[feats] == 0], True),
             ("an embedding into a layer-0 feature at a later position (through attention)",
              embeds, feats[layer[feats] == 0], False),
             ("a feature into a later layer's feature, same position", feats, feats, True),
             ("a feature into a later layer's feature at a later position", feats, feats, False)]
    out = []
    for what, srcs, tgts, same in kinds:
        sub = A[tgts][:, srcs].abs()
        same_pos = pos[tgts][:, None] == pos[srcs][None, :]
        sub = sub * (same_pos if same else ~same_pos)
        if float(sub.max()) > 0:
            i = int(sub.argmax())
            out.append((what, int(tgts[i // sub.shape[1]]), int(srcs[i % sub.shape[1]])))
    return out


_EDGE_MISTAKES = {
    "freeze": "run with frozen=frozen: attention patterns and LayerNorm denominators stay at "
              "their values on the prompt (that is what makes the model linear)",
    "mlps_off": "switch every MLP off (mlp_override returning zeros, plus the write): an edge is "
                "a *direct* effect; paths through other MLPs go through other nodes",
    "difference": "subtract the run without the write: the biases reach ln2_out too, and they "
                  "are constant terms, not the edge",
    "before_attention": "a feature of MLP l writes into the residual stream *after* layer l's "
                        "attention (add it to MLP l's output, not before block l)",
}


@exercise("4.1", reference=solutions.edge_by_hand)
def check_edge_by_hand(fn: Callable, rm: Any, graph: Any) -> CheckResult:
    """``fn(lm, frozen, tokens, write, write_layer, write_pos, read, read_layer, read_pos) ->
    float``: first edges that must be 0 (a write after the read, a later position, a zero
    vector) and twice the write giving twice the edge, then the largest edge of each kind of
    the notebook's graph against ``graph.adjacency``."""
    name = "edge_by_hand"
    lm, frozen, tokens = rm.lm, graph.frozen, graph.tokens
    picked = _pick_edges(graph)
    if not picked:
        return CheckResult(name, False, "the graph has no edge between features (a bug in the check)")
    what, t, s = picked[-1]
    write, wl, wp, read, rl, rp = _edge_ingredients(rm, graph, t, s)
    T = tokens.shape[0]
    zero_cases = [("a write into the same layer's MLP output (after the MLP reads)",
                   (write, rl, rp, read, rl, rp)),
                  ("a write at a later position than the read",
                   (write, -1, T - 1, read, rl, max(0, rp - 1) if rp == T - 1 else rp)),
                  ("a zero write", (torch.zeros_like(write), wl, wp, read, rl, rp))]
    try:
        for label, args in zero_cases:
            if label.startswith("a write at a later") and args[2] <= args[5]:
                continue
            v = as_number(fn(lm, frozen, tokens, *args), "your edge")
            if abs(v) > 1e-4:
                hint = ("a reader only sees writes of earlier layers" if "same layer" in label
                        else "attention is causal" if "position" in label
                        else "nothing was written")
                hint += "; compare a run with the write to one without it"
                for flag in ("before_attention", "difference"):
                    if args[1] >= 0 and _near(v, _edge_variant(lm, frozen, tokens, *args, **{
                            flag: flag == "before_attention"}), 1e-3):
                        hint = _EDGE_MISTAKES[flag]
                return CheckResult(name, False, f"{label} has no edge (0), you gave {v:.4g}: "
                                                f"{hint}")
        one = as_number(fn(lm, frozen, tokens, write, wl, wp, read, rl, rp), "your edge")
        two = as_number(fn(lm, frozen, tokens, 2 * write, wl, wp, read, rl, rp), "your edge")
    except InvalidAnswer as e:
        return CheckResult(name, False, str(e))
    except Exception as e:  # noqa: BLE001
        return raised(name, e)
    if not _near(two, 2 * one, 1e-3):
        hint = ("Freeze the run (frozen=frozen), switch the MLPs off, and subtract the run "
                "without the write")
        for flag in ("freeze", "mlps_off"):
            if _near(one, _edge_variant(lm, frozen, tokens, write, wl, wp, read, rl, rp,
                                        **{flag: False}), 1e-3):
                hint = _EDGE_MISTAKES[flag]
        return CheckResult(name, False, f"with attention and normalisation frozen and the MLPs off "
                                        f"the edge is linear in the write: twice the write gave "
                                        f"{two:.4f}, not 2 x {one:.4f}. {hint[0].upper()}{hint[1:]}")
    for what, t, s in picked:
        ing = _edge_ingredients(rm, graph, t, s)
        want = float(graph.adjacency[t, s])
        try:
            got = as_number(fn(lm, frozen, tokens, *ing), "your edge")
        except InvalidAnswer as e:
            return CheckResult(name, False, str(e))
        except Exception as e:  # noqa: BLE001
            return raised(name, e)
        if _near(got, want, 1e-3):
            continue
        edge = f"{graph.node_name(s)} -> {graph.node_name(t)} ({what})"
        if ing[1] == -1 and abs(got) < 1e-6:
            return CheckResult(name, False, f"{edge}: the graph has {want:.4f}, you gave 0. An "
                                            f"embedding (write_layer = -1) enters before block 0: "
                                            f"add it with resid_edit at layer 0")
        for flag, hint in _EDGE_MISTAKES.items():
            if flag == "before_attention" and ing[1] == -1:
                continue
            v = _edge_variant(lm, frozen, tokens, *ing, **{flag: flag == "before_attention"})
            if _near(got, v, 1e-3) and not _near(v, want, 1e-3):
                return CheckResult(name, False, f"{edge}: the graph has {want:.4f}, you gave "
                                                f"{got:.4f}: {hint}")
        return CheckResult(name, False, f"{edge}: the graph has {want:.4f}, you gave {got:.4f}")
    return CheckResult(name, True, f"zero where there is no path, linear in the write, and equal "
                                   f"to graph.adjacency on {len(picked)} edges (embeddings and "
                                   f"features, same and later positions)")


# --------------------------------------------------------------------------------------------
# Exercise 4.2: influence on the logits
# --------------------------------------------------------------------------------------------

def _chain_graph() -> tuple[Tensor, Tensor, Tensor]:
    """Nodes e (embedding), a, b (features), L (logit): a <- e (3), b <- e (1), b <- a (1),
    L <- a (-2), L <- b (2). Normalised: L reads a and b half each, b reads e and a half each,
    a reads e fully; influence b 1/2, a 1/2 + 1/4 = 3/4, e 1/2 + 1/4 + 1/4 = 1, L 0."""
    A = torch.zeros(4, 4)
    A[1, 0], A[2, 0], A[2, 1], A[3, 1], A[3, 2] = 3.0, 1.0, 1.0, -2.0, 2.0
    w = torch.tensor([0.0, 0.0, 0.0, 1.0])
    return A, w, torch.tensor([1.0, 0.75, 0.5, 0.0])


def _influence_variants(A: Tensor, w: Tensor) -> dict[str, Tensor]:
    eye = torch.eye(A.shape[0])
    a = A.abs()
    N = a / a.sum(1, keepdim=True).clamp_min(1e-12)
    Ncol = a / a.sum(0, keepdim=True).clamp_min(1e-12)
    signed = A / A.sum(1, keepdim=True).where(A.sum(1, keepdim=True) != 0, torch.ones(1))
    series = lambda M: w @ (torch.linalg.inv(eye - M) - eye)  # noqa: E731
    return {"with_own_weight": w @ torch.linalg.inv(eye - N), "first_order": w @ N,
            "columns": series(Ncol), "transposed": w @ (torch.linalg.inv(eye - N.T) - eye),
            "signed": series(signed), "unnormalised": series(a)}


_INFLUENCE_MISTAKES = {
    "with_own_weight": "leave out the identity term: influence = w (N + N^2 + ...), so a logit "
                       "node's own weight is not its influence (the logit gets 0)",
    "first_order": "sum over paths of every length (N + N^2 + N^3 + ... = (I - N)^-1 - I): you "
                   "kept the direct edges only",
    "columns": "normalise each *row* (a target's incoming edges) to sum to 1, not each column",
    "transposed": "A[t, s] is the edge from source s to target t: propagate w through N as "
                  "w @ N, not w @ N.T",
    "signed": "take absolute values first: edges of opposite sign must not cancel",
    "unnormalised": "normalise each row of |A| to sum to 1 before summing the paths",
}


@exercise("4.2", reference=solutions.node_influence)
def check_node_influence(fn: Callable) -> CheckResult:
    """``fn(adjacency [n, n], logit_weights [n]) -> [n]``."""
    name = "node_influence"
    A, w, expected = _chain_graph()
    try:
        got = fn(A.clone(), w.clone())
    except Exception as e:  # noqa: BLE001
        return raised(name, e)
    try:
        got = as_tensor(got, "your influence [nodes]", torch.float32)
    except InvalidAnswer as e:
        return CheckResult(name, False, str(e))
    if tuple(got.shape) != (4,):
        return CheckResult(name, False, f"return one influence per node: shape (4,) for a 4-node "
                                        f"graph, got {tuple(got.shape)}")
    if not torch.allclose(got, expected, atol=1e-4):
        for mistake, hint in _INFLUENCE_MISTAKES.items():
            if torch.allclose(got, _influence_variants(A, w)[mistake], atol=1e-4):
                return CheckResult(name, False, f"on a 4-node chain (e -> a -> b -> logit, with "
                                                f"shortcuts) the influences are {expected.tolist()}, "
                                                f"you gave {[round(v, 3) for v in got.tolist()]}: {hint}")
        return CheckResult(name, False, f"on a 4-node chain the influences are {expected.tolist()}, "
                                        f"you gave {[round(v, 3) for v in got.tolist()]}")

    def make(g: torch.Generator):
        n = int(torch.randint(5, 12, (1,), generator=g))
        A_ = torch.randn(n, n, generator=g).tril(-1) * (torch.rand(n, n, generator=g) < 0.6)
        w_ = torch.zeros(n)
        w_[-2:] = torch.rand(2, generator=g) + 0.1
        return A_, w_ / w_.sum()

    res = compare_to_reference(name, fn, solutions.node_influence, make, atol=1e-4)
    if res.passed:
        res.message = "the chain's influences by hand and the reference on 3 random DAGs"
    return res


# --------------------------------------------------------------------------------------------
# Exercise 5.1: one intervention in the real model
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def _ablation_variants(lm: Any, rm: Any, graph: Any, node: int, target: int) -> dict[str, float]:
    layer, pos, feature = graph.features[node].tolist()
    column = rm.transcoders[layer].W_dec[:, feature]
    d = graph.activations[node] * column
    w = graph.logit_weights[target]
    toks = graph.tokens[None]

    def value(logits: Tensor, demean: bool = True) -> float:
        last = logits[0, -1]
        return float(w @ (last - last.mean())) if demean else float(w @ last)

    def run(delta: Tensor, where: slice | int, frozen: Any = None) -> Tensor:
        def mlps(l: int, m_in: Tensor, m_out: Tensor) -> Tensor:
            if l != layer:
                return m_out
            m_out = m_out.clone()
            m_out[:, where] += delta
            return m_out
        return lm.run(toks, mlp_override=mlps, frozen=frozen).logits

    base = lm.run(toks).logits
    out = {"sign": value(run(d, pos)) - value(base),
           "every_position": value(run(-d, slice(None))) - value(base),
           "frozen": value(run(-d, pos, graph.frozen)) - value(lm.run(toks, frozen=graph.frozen).logits),
           "not_demeaned": value(run(-d, pos), False) - value(base, False),
           "no_activation": value(run(-column, pos)) - value(base)}
    return out


_ABLATION_MISTAKES = {
    "sign": "switching the feature off *removes* its write: add -a W_dec[:, f] (you added it "
            "once more)",
    "every_position": "the feature is active at one position: change MLP l's output at that "
                      "position only",
    "frozen": "intervene in the real model: let attention and LayerNorm recompute (no frozen "
              "state); the frozen run is what the graph predicts",
    "not_demeaned": "a logit node reads the demeaned logits w . (l - mean(l)) at the last position",
    "no_activation": "the feature's write is its activation times its decoder column: scale "
                     "W_dec[:, f] by the activation a (you removed the bare column)",
}


def _without_write(rm: Any, layer: int, feature: int) -> Any:
    """A copy of ``rm`` whose transcoder of ``layer`` has feature ``feature``'s decoder column
    set to zero: that feature writes nothing, so switching it off changes nothing, however its
    activation is obtained (from the graph or from the model's own run)."""
    tc = copy.deepcopy(rm.transcoders[layer])
    with torch.no_grad():
        tc.W_dec[:, feature] = 0.0
    return ReplacementModel(rm.lm, {**rm.transcoders, layer: tc})


@exercise("5.1", reference=solutions.ablate_in_model)
def check_ablate_in_model(fn: Callable, rm: Any, graph: Any, nodes: list[int]) -> CheckResult:
    """``fn(lm, rm, graph, node, target) -> float``: first a feature whose decoder column is set
    to zero in a copy of ``rm`` (it writes nothing, so switching it off changes nothing, whether
    its activation is read from the graph or from the model's run), then ``nodes`` on the first
    logit node and the last one against the library's
    :func:`~tutorial_utils.features.interventions.model_deltas`."""
    name = "ablate_in_model"
    lm = rm.lm
    layer, _, feature = graph.features[int(nodes[0])].tolist()
    silent = _without_write(rm, layer, feature)
    try:
        v = as_number(fn(lm, silent, graph, int(nodes[0]), 0), "your change")
    except InvalidAnswer as e:
        return CheckResult(name, False, str(e))
    except Exception as e:  # noqa: BLE001
        return raised(name, e)
    if abs(v) > 1e-4:
        return CheckResult(name, False, f"with its decoder column W_dec[:, f] set to zero, "
                                        f"{graph.node_name(int(nodes[0]))} writes nothing, so "
                                        f"switching it off changes nothing; you gave {v:.4g}. "
                                        f"Remove exactly its write, activation x decoder column "
                                        f"rm.transcoders[layer].W_dec[:, f], at its position")
    targets = sorted({0, graph.n_logits - 1})
    ref = model_deltas(lm, graph, list(nodes), 0.0, rm)
    for k, node in enumerate(nodes):
        for target in targets:
            want = float(ref[k, target])
            try:
                got = as_number(fn(lm, rm, graph, int(node), target), "your change")
            except InvalidAnswer as e:
                return CheckResult(name, False, str(e))
            except Exception as e:  # noqa: BLE001
                return raised(name, e)
            if _near(got, want, 2e-3):
                continue
            what = f"{graph.node_name(int(node))} off, logit node {graph.logit_names[target]}"
            for mistake, hint in _ABLATION_MISTAKES.items():
                alt = _ablation_variants(lm, rm, graph, int(node), target)[mistake]
                if _near(got, alt, 2e-3) and not _near(alt, want, 2e-3):
                    return CheckResult(name, False, f"{what}: the real model moves by {want:+.4f}, "
                                                    f"you gave {got:+.4f}: {hint}")
            return CheckResult(name, False, f"{what}: the real model moves by {want:+.4f}, you gave "
                                            f"{got:+.4f}")
    return CheckResult(name, True, f"a feature with a zero decoder column changes nothing, and "
                                   f"{len(nodes)} features "
                                   f"switched off move the real model as model_deltas measures, on "
                                   f"{len(targets)} logit nodes")
