"""The offline decoders: their corpus generator, tokenizer, training script and evaluation.

Train the current recipe (version 3, attention-only, shipped as ``tiny-attn-tasks``, notebook 04):
``python -m tutorial_utils.offline_model.train --out data/models/tiny-attn-tasks``.
The older ``tiny-gpt2-tasks`` (version 2, with MLPs) was trained by this package as of commit
a0018b1 (``git show a0018b1:tutorial_utils/offline_model/train.py``).
"""
