"""Dictionary features (notebook 06): superposition in a toy model, sparse autoencoders,
transcoders, the replacement model, attribution graphs and steering.

Everything is defined on the model's own, unfolded weights (GPT-2 architecture), not on
TransformerLens's folded and centred copy:

* :mod:`.unfolded` — ``UnfoldedGPT2``: the plain forward, its sites (``resid_pre``,
  ``ln2_out``, ``mlp_out``, ...), splicing and frozen attention/normalisation;
* :mod:`.superposition` — Elhage et al. 2022's toy model and its geometry;
* :mod:`.dictionary`, :mod:`.training`, :mod:`.evaluation` — SAEs and transcoders (ReLU + L1,
  TopK), their training loss, and L0 / variance explained / loss recovered / dead features;
* :mod:`.reading` — top-activating contexts, features tied to a task variable, ablating and
  steering an SAE feature;
* :mod:`.replacement` — the replacement model (transcoders, error nodes, task metric kept);
* :mod:`.attribution`, :mod:`.pruning`, :mod:`.interventions` — attribution graphs
  (Ameisen et al. 2025), pruning by influence, validation by interventions;
* :mod:`.steering` — difference-of-means and feature steering;
* :mod:`.plots` — the figures.

Shipped dictionaries of ``tiny-gpt2-tasks`` are in ``data/dictionaries`` (trained by
``python -m tutorial_utils.course.dictionaries``); load one by name with
:func:`.dictionary.shipped_dictionary`. Notebook 06 teaches all of it.
"""
