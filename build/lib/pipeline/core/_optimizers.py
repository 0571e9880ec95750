"""Optimisers (scikit-learn's ``_stochastic_optimizers``) and the steps that act on the weights
themselves after an update: L1's proximal soft-threshold and the max-norm constraint."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class SGD:
    """Plain gradient descent: ``p -= lr * g``."""

    def __init__(self, params: list[np.ndarray], lr: float, **_: Any) -> None:
        self.lr = lr

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for p, g in zip(params, grads, strict=True):
            p -= self.lr * g


class Momentum:
    """Heavy ball: ``v = momentum * v - lr * g; p += v``."""

    def __init__(self, params: list[np.ndarray], lr: float, momentum: float, **_: Any) -> None:
        self.lr, self.momentum = lr, momentum
        self.velocity = [np.zeros_like(p) for p in params]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for p, g, v in zip(params, grads, self.velocity, strict=True):
            v *= self.momentum
            v -= self.lr * g
            p += v


class Adam:
    """Adam (Kingma & Ba 2015) with the bias correction folded into the step size."""

    def __init__(
        self,
        params: list[np.ndarray],
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        **_: Any,
    ) -> None:
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= step * m / (np.sqrt(v) + self.eps)


class AdamW(Adam):
    """Adam with weight decay decoupled from the gradient (Loshchilov & Hutter 2019): the first
    ``n_decayed`` params (the weights, not the biases) shrink by ``lr * weight_decay`` before
    each Adam step, so Adam's scaling does not weaken the decay of weights with large
    gradients."""

    def __init__(
        self, params: list[np.ndarray], weight_decay: float, n_decayed: int, **kwargs: Any
    ) -> None:
        super().__init__(params, **kwargs)
        self.weight_decay, self.n_decayed = weight_decay, n_decayed

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if self.weight_decay:
            for W in params[: self.n_decayed]:
                W *= 1.0 - self.lr * self.weight_decay
        super().step(params, grads)


OPTIMIZER_TABLE: dict[str, type] = {"sgd": SGD, "momentum": Momentum, "adam": Adam, "adamw": AdamW}
OPTIMIZERS = tuple(OPTIMIZER_TABLE)


def prox_l1(weights: list[np.ndarray], threshold: float) -> None:
    """The proximal step of ``l1 * |W|`` with step ``lr`` (``threshold = lr * l1``): a
    soft-threshold that sets small weights to exactly zero and never moves one across zero."""
    for W in weights:
        np.copyto(W, np.sign(W) * np.maximum(np.abs(W) - threshold, 0.0))


def clip_max_norm(weights: list[np.ndarray], max_norm: float) -> None:
    """Rescale each unit's incoming weight vector (a column) to norm <= ``max_norm``."""
    for W in weights:
        norms = np.sqrt((W * W).sum(axis=0))
        W *= np.minimum(1.0, max_norm / np.maximum(norms, 1e-12))
