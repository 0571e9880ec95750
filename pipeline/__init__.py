"""Hyperparameter sweeps and experiment tracking for regularised NumPy MLPs.

The core is :class:`pipeline.mlp.MLP`; ``python -m pipeline --help`` lists the commands.
"""
