"""Activations and losses: the tables the network reads (scikit-learn's ``neural_network/_base``).

Activations work in place on their argument and give their derivative in terms of their OUTPUT
``a = f(z)``, which is what the forward pass keeps. Losses are data losses (mean squared error
for regression, softmax cross-entropy for classification), without the penalty terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Activation:
    """A hidden activation, in place on its argument, and its derivative written in terms of
    the OUTPUT ``a = f(z)``, which is what the forward pass keeps."""

    forward: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray], np.ndarray]  # f'(z) as a function of a = f(z)


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0, out=z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-z)) without overflow warnings for large negative z
    return np.exp(-np.logaddexp(0.0, -z, out=z), out=z)


ACTIVATION_TABLE: dict[str, Activation] = {
    "relu": Activation(_relu, lambda a: a > 0),
    "tanh": Activation(lambda z: np.tanh(z, out=z), lambda a: 1.0 - a * a),
    "sigmoid": Activation(_sigmoid, lambda a: a * (1.0 - a)),
}
ACTIVATIONS = tuple(ACTIVATION_TABLE)
TASKS = ("regression", "classification")


def softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores / scores.sum(axis=1, keepdims=True)


def data_loss(task: str, scores: np.ndarray, Y: np.ndarray) -> float:
    """Mean data loss of output ``scores`` against ``Y`` (one-hot rows for classification)."""
    return _loss(task, scores, Y, gradient=False)[0]


def loss_and_gradient(task: str, scores: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
    """:func:`data_loss` and its gradient with respect to the scores."""
    loss, grad = _loss(task, scores, Y, gradient=True)
    assert grad is not None
    return loss, grad


def _loss(
    task: str, scores: np.ndarray, Y: np.ndarray, gradient: bool
) -> tuple[float, np.ndarray | None]:
    n = scores.shape[0]
    if task == "regression":
        diff = scores - Y
        loss = float(np.vdot(diff, diff)) / diff.size
        if gradient:
            diff *= 2.0 / diff.size
        return loss, diff if gradient else None
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_norm
    loss = -float(np.vdot(Y, log_probs)) / n
    return loss, (np.exp(log_probs) - Y) / n if gradient else None


def output_metrics(task: str, out: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    """Loss (and accuracy) of outputs that are probabilities or predictions, not scores."""
    if task == "regression":
        return {"loss": float(np.mean((out - Y) ** 2))}
    picked = np.maximum((out * Y).sum(axis=1), np.finfo(out.dtype).tiny)
    return {
        "loss": float(-np.log(picked).mean()),
        "accuracy": float((out.argmax(1) == Y.argmax(1)).mean()),
    }
