"""Every TransformerLens hook name the package reads, written once.

A *site* is a kind of activation; :func:`hook_name` turns a site and a layer into the bridge's
hook name (``hook_name("z", 2) == "blocks.2.attn.hook_z"``). The graph's nodes
(:mod:`tutorial_utils.graph`), activation patching's sites (:mod:`tutorial_utils.patching`), the
logit lens, DLA, probing, induction scores and input attribution all build their hook names
here. (``context_mixing`` reads the Hugging Face modules directly, not hooks.)

Layouts: ``"pos"`` for ``[B, T, d]`` activations, ``"pos_head"`` for ``[B, T, H, x]``,
``"head_dest"`` for attention patterns ``[B, H, Tq, Tk]``, ``"scale"`` for a LayerNorm scale
``[B, T, 1]``. Sites without ``{layer}`` are global (one hook for the model).

``result``, ``q_input``/``k_input``/``v_input`` and ``mlp_in`` only fire on a model loaded with
``load_model(..., hooks=True)``.
"""

from __future__ import annotations

__all__ = ["SITES", "hook_name"]

#: site -> (hook-name template, layout)
SITES: dict[str, tuple[str, str]] = {
    "embed": ("hook_embed", "pos"),                       # token embedding W_E[tokens]
    "pos_embed": ("hook_pos_embed", "pos"),               # position embedding
    "resid_pre": ("blocks.{layer}.hook_resid_pre", "pos"),
    "resid_mid": ("blocks.{layer}.hook_resid_mid", "pos"),
    "resid_post": ("blocks.{layer}.hook_resid_post", "pos"),
    "attn_out": ("blocks.{layer}.hook_attn_out", "pos"),
    "mlp_in": ("blocks.{layer}.hook_mlp_in", "pos"),
    "mlp_out": ("blocks.{layer}.hook_mlp_out", "pos"),
    "q_input": ("blocks.{layer}.hook_q_input", "pos_head"),
    "k_input": ("blocks.{layer}.hook_k_input", "pos_head"),
    "v_input": ("blocks.{layer}.hook_v_input", "pos_head"),
    "z": ("blocks.{layer}.attn.hook_z", "pos_head"),
    "q": ("blocks.{layer}.attn.hook_q", "pos_head"),
    "k": ("blocks.{layer}.attn.hook_k", "pos_head"),
    "v": ("blocks.{layer}.attn.hook_v", "pos_head"),
    "result": ("blocks.{layer}.attn.hook_result", "pos_head"),
    "pattern": ("blocks.{layer}.attn.hook_pattern", "head_dest"),
    "ln_final_scale": ("ln_final.hook_scale", "scale"),
}


def hook_name(site: str, layer: int | None = None) -> str:
    """The hook name of ``site`` at ``layer`` (``layer`` only for per-block sites)."""
    from .errors import TutorialError

    if site not in SITES:
        raise TutorialError(f"unknown site {site!r}; valid sites: {sorted(SITES)}")
    template = SITES[site][0]
    if "{layer}" in template:
        if layer is None:
            raise TutorialError(f"site {site!r} is per block: pass a layer")
        return template.format(layer=layer)
    if layer is not None:
        raise TutorialError(f"site {site!r} is one hook for the whole model: pass no layer")
    return template
