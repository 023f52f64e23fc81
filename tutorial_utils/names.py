"""Every TransformerLens hook name and every node name of the package, written once.

**Hook names.** A *site* is a kind of activation; :func:`hook_name` turns a site and a layer into
the bridge's hook name (``hook_name("z", 2) == "blocks.2.attn.hook_z"``). Layouts: ``"pos"`` for
``[B, T, d]`` activations, ``"pos_head"`` for ``[B, T, H, x]``, ``"head_dest"`` for attention
patterns ``[B, H, Tq, Tk]``, ``"scale"`` for a LayerNorm scale ``[B, T, 1]``. Sites without
``{layer}`` are global (one hook for the model). ``result``, ``q_input``/``k_input``/``v_input``
and ``mlp_in`` only fire on a model loaded with ``load_model(..., hooks=True)``.
(``context_mixing`` reads the Hugging Face modules directly, not hooks.)

**Node names** (Conmy et al. 2023; Hanna et al. 2024): senders ``embed``, heads ``a{l}.h{h}`` and
MLPs ``m{l}``; receivers ``a{l}.h{h}.q|k|v``, ``m{l}`` and ``logits``. :func:`nodes` gives every
node with the hooks it writes and reads; :class:`tutorial_utils.graph.Graph` indexes them.

**Components** (activation patching): a site at a layer, optionally a head and a position,
written ``"z.1.3@5"`` (site.layer.head@pos) or by a node name (``"a1.h2"``, ``"m3"``, ``"embed"``).

**Key/value grouping** (grouped-query attention: Llama, Qwen2, Mistral, Gemma): ``G`` key/value
heads are shared by ``H/G`` query heads each, query head ``h`` reading key/value head
``h // (H/G)`` (the ``repeat_kv`` order of Hugging Face): :func:`kv_head`, :func:`n_kv_heads`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import TutorialError

__all__ = ["HOOK_OPTIONS", "KV_SITES", "NODE_SITES", "Node", "QKV", "SITES", "STREAM_SITES", "attention_layer_name", "head_name", "head_rows", "hook_name", "mlp_name", "receiver_name", "kv_head",
           "n_kv_heads", "nodes", "parse_component", "parse_head", "site_heads"]

#: site -> (hook-name template, layout)
SITES: dict[str, tuple[str, str]] = {
    "embed": ("hook_embed", "pos"),                       # token embedding W_E[tokens]
    "embed_out": ("embed.hook_out", "pos"),               # the embedding module's output (BERT:
                                                          # after its embedding LayerNorm)
    "pos_embed": ("hook_pos_embed", "pos"),               # position embedding
    "resid_pre": ("blocks.{layer}.hook_resid_pre", "pos"),
    "resid_mid": ("blocks.{layer}.hook_resid_mid", "pos"),
    "resid_post": ("blocks.{layer}.hook_resid_post", "pos"),
    "block_out": ("blocks.{layer}.hook_out", "pos"),      # a block's output (BERT-family bridges
                                                          # have no hook_resid_post)
    "attn_out": ("blocks.{layer}.hook_attn_out", "pos"),
    "mlp_in": ("blocks.{layer}.hook_mlp_in", "pos"),
    "mlp_out": ("blocks.{layer}.hook_mlp_out", "pos"),
    "ln2_normalized": ("blocks.{layer}.ln2.hook_normalized", "pos"),
    "mlp_pre": ("blocks.{layer}.mlp.hook_pre", "pos"),
    "mlp_post": ("blocks.{layer}.mlp.hook_post", "pos"),
    "q_input": ("blocks.{layer}.hook_q_input", "pos_head"),
    "k_input": ("blocks.{layer}.hook_k_input", "pos_head"),
    "v_input": ("blocks.{layer}.hook_v_input", "pos_head"),
    "z": ("blocks.{layer}.attn.hook_z", "pos_head"),
    "q": ("blocks.{layer}.attn.hook_q", "pos_head"),
    "k": ("blocks.{layer}.attn.hook_k", "pos_head"),
    "v": ("blocks.{layer}.attn.hook_v", "pos_head"),
    "result": ("blocks.{layer}.attn.hook_result", "pos_head"),
    "pattern": ("blocks.{layer}.attn.hook_pattern", "head_dest"),
    "attn_scores": ("blocks.{layer}.attn.hook_attn_scores", "head_dest"),
    "attn_scale": ("blocks.{layer}.ln1.hook_scale", "scale"),
    "mlp_scale": ("blocks.{layer}.ln2.hook_scale", "scale"),
    "ln_final_scale": ("ln_final.hook_scale", "scale"),
}

#: the bridge's hook options (``load_model(hooks=...)``): option -> (the config flag, the bridge's
#: setter, the hook-name endings that fire only when the option is on)
HOOK_OPTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "attn_result": ("use_attn_result", "set_use_attn_result", ("attn.hook_result",)),
    "split_qkv_input": ("use_split_qkv_input", "set_use_split_qkv_input",
                        ("hook_q_input", "hook_k_input", "hook_v_input")),
    "hook_mlp_in": ("use_hook_mlp_in", "set_use_hook_mlp_in", ("hook_mlp_in",)),
}

#: graph node kind -> the site of its output (what a sender writes)
NODE_SITES = {"embed": "resid_pre", "head": "result", "mlp": "mlp_out"}
#: sites computed once per key/value head under grouped-query attention
KV_SITES = ("k", "v", "k_input", "v_input")
QKV = ("q", "k", "v")
#: sites whose activation *is* the residual stream (a patch there must reach every reader of it)
STREAM_SITES = ("resid_pre", "resid_mid", "resid_post")

_HEAD_RE = re.compile(r"a(\d+)\.h(\d+)")
_MLP_RE = re.compile(r"m(\d+)")


def _is_index(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def hook_name(site: str, layer: int | None = None) -> str:
    """The hook name of ``site`` at ``layer`` (a block index >= 0, for per-block sites only)."""
    if site not in SITES:
        raise TutorialError(f"unknown site {site!r}; valid sites: {sorted(SITES)}")
    template = SITES[site][0]
    if "{layer}" in template:
        if layer is None:
            raise TutorialError(f"site {site!r} is per block: pass a layer")
        if not _is_index(layer) or layer < 0:
            raise TutorialError(f"layer must be a block index >= 0 for site {site!r}, got "
                                f"{layer!r} (negative indices are not hook names: use "
                                "model.cfg.n_layers - 1 for the last block)")
        return template.format(layer=layer)
    if layer is not None:
        raise TutorialError(f"site {site!r} is one hook for the whole model: pass no layer")
    return template


def head_name(layer: int, head: int) -> str:
    """The node name of a head, ``"aL.hH"`` (the one head notation of the course)."""
    if not (_is_index(layer) and _is_index(head)) or layer < 0 or head < 0:
        raise TutorialError(f"a head is (layer, head), two integers >= 0; got ({layer!r}, "
                            f"{head!r})")
    return f"a{layer}.h{head}"


def head_rows(labels: list[str] | tuple[str, ...]) -> list[tuple[int, int, int]]:
    """``(row, layer, head)`` for every label in ``labels`` that is a head name ``aL.hH`` (the
    rows of a per-component result that belong to heads, e.g. to arrange them as ``[L, H]``)."""
    out = []
    for i, label in enumerate(labels):
        m = _HEAD_RE.fullmatch(label) if isinstance(label, str) else None
        if m is not None:
            out.append((i, int(m.group(1)), int(m.group(2))))
    return out


def mlp_name(layer: int) -> str:
    """The node name of a layer's MLP, ``"mL"``."""
    if not _is_index(layer) or layer < 0:
        raise TutorialError(f"an MLP is a layer index >= 0, got {layer!r}")
    return f"m{layer}"


def attention_layer_name(layer: int) -> str:
    """The name of a whole attention layer (every head together), ``"aL"``."""
    if not _is_index(layer) or layer < 0:
        raise TutorialError(f"an attention layer is a layer index >= 0, got {layer!r}")
    return f"a{layer}"


def receiver_name(layer: int, head: int, which: str) -> str:
    """The name of a head's query, key or value input as a graph receiver, ``"aL.hH.q"``."""
    if which not in QKV:
        raise TutorialError(f"a head's input is one of {QKV}, got {which!r}")
    return f"{head_name(layer, head)}.{which}"


def parse_head(name: str | tuple[int, int]) -> tuple[int, int]:
    """``"a3.h1"`` -> ``(3, 1)`` (any number of digits); a ``(layer, head)`` pair is returned
    as it is."""
    if isinstance(name, tuple) and len(name) == 2 and all(_is_index(x) for x in name):
        return int(name[0]), int(name[1])
    m = _HEAD_RE.fullmatch(name.strip()) if isinstance(name, str) else None
    if m is None:
        raise TutorialError(f"not a head name: {name!r} (expected 'aL.hH', e.g. 'a3.h1')")
    return int(m.group(1)), int(m.group(2))


def n_kv_heads(cfg: Any) -> int:
    """The number of key/value heads of a TransformerLens config (``n_heads`` without GQA)."""
    kv = getattr(cfg, "n_key_value_heads", None)
    return int(kv) if kv else int(cfg.n_heads)


def kv_head(head: int, n_heads: int, n_kv: int) -> int:
    """The key/value head that query head ``head`` reads: ``head // (n_heads / n_kv)``."""
    if n_kv < 1 or n_heads % n_kv:
        raise TutorialError(f"n_heads ({n_heads}) must be a multiple of the number of key/value "
                            f"heads ({n_kv})")
    return head // (n_heads // n_kv)


def site_heads(cfg: Any, site: str) -> int:
    """How many heads the activation of ``site`` has: the key/value heads for the key and value
    sites under grouped-query attention, else ``n_heads``."""
    return n_kv_heads(cfg) if site in KV_SITES else int(cfg.n_heads)


@dataclass(frozen=True)
class Node:
    """One node of the computational graph and its hooks.

    Attributes:
        name: ``embed``, ``a{l}.h{h}``, ``m{l}`` or ``logits``.
        kind: ``"embed"``, ``"head"``, ``"mlp"`` or ``"logits"``.
        layer, head: ``None`` where they do not apply.
        out_hook: the hook whose activation is what the node writes (``None`` for ``logits``);
            for a head, the per-head ``hook_result`` ``[B, T, H, D]`` at index ``head``.
        in_hooks: ``{input: hook}`` of what the node reads: ``{"q", "k", "v"}`` for a head
            (``hook_{q,k,v}_input`` ``[B, T, H or G, D]``), ``{"mlp"}`` for an MLP,
            ``{"logits"}`` (the last block's ``hook_resid_post``); empty for ``embed``.
    """

    name: str
    kind: str
    layer: int | None = None
    head: int | None = None
    out_hook: str | None = None
    in_hooks: dict[str, str] = field(default_factory=dict)


def nodes(n_layers: int, n_heads: int) -> list[Node]:
    """Every node in forward order (``embed``, then per layer its heads and its MLP, then
    ``logits``), with the hooks it writes and reads."""
    out = [Node("embed", "embed", out_hook=hook_name(NODE_SITES["embed"], 0))]
    for l in range(n_layers):
        for h in range(n_heads):
            out.append(Node(head_name(l, h), "head", l, h, hook_name(NODE_SITES["head"], l),
                            {c: hook_name(f"{c}_input", l) for c in QKV}))
        out.append(Node(f"m{l}", "mlp", l, None, hook_name(NODE_SITES["mlp"], l),
                        {"mlp": hook_name("mlp_in", l)}))
    out.append(Node("logits", "logits",
                    in_hooks={"logits": hook_name("resid_post", n_layers - 1)}))
    return out


def parse_component(spec: str) -> tuple[str, int, int | None, int | None]:
    """``(site, layer, head, pos)`` of a component written ``"aL.hH"`` (a head's output),
    ``"mL"`` (an MLP's output), ``"embed"`` (the residual stream entering block 0) or
    ``"site.layer[.head]"``, each optionally followed by ``"@pos"``."""
    if not isinstance(spec, str):
        raise TutorialError(f"a component is a string such as 'a1.h2', 'm3', 'embed' or "
                            f"'z.1.3@5', got {type(spec).__name__}")
    s, pos = spec.strip(), None
    if "@" in s:
        s, p = s.split("@", 1)
        if not p.strip().isdigit():
            raise TutorialError(f"component {spec!r}: the position after '@' must be an integer "
                                ">= 0")
        pos = int(p)
    if m := _HEAD_RE.fullmatch(s):
        return NODE_SITES["head"], int(m[1]), int(m[2]), pos
    if m := _MLP_RE.fullmatch(s):
        return NODE_SITES["mlp"], int(m[1]), None, pos
    if s == "embed":
        return NODE_SITES["embed"], 0, None, pos
    parts = s.split(".")
    if parts[0] in SITES and 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts[1:]):
        return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None, pos
    raise TutorialError(
        f"cannot parse component {spec!r}: use 'aL.hH' (head), 'mL' (MLP), 'embed', or "
        f"'site.layer[.head][@pos]' with site in {sorted(SITES)}")
