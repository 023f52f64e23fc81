"""The offline model: its corpus generator, tokenizer, training script and evaluation.

Train: ``python -m tutorial_utils.offline_model.train --out data/models/tiny-gpt2-tasks``.
"""
