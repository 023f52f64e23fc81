"""Exercise checks for notebook 03 (low-level circuit finding).

Each check first runs the student's function on a case whose answer is known by construction
(patching a run into itself changes nothing, the full circuit scores 1 and the empty one 0, an
identity-like read-out gives a known score, ...) and, when it is wrong, names the likely
conceptual mistake; then it compares with a reference on random inputs or with the library on
the notebook's model. Each check is an :class:`~tutorial_utils.course.answers.ExerciseCheck`:
``ablate_head = nb03.check_ablate_head(ablate_head)`` prints the verdict and returns what later
cells use; ``check_ablate_head.judge(...)`` returns the
:class:`~tutorial_utils.course.grading.CheckResult` only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import Tensor

from ..answers import exercise
from ..grading import (CheckResult, InvalidAnswer, as_number, as_tensor, check_value,
                       compare_to_reference)
from ..grading import describe as _describe
from ..solutions import nb03 as solutions
from ...patching import get_activations, patching_sweep
from ...graph import Graph
from ...names import receiver_name
from ...path_patching import edge_patching
from ...faithfulness import all_nodes, circuit_faithfulness

__all__ = ["SVA_MAX_NODES", "check_ablate_head", "check_head_sweep", "check_node_faithfulness",
           "check_patch_edge", "check_sva_faithfulness", "check_upweight_score",
           "reference_ablate_head", "reference_upweight_score"]


def _self_patched(dataset: Any) -> Any:
    """The dataset with its corrupted prompts replaced by the clean ones: every patch from the
    'corrupted' run is then a patch of the clean run into itself and must change nothing."""
    return dataclasses.replace(dataset, corrupted_tokens=dataset.clean_tokens,
                               corrupted_prompts=list(dataset.clean_prompts))


def _metric(model: Any, dataset: Any, tokens: Tensor, fwd_hooks: list | None = None) -> float:
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=fwd_hooks or [])
    return float(dataset.metric(logits))


# --------------------------------------------------------------------------------------------
# Exercise 1.1: ablate one head three ways
# --------------------------------------------------------------------------------------------

#: The references of Exercises 1.1 and 6.1 (kept under their former names).
reference_ablate_head = solutions.ablate_head
reference_upweight_score = solutions.upweight_score


@exercise("1.1", reference=solutions.ablate_head)
def check_ablate_head(fn: Callable) -> CheckResult:
    """``fn(z, head, method, reference_z)`` for method in zero / mean / corrupted."""
    name = "ablate_head"
    B, T, H, d = 3, 4, 2, 5
    z = torch.ones(B, T, H, d)
    ref = torch.arange(B, dtype=torch.float32)[:, None, None, None].expand(B, T, H, d) * 2.0 + 10
    ref = ref + torch.arange(T, dtype=torch.float32)[None, :, None, None]  # differs by position
    expected = {m: reference_ablate_head(z, 1, m, ref) for m in ("zero", "mean", "corrupted")}
    got = {}
    for m in expected:
        zin, rin = z.clone(), ref.clone()
        got[m] = fn(zin, 1, m, rin)
        if not torch.equal(zin, z):
            return CheckResult(name, False, f"method {m!r} modified the input in place: clone "
                                            f"it first (the hook's tensor feeds the rest of "
                                            f"the forward)")
    for m, exp in expected.items():
        out = as_tensor(got[m], f"your z for method {m!r}", torch.float32)
        if out.shape != z.shape:
            return CheckResult(name, False, f"method {m!r}: return a tensor shaped like z "
                                            f"{tuple(z.shape)}")
        if not torch.equal(out[:, :, 0], z[:, :, 0]):
            return CheckResult(name, False, f"method {m!r} changed head 0: only head `head` "
                                            f"(the third axis) may change")
        if torch.allclose(out, exp):
            continue
        if m == "mean" and torch.allclose(out[:, :, 1], ref[:, :, 1].mean((0, 1))[None, None]
                                          .expand(B, T, d)):
            return CheckResult(name, False, "mean ablation averages over the batch only, per "
                                            "position: you also averaged over positions")
        if m == "mean" and torch.allclose(out, expected["corrupted"]):
            return CheckResult(name, False, "for mean ablation you copied each prompt's reference "
                                            "value (that is the paired 'corrupted' ablation): "
                                            "average over the batch")
        if m == "corrupted" and torch.allclose(out, expected["mean"]):
            return CheckResult(name, False, "corrupted ablation gives each prompt its *own* "
                                            "(paired) reference value, not the batch mean")
        return CheckResult(name, False, f"method {m!r}: head 1 should be "
                                        f"{exp[:, 0, 1, 0].tolist()} at position 0 (one value "
                                        f"per prompt), got {out[:, 0, 1, 0].tolist()}")

    def make(g: torch.Generator):
        Hr = int(torch.randint(2, 5, (1,), generator=g))
        zr = torch.randn(3, 5, Hr, 8, generator=g)
        m = ("zero", "mean", "corrupted")[int(torch.randint(0, 3, (1,), generator=g))]
        return (zr, int(torch.randint(0, Hr, (1,), generator=g)), m,
                torch.randn(3, 5, Hr, 8, generator=g))

    return compare_to_reference(name, fn, reference_ablate_head, make, n_trials=6)


# --------------------------------------------------------------------------------------------
# Exercise 2.1: a patching sweep by hand
# --------------------------------------------------------------------------------------------

@exercise("2.1", reference=solutions.patch_heads_of_layer)
def check_head_sweep(fn: Callable, model: Any, dataset: Any, layer: int) -> CheckResult:
    """``fn(model, dataset, layer) -> [n_heads]``: the metric with each head of ``layer`` patched
    (all positions) from the corrupted run into the clean run."""
    name = "patch_heads_of_layer"
    same = fn(model, _self_patched(dataset), layer)
    got = fn(model, dataset, layer)
    same = as_tensor(same, "your metrics [head]", torch.float32)
    got = as_tensor(got, "your metrics [head]", torch.float32)
    H = model.cfg.n_heads
    if got.shape != (H,) or same.shape != (H,):
        return CheckResult(name, False, f"return one metric per head: shape ({H},), got "
                                        f"{tuple(got.shape)}")
    m_clean = _metric(model, dataset, dataset.clean_tokens)
    if not torch.allclose(same, torch.full_like(same, m_clean), atol=1e-4):
        return CheckResult(name, False, f"patching the clean run into itself must leave the clean "
                                        f"metric {m_clean:.3f} for every head, got "
                                        f"{[round(x, 3) for x in same.tolist()]}: do you run the "
                                        f"clean prompts with the patch applied?")
    ref = patching_sweep(model, dataset, "z", ("layer", "head"), progress=False).values[layer]
    if not torch.allclose(got, ref, atol=1e-4):
        den = patching_sweep(model, dataset, "z", ("layer", "head"), direction="denoise",
                             progress=False).values[layer]
        if torch.allclose(got, den, atol=1e-4):
            return CheckResult(name, False, "you patched clean activations into the corrupted run "
                                            "(denoising); this sweep runs the *clean* prompts with "
                                            "one head's corrupted output")
    return check_value(name, got, ref, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Exercise 3.1: one path-patching step into a chosen input
# --------------------------------------------------------------------------------------------

def _edge_by_hand(model: Any, dataset: Any, sender: str, receiver: str, sign: float = 1.0,
                  all_heads: bool = False) -> float:
    """The metric with edge sender -> receiver patched (and two wrong variants)."""
    g = Graph.from_model(model)
    s = g.node(sender)
    head_name, which = receiver.rsplit(".", 1)
    r = g.node(head_name)
    outs = []
    for tokens in (dataset.corrupted_tokens, dataset.clean_tokens):
        _, acts = get_activations(model, tokens, [s.out_hook])
        a = acts[s.out_hook]
        outs.append(a if s.head is None else a[:, :, s.head])
    delta = sign * (outs[0] - outs[1])

    def hook(x: Tensor, hook: Any) -> Tensor:
        x = x.clone()
        if all_heads:
            x += delta[:, :, None]
        else:
            x[:, :, r.head] += delta
        return x

    return _metric(model, dataset, dataset.clean_tokens, [(r.in_hooks[which], hook)])


@exercise("3.1", reference=solutions.patch_edge)
def check_patch_edge(fn: Callable, model: Any, dataset: Any, edges: list[tuple[str, str]]
                     ) -> CheckResult:
    """``fn(model, dataset, sender, receiver) -> float``: the metric of the clean run with the
    single edge ``sender -> receiver`` (``"aL.hH.q"``/``.k``/``.v``) carrying the corrupted
    value, compared with :func:`tutorial_utils.path_patching.edge_patching` on ``edges``."""
    name = "patch_edge"
    same = fn(model, _self_patched(dataset), *edges[0])
    got = [fn(model, dataset, s, r) for s, r in edges]
    same = as_number(same, "your metric")
    got = [as_number(g_, "your metric") for g_ in got]
    m_clean = _metric(model, dataset, dataset.clean_tokens)
    if abs(same - m_clean) > 1e-4:
        return CheckResult(name, False, f"patching an edge of the clean run into itself must give "
                                        f"the clean metric {m_clean:.4f}, got {same:.4f}: the "
                                        f"receiver's input changes by out_S(corrupted) - "
                                        f"out_S(clean), which is 0 here")
    ref = edge_patching(model, dataset, [[e] for e in edges]).tolist()
    for (s, r), g_, ref_ in zip(edges, got, ref):
        if abs(g_ - ref_) <= 1e-3:
            continue
        if abs(g_ - _edge_by_hand(model, dataset, s, r, sign=-1.0)) <= 1e-3:
            return CheckResult(name, False, f"{s} -> {r}: sign error, add out_S(corrupted) - "
                                            f"out_S(clean) to the receiver's input (you added "
                                            f"clean - corrupted)")
        if abs(g_ - _edge_by_hand(model, dataset, s, r, all_heads=True)) <= 1e-3:
            return CheckResult(name, False, f"{s} -> {r}: you changed the input of every head of "
                                            f"the layer; index the head axis (third) so that "
                                            f"only the receiving head reads the patched stream")
        return CheckResult(name, False, f"{s} -> {r}: metric {g_:.4f}, expected {ref_:.4f}. Is "
                                        f"the hook on the right input (q, k or v) of the right "
                                        f"layer, and is the sender's output the one it writes "
                                        f"into the residual stream?")
    # Only the receiving head may read the patched stream. On a sibling head of the edge with the
    # largest effect (same layer, same input) adding the change to every head shows clearly:
    # it then also patches the original receiver.

    (s0, r0), _ = max(zip(edges, ref), key=lambda e: abs(e[1] - m_clean))
    head_name, which = r0.rsplit(".", 1)
    node = Graph.from_model(model).node(head_name)
    n_heads = model.cfg.n_heads
    kv_shared = getattr(model.cfg, "n_key_value_heads", None) not in (None, n_heads)
    if node.head is not None and n_heads > 1 and not (kv_shared and which in ("k", "v")):
        sibling = receiver_name(node.layer, (node.head + 1) % n_heads, which)
        got_sib = fn(model, dataset, s0, sibling)
        got_sib = as_number(got_sib, "your metric")
        ref_sib = float(edge_patching(model, dataset, [[(s0, sibling)]])[0])
        if abs(got_sib - ref_sib) > 1e-3:
            if abs(got_sib - _edge_by_hand(model, dataset, s0, sibling, all_heads=True)) <= 1e-3:
                return CheckResult(name, False, f"{s0} -> {sibling}: metric {got_sib:.4f}, expected "
                                                f"{ref_sib:.4f}. You changed the input of every head "
                                                f"of the layer (so {r0} was patched too); index the "
                                                f"head axis (third) so that only the receiving head "
                                                f"reads the patched stream")
            return CheckResult(name, False, f"{s0} -> {sibling}: metric {got_sib:.4f}, expected "
                                            f"{ref_sib:.4f}")
        edges = [*edges, (s0, sibling)]
    return CheckResult(name, True, f"matches edge_patching on {len(edges)} edges (one into a "
                                   f"sibling head of the same layer), and patching the clean run "
                                   f"into itself changes nothing")


# --------------------------------------------------------------------------------------------
# Exercise 4.1: the faithfulness of a node circuit
# --------------------------------------------------------------------------------------------

@exercise("4.1", reference=solutions.node_circuit_faithfulness)
def check_node_faithfulness(fn: Callable, model: Any, dataset: Any, circuit: list[str]
                            ) -> CheckResult:
    """``fn(model, dataset, nodes) -> float``: patch every node outside ``nodes`` with its
    corrupted-run value (paired corrupted ablation, the library's default) and
    normalise, compared with :func:`tutorial_utils.faithfulness.circuit_faithfulness`."""
    name = "node_circuit_faithfulness"
    every = all_nodes(model)
    f_full = fn(model, dataset, list(every))
    f_empty = fn(model, dataset, [])
    got = fn(model, dataset, list(circuit))
    f_full, f_empty, got = (as_number(v, "your faithfulness") for v in (f_full, f_empty, got))
    if abs(f_full - 1) > 1e-3:
        return CheckResult(name, False, f"the circuit of every node is the model itself and must "
                                        f"score 1, got {f_full:.3f}: are you patching nodes "
                                        f"*inside* the circuit, or normalising in the wrong order?")
    if abs(f_empty) > 1e-3:
        hint = (" With no node kept, the embeddings are patched too, so the run is exactly the "
                "corrupted one: did you leave out 'embed'?" if abs(f_empty) < 0.99 else
                " You seem to patch the nodes *in* the circuit instead of the ones outside it.")
        return CheckResult(name, False, f"the empty circuit must score 0, got {f_empty:.3f}.{hint}")
    measured = circuit_faithfulness(model, dataset, circuit)
    ref = measured.faithfulness
    if abs(got - ref) > 1e-3:
        complement = [n for n in every if n not in set(circuit)]
        comp = circuit_faithfulness(model, dataset, complement).faithfulness
        if abs(got - comp) <= 1e-3:
            return CheckResult(name, False, f"{got:.3f} is the faithfulness of the *complement*: "
                                            f"patch the nodes outside the circuit, keep the ones in it")
        if abs(got - (1 - ref)) <= 1e-3:
            return CheckResult(name, False, f"{got:.3f} = 1 - {ref:.3f}: you measured the share of "
                                            f"the gap the circuit loses; F = (M(circuit) - "
                                            f"M(corrupted)) / (M(clean) - M(corrupted))")
        return CheckResult(name, False, f"faithfulness {got:.3f}, the library measures {ref:.3f} "
                                        f"for {sorted(circuit)} ({measured.ablation} ablation)")
    return CheckResult(name, True, f"full circuit 1, empty circuit 0, and {ref:.3f} for "
                                   f"{sorted(circuit)} as the library measures")


# --------------------------------------------------------------------------------------------
# Exercise 6.1: the "upweight y > YY" score of one component
# --------------------------------------------------------------------------------------------

@exercise("6.1", reference=solutions.upweight_score)
def check_upweight_score(fn: Callable) -> CheckResult:
    """``fn(c [B, d], scale [B, 1], W_U [d, Y], yy [B]) -> [B]``."""
    name = "upweight_score"
    d, Y = 4, 10
    yy = torch.tensor([3, 6])
    # centred c = (3, -1, -1, -1); W_U's first row reads +1/3 above YY and -1/3 at or below it
    # (for example 0's YY = 3), so the direct logits are +1 / -1 and the score is exactly 2
    W_U = torch.zeros(d, Y)
    W_U[0] = torch.where(torch.arange(Y) > 3, 1 / 3, -1 / 3)
    c = torch.tensor([[4.0, 0.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    scale = torch.tensor([[1.0], [2.0]])
    got = fn(c, scale, W_U, yy)
    got = as_tensor(got, "your scores [batch]", torch.float32)
    if got.shape != (2,):
        return CheckResult(name, False, f"return one score per example: shape [batch] = (2,), got "
                                        f"{tuple(got.shape)}")
    if abs(float(got[0]) - 2.0) > 1e-5:
        v = float(got[0])
        if abs(v - 8 / 3) < 1e-4:
            hint = "subtract the mean of c over d_model first (the final LayerNorm centres it)"
        elif abs(v - 1.0) < 1e-4 or abs(v + 1.0) < 1e-4:
            hint = "the score is mean(above) - mean(at or below), both sides weighted"
        else:
            hint = "logits = ((c - mean) / scale) @ W_U, then mean over years > YY minus the rest"
        return CheckResult(name, False, f"this component writes +1 on every year above YY and -1 "
                                        f"on the others, so its score is 2; got {v:.4f}: {hint}")

    def make(g: torch.Generator):
        B = int(torch.randint(2, 6, (1,), generator=g))
        return (torch.randn(B, 8, generator=g), torch.rand(B, 1, generator=g) + 0.5,
                torch.randn(8, 20, generator=g), torch.randint(1, 18, (B,), generator=g))

    return compare_to_reference(name, fn, reference_upweight_score, make)


# --------------------------------------------------------------------------------------------
# Exercise 8.1: your own SVA circuit, with a target
# --------------------------------------------------------------------------------------------

def _reference_sva(model: Any, dataset: Any) -> tuple[list[str], float]:
    return solutions.sva_circuit(model, dataset)


#: Exercise 8.1's size limit: the whole offline model has 21 nodes (embed, 16 heads, 4 MLPs),
#: the reference circuit 6 (faithfulness 0.97 on the notebook's 24 prompts).
SVA_MAX_NODES = 8


@exercise("8.1", reference_from=_reference_sva, answers=("circuit", "faithfulness"))
def check_sva_faithfulness(model: Any, dataset: Any, circuit: Any, faithfulness: Any,
                           target: float = 0.8, max_nodes: int = SVA_MAX_NODES) -> CheckResult:
    """The student's circuit must be a list of at most ``max_nodes`` node names whose
    faithfulness (corrupted ablation, as the library measures it by default) is the one they report **and**
    reaches ``target``: "as few nodes as you can" is enforced, so the whole model (which
    trivially scores 1) fails."""
    name = "sva_faithfulness"
    if isinstance(circuit, str) or not isinstance(circuit, (list, tuple, set, frozenset)):
        raise InvalidAnswer(f"your circuit is {_describe(circuit)}: give a list of node names, "
                            f"e.g. ['embed', 'a0.h1', 'm0']")
    circuit = list(circuit)
    reported = as_number(faithfulness, "your faithfulness")
    if not circuit:
        return CheckResult(name, False, "the circuit is empty: list some nodes")
    every = set(all_nodes(model))
    unknown = [n for n in circuit if not isinstance(n, str) or n not in every]
    if unknown:
        return CheckResult(name, False, f"{unknown[:3]} are not node names of this model: use "
                                        f"'embed', 'aL.hH' or 'mL' (all_nodes(model) lists them)")
    circuit = sorted(set(circuit))
    if len(circuit) > max_nodes:
        whole = " (that is the whole model)" if len(circuit) == len(every) else ""
        return CheckResult(name, False, f"your circuit has {len(circuit)} nodes{whole}; the "
                                        f"exercise asks for at most {max_nodes}: keep the nodes "
                                        f"that matter (path patching into the logits ranks them)")
    ref = circuit_faithfulness(model, dataset, circuit)
    res = check_value(name, reported, ref.faithfulness, atol=1e-3)
    if not res.passed:
        res.message = (f"you report {reported:.3f} but the library measures "
                       f"{ref.faithfulness:.3f} for {circuit}: compute it with "
                       f"circuit_faithfulness on the SVA dataset")
        return res
    if not ref.faithfulness >= target:
        return CheckResult(name, False, f"your {len(circuit)}-node circuit reaches "
                                        f"{ref.faithfulness:.3f}, {target - ref.faithfulness:.3f} "
                                        f"short of the {target} target: look for the nodes it "
                                        f"misses (a lower path-patching threshold, or the inputs "
                                        f"of the nodes you have)")
    return CheckResult(name, True, f"faithfulness {ref.faithfulness:.3f} >= {target} with "
                                   f"{len(circuit)} nodes <= {max_nodes} (as the library "
                                   f"measures it)")
