"""Helpers for the Transformer-interpretability course notebooks.

Importing the package loads no model and makes no network call; import the submodules you need:
``models`` (loading), ``tasks`` (datasets and metrics), and one module per method.
"""

__version__ = "0.1.0"
