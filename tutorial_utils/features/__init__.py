"""Dictionary features: superposition in a toy model, sparse autoencoders, transcoders, the
replacement model, attribution graphs and steering (notebook 06).

Everything here is defined on the model's own, unfolded weights
(:class:`~tutorial_utils.features.unfolded.UnfoldedGPT2`), GPT-2 architecture.
"""
