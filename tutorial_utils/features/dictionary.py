"""Sparse dictionaries: sparse autoencoders and transcoders, one class.

A dictionary of ``n_features`` reads an activation ``x`` (``d_in``) at one site and writes a
prediction of an activation ``y`` (``d_out``) at a site of the same layer:

    f     = act(W_enc (x - b_pre) + b_enc)          feature activations, n_features
    y_hat = W_dec f + b_dec                          the reconstruction

* **Sparse autoencoder** (Bricken et al. 2023, "Towards Monosemanticity"): ``y = x`` (the same
  site), ``b_pre = b_dec`` (the decoder bias is subtracted before encoding).
* **Transcoder** (Dunefsky, Chlenski & Nanda 2024, "Transcoders find interpretable LLM feature
  circuits"): ``x`` is an MLP's input (the ``ln_2`` output), ``y`` its output; ``b_pre = 0``.

Activation functions:

* ``"relu"``: ``ReLU``, trained with an L1 penalty (Bricken et al. 2023);
* ``"topk"``: keep the ``k`` largest pre-activations, ReLU them, zero the rest (Gao et al. 2024,
  "Scaling and evaluating sparse autoencoders");

(JumpReLU, Rajamanoharan et al. 2024, a learned threshold per feature, is not implemented.)

The decoder's columns ``W_dec[:, i]`` (the features' directions) have unit norm: training
projects them back onto the sphere after each step (:meth:`SparseDictionary.normalize_decoder`),
so an activation ``f_i`` is the length the feature writes and an L1 penalty cannot be dodged by
shrinking ``f`` and growing ``W_dec``.

Shapes: ``W_enc [n_features, d_in]``, ``b_enc [n_features]``, ``W_dec [d_out, n_features]``,
``b_dec [d_out]``, ``b_pre [d_in]``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import TutorialError
from ..paths import DATA_DIR

__all__ = ["ACTIVATIONS", "DICTIONARIES_DIR", "DictionaryConfig", "SparseDictionary",
           "load_dictionary", "shipped_dictionary"]

ACTIVATIONS = ("relu", "topk")
KINDS = ("sae", "transcoder")

#: The dictionaries shipped with the course (``data/dictionaries``, trained by
#: ``python -m tutorial_utils.course.dictionaries``; each ``NAME.md`` is its card).
DICTIONARIES_DIR = DATA_DIR / "dictionaries"


@dataclass
class DictionaryConfig:
    """What a dictionary is: where it reads and writes, its width and activation function.

    ``site_in``/``site_out`` name sites of :class:`~tutorial_utils.features.unfolded.UnfoldedGPT2`
    (``"resid_pre"``, ``"ln2_out"``, ``"mlp_out"``, ...) at ``layer``."""

    kind: str
    d_in: int
    d_out: int
    n_features: int
    activation: str = "relu"
    k: int | None = None
    layer: int = 0
    site_in: str = "resid_pre"
    site_out: str = "resid_pre"
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> "DictionaryConfig":
        if self.kind not in KINDS:
            raise TutorialError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise TutorialError(f"activation must be one of {ACTIVATIONS}, got "
                                f"{self.activation!r}")
        for name in ("d_in", "d_out", "n_features"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TutorialError(f"{name} must be an integer >= 1, got {v!r}")
        if self.activation == "topk":
            if isinstance(self.k, bool) or not isinstance(self.k, int) or \
                    not 1 <= self.k <= self.n_features:
                raise TutorialError(f"activation='topk' needs k, an integer in [1, "
                                    f"n_features={self.n_features}], got {self.k!r}")
        if self.kind == "sae" and self.d_in != self.d_out:
            raise TutorialError(f"an SAE reconstructs its input: d_in ({self.d_in}) must equal "
                                f"d_out ({self.d_out}); use kind='transcoder' otherwise")
        return self


class SparseDictionary(nn.Module):
    """An SAE or a transcoder (see the module docstring)."""

    def __init__(self, config: DictionaryConfig, seed: int = 0):
        super().__init__()
        self.config = config.check()
        c = config
        gen = torch.Generator().manual_seed(seed)
        W_dec = torch.randn(c.d_out, c.n_features, generator=gen)
        W_dec = W_dec / W_dec.norm(dim=0, keepdim=True)
        self.W_dec = nn.Parameter(W_dec)
        # encoder initialised as the decoder's transpose (Conerly et al. 2024; Gao et al. 2024),
        # or a random matrix of the same scale when the two spaces differ (a transcoder)
        if c.kind == "sae":
            W_enc = W_dec.T.clone()
        else:
            W_enc = torch.randn(c.n_features, c.d_in, generator=gen) / c.d_in ** 0.5
        self.W_enc = nn.Parameter(W_enc)
        self.b_enc = nn.Parameter(torch.zeros(c.n_features))
        self.b_dec = nn.Parameter(torch.zeros(c.d_out))

    # --- definitions ------------------------------------------------------------------------
    @property
    def b_pre(self) -> Tensor:
        """What is subtracted from the input before encoding: ``b_dec`` for an SAE, 0 for a
        transcoder."""
        return self.b_dec if self.config.kind == "sae" else torch.zeros_like(self.W_enc[0])

    def pre_activations(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... n_features"]:
        """``W_enc (x - b_pre) + b_enc``."""
        self._check_input(x)
        return (x - self.b_pre) @ self.W_enc.T + self.b_enc

    def activate(self, pre: Float[Tensor, "... n_features"]) -> Float[Tensor, "... n_features"]:
        """``act(pre)``: ReLU, or TopK (the k largest, ReLU'd, the rest zero)."""
        if self.config.activation == "relu":
            return pre.relu()
        vals, idx = pre.topk(self.config.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, vals.relu())

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... n_features"]:
        """Feature activations ``f = act(W_enc (x - b_pre) + b_enc)``."""
        return self.activate(self.pre_activations(x))

    def decode(self, f: Float[Tensor, "... n_features"]) -> Float[Tensor, "... d_out"]:
        """``W_dec f + b_dec``."""
        if f.shape[-1] != self.config.n_features:
            raise TutorialError(f"decode: features must have {self.config.n_features} entries "
                                f"in the last dimension, got shape {tuple(f.shape)}")
        return f @ self.W_dec.T + self.b_dec

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, Tensor) or x.shape[-1:] != (self.config.d_in,):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise TutorialError(f"{self.config.kind} of {self.config.site_in} (layer "
                                f"{self.config.layer}) reads vectors of size "
                                f"{self.config.d_in}, got shape {shape}")

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Project every decoder column back to unit norm."""
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the part of ``W_dec``'s gradient along its columns (it would only change their
        norms, which :meth:`normalize_decoder` undoes)."""
        if self.W_dec.grad is not None:
            g, W = self.W_dec.grad, self.W_dec
            g.sub_(W * (g * W).sum(0, keepdim=True))

    # --- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict[str, Any] | None = None,
             dtype: torch.dtype = torch.float32) -> None:
        """``path.safetensors`` (weights in ``dtype``) and ``path.json`` (config + metadata)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to(dtype).contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(path.with_suffix(".safetensors")))
        meta = {"config": asdict(self.config), **(metadata or {})}
        path.with_suffix(".json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def load_dictionary(path: str | Path) -> SparseDictionary:
    """Load what :meth:`SparseDictionary.save` wrote (``path`` with or without a suffix);
    the metadata is on ``dictionary.metadata``."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    meta_path, weights_path = base.with_suffix(".json"), base.with_suffix(".safetensors")
    for p in (meta_path, weights_path):
        if not p.exists():
            raise TutorialError(f"load_dictionary: {p} does not exist (a dictionary is a "
                                "NAME.json + NAME.safetensors pair)")
    meta = json.loads(meta_path.read_text())
    cfg = DictionaryConfig(**meta["config"])
    d = SparseDictionary(cfg)
    state = {k: v.float() for k, v in load_file(str(weights_path)).items()}
    d.load_state_dict(state)
    d.metadata = {k: v for k, v in meta.items() if k != "config"}
    d.eval()
    d.requires_grad_(False)
    return d


def shipped_dictionary(name: str) -> SparseDictionary:
    """A dictionary shipped in :data:`DICTIONARIES_DIR` by its name, e.g.
    ``"sae_resid3_topk"`` or ``"transcoder_m0"`` (``data/dictionaries/README.md`` lists them)."""
    if not isinstance(name, str) or not (DICTIONARIES_DIR / f"{name}.json").exists():
        have = sorted(p.stem for p in DICTIONARIES_DIR.glob("*.safetensors"))
        raise TutorialError(f"no shipped dictionary {name!r} in {DICTIONARIES_DIR}; shipped: {have}")
    return load_dictionary(DICTIONARIES_DIR / name)
