"""A fully connected network in NumPy with the classic regularisers.

The core of the project. It knows nothing of Optuna or MLflow: a sweep talks to it through
keyword hyperparameters (named as everywhere else: ``keep_prob``, ``weight_decay``, ``l1``,
``patience``, ...) and the ``on_epoch`` callback of :meth:`MLP.fit`.

Conventions
-----------
* Data are row-major, ``X`` of shape ``(n_samples, n_features)``; layer ``i`` maps
  ``A @ weights_[i] + biases_[i]`` with ``weights_[i]`` of shape ``(fan_in, fan_out)``.
* ``keep_prob`` is the probability of KEEPING a hidden unit (inverted dropout, as in the seed
  chapter; PyTorch and Keras take the drop rate ``1 - keep_prob``). Inference is unchanged.
* ``weight_decay`` is the seed's L2: ``dW += weight_decay * W`` (penalty ``wd/2 * ||W||^2``,
  biases not decayed), for ``sgd``, ``momentum`` and ``adam``. With ``optimizer="adamw"`` the
  decay is decoupled from the gradient (Loshchilov & Hutter 2019): ``W -= lr * wd * W`` beside the
  Adam step, so Adam's scaling does not weaken it for weights with large gradients.
* ``l1`` is applied by a proximal soft-threshold after each update,
  ``W = sign(W) * max(|W| - lr * l1, 0)``, so weights reach exactly zero (a subgradient
  ``l1 * sign(W)`` would only oscillate around zero).
* ``history_`` records, for epoch ``e = 1..stopped_epoch_``, the training loss measured on the
  forward passes of that epoch (before its updates; for full-batch training this is the loss of
  the weights at the start of the epoch, exactly the seed's ``train_losses[e-1]``) and the
  validation loss of the weights at the END of the epoch (Keras's convention; the seed logs its
  test loss before the update, so its ``test_losses[e]`` is our ``val_loss`` of epoch ``e``).
  Losses are data losses, without the penalty terms.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

TASKS = ("regression", "classification")
DTYPES = ("float64", "float32")

EpochCallback = Callable[[int, dict[str, float]], bool | None]


class Norm(NamedTuple):
    """What batch norm keeps of a layer's forward pass for the backward one."""

    Z_hat: np.ndarray  # the normalised pre-activations
    inv_std: np.ndarray  # 1 / sqrt(var + eps), per unit


class DivergenceError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


# ---------------------------------------------------------------------------- activations
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


# ---------------------------------------------------------------------------- optimisers
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


# ---------------------------------------------------------------------------- constraints
@dataclass(frozen=True)
class Constraint:
    """What a hyperparameter may be: a test, and its wording for messages."""

    allowed: str
    test: Callable[[Any], bool]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _finite(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: is_number(v) and math.isfinite(v) and test(v)


def one_of(choices: Sequence[str]) -> Constraint:
    return Constraint(f"one of {tuple(choices)}", lambda v: v in choices)


PROBABILITY = Constraint("a number in (0, 1]", lambda v: is_number(v) and 0 < v <= 1)
NON_NEGATIVE = Constraint("a finite number >= 0", _finite(lambda v: v >= 0))
POSITIVE = Constraint("a finite number > 0", _finite(lambda v: v > 0))
UNIT_INTERVAL = Constraint("a number in [0, 1)", lambda v: is_number(v) and 0 <= v < 1)
POSITIVE_INT = Constraint("an integer >= 1", lambda v: _is_int(v) and v >= 1)
SEED = Constraint("an integer >= 0", lambda v: _is_int(v) and v >= 0)


def _or_none(c: Constraint, wording: str = "None") -> Constraint:
    return Constraint(f"{c.allowed}, or {wording}", lambda v: v is None or c.test(v))


# Every hyperparameter of MLP and what it may be: read by the model's own validation and by the
# sweep-file checks, so the two cannot disagree (scikit-learn's _parameter_constraints).
PARAMETER_CONSTRAINTS: dict[str, Constraint] = {
    "hidden": Constraint(
        "a sequence of integers >= 1, e.g. (64, 64)",
        lambda v: (
            isinstance(v, Sequence) and not isinstance(v, str) and all(map(POSITIVE_INT.test, v))
        ),
    ),
    "activation": one_of(ACTIVATIONS),
    "task": one_of(TASKS),
    "keep_prob": PROBABILITY,
    "input_keep_prob": PROBABILITY,
    "connect_keep_prob": PROBABILITY,
    "input_noise": NON_NEGATIVE,
    "mixup_alpha": NON_NEGATIVE,
    "batch_norm": Constraint("true or false", lambda v: isinstance(v, bool | np.bool_)),
    "bn_momentum": PROBABILITY,
    "bn_eps": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "l1": NON_NEGATIVE,
    "max_norm": _or_none(POSITIVE),
    "patience": Constraint(
        "an integer >= 0, or None (0 and None: off)", lambda v: v is None or SEED.test(v)
    ),
    "min_delta": NON_NEGATIVE,
    "optimizer": one_of(OPTIMIZERS),
    "lr": POSITIVE,
    "momentum": UNIT_INTERVAL,
    "beta1": UNIT_INTERVAL,
    "beta2": UNIT_INTERVAL,
    "eps": POSITIVE,
    "max_epochs": POSITIVE_INT,
    "batch_size": _or_none(POSITIVE_INT),
    "seed": SEED,
    "noise_seed": _or_none(SEED),
    "dtype": one_of(DTYPES),
}


def check_param(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name``, ``value`` and what is allowed, unless allowed."""
    constraint = PARAMETER_CONSTRAINTS[name]
    if not constraint.test(value):
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {constraint.allowed}")


LEGACY_KEYS = {"weights_": "W", "biases_": "b"}  # array names in models saved before batch norm


class MLP:
    """Multi-layer perceptron trained by gradient descent, with dropout, L2, L1, max-norm and
    early stopping.

    Parameters
    ----------
    hidden : sizes of the hidden layers, e.g. ``(64, 64)``.
    activation : hidden activation, one of ``relu``, ``tanh``, ``sigmoid``.
    task : ``regression`` (mean squared error) or ``classification`` (softmax cross-entropy).
    keep_prob : probability of keeping a hidden unit in inverted dropout; 1 turns dropout off.
    input_keep_prob : the same for the input features.
    connect_keep_prob : DropConnect (Wan et al. 2013): probability of keeping each WEIGHT; one
        mask per weight matrix and mini-batch (Wan et al. draw one per example), scaled by
        ``1 / connect_keep_prob`` so that inference uses the weights as they are (the mean
        network, "weight scaling"). 1 turns it off.
    input_noise : data augmentation: Gaussian noise added to the inputs of every training
        batch, drawn anew each time, with this standard deviation in units of each feature's
        standard deviation on the training set. 0 turns it off.
    mixup_alpha : mixup (Zhang et al. 2018): each training batch is replaced by
        ``lam * batch + (1 - lam) * shuffled batch``, inputs and targets (one-hot for
        classification) alike, ``lam ~ Beta(alpha, alpha)`` per batch. 0 turns it off. The
        training loss in ``history_`` is then the loss on the mixed batches.
    batch_norm : batch normalisation (Ioffe & Szegedy 2015) of every hidden layer, placed
        between the affine map and the activation (the layer's bias is then unused: the learned
        shift takes its place). Training uses the batch's statistics and updates running ones,
        ``running = (1 - bn_momentum) * running + bn_momentum * batch`` (PyTorch's convention;
        Keras's ``momentum`` is ``1 - bn_momentum``), with the unbiased variance; inference uses
        the running ones. ``bn_eps`` is added to the variance.
    weight_decay : L2 strength (see the module docstring for coupled vs decoupled).
    l1 : L1 strength, applied by a proximal soft-threshold step.
    max_norm : if set, each unit's incoming weight vector is rescaled to norm <= max_norm after
        every update (Srivastava et al. 2014).
    patience : early stopping: stop after this many epochs without an improvement of the
        validation loss, and restore the best weights. ``None`` or 0 turns it off.
    min_delta : an improvement means ``val_loss < best - min_delta``.
    optimizer : ``sgd``, ``momentum`` (heavy ball, coefficient ``momentum``), ``adam`` or
        ``adamw``.
    lr, momentum, beta1, beta2, eps : optimiser settings.
    max_epochs : passes over the training data at most.
    batch_size : ``None`` for full-batch gradient descent (the seed's), else mini-batches drawn
        from a shuffled order each epoch.
    seed : seeds every random draw (initial weights, dropout masks, batch order). With
        ``seed=42`` the initial weights are the seed chapter's.
    noise_seed : seeds the dropout masks and batch order apart from the initial weights
        (``None``: the same as ``seed``), e.g. to measure the spread due to dropout alone.
    dtype : ``float64`` (default) or ``float32`` (faster, for sweeps).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        task: str = "regression",
        keep_prob: float = 1.0,
        input_keep_prob: float = 1.0,
        connect_keep_prob: float = 1.0,
        input_noise: float = 0.0,
        mixup_alpha: float = 0.0,
        batch_norm: bool = False,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        weight_decay: float = 0.0,
        l1: float = 0.0,
        max_norm: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.9,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        max_epochs: int = 500,
        batch_size: int | None = None,
        seed: int = 0,
        noise_seed: int | None = None,
        dtype: str = "float64",
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.task = task
        self.keep_prob = keep_prob
        self.input_keep_prob = input_keep_prob
        self.connect_keep_prob = connect_keep_prob
        self.input_noise = input_noise
        self.mixup_alpha = mixup_alpha
        self.batch_norm = batch_norm
        self.bn_momentum = bn_momentum
        self.bn_eps = bn_eps
        self.weight_decay = weight_decay
        self.l1 = l1
        self.max_norm = max_norm
        self.patience = patience
        self.min_delta = min_delta
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.seed = seed
        self.noise_seed = noise_seed
        self.dtype = dtype

    # ------------------------------------------------------------------ validation
    def get_params(self) -> dict[str, Any]:
        """The constructor's hyperparameters, by name."""
        names = self.__init__.__code__.co_varnames[1 : self.__init__.__code__.co_argcount]
        return {name: getattr(self, name) for name in names}

    def _validate_params(self) -> None:
        for name, value in self.get_params().items():
            check_param(name, value)

    def _validate_X(self, X: Any, name: str = "X") -> np.ndarray:
        X = np.asarray(X)
        if X.ndim == 1:
            raise ValueError(
                f"{name} has shape {X.shape}: it must be 2-D (n_samples, n_features);"
                " reshape a single feature with X.reshape(-1, 1)"
            )
        if X.ndim != 2 or X.shape[0] < 1:
            raise ValueError(
                f"{name} has shape {X.shape}: it must be (n_samples, n_features) with at least "
                "one sample"
            )
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"{name} has dtype {X.dtype}: it must be real numbers")
        X = X.astype(self.dtype, copy=False)
        if not np.isfinite(X).all():
            bad = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(
                f"{name} contains NaN or infinite values (first at row {bad[0]}, "
                f"column {bad[1]}): impute or drop them first"
            )
        return X

    def _validate_y(self, y: Any, n: int, name: str = "y") -> np.ndarray:
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(
                f"X and {name} have different lengths: {n} samples in X, "
                f"{y.shape[0] if y.ndim else 0} in {name}"
            )
        if self.task == "classification":
            if y.ndim != 1:
                raise ValueError(f"{name} has shape {y.shape}: classification labels must be 1-D")
            return y
        if not np.issubdtype(y.dtype, np.number):
            raise ValueError(f"{name} has dtype {y.dtype}: regression targets must be numbers")
        y = y.astype(self.dtype, copy=False)
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return y.reshape(n, -1)

    def _encode(self, y: np.ndarray, name: str = "y") -> np.ndarray:
        """Targets as the network sees them: one-hot rows for classification."""
        if self.task == "regression":
            return y
        index = np.searchsorted(self.classes_, y)
        index = np.clip(index, 0, len(self.classes_) - 1)
        unknown = self.classes_[index] != y
        if unknown.any():
            raise ValueError(
                f"{name} has labels not seen in training: {np.unique(y[unknown])[:5]}"
                f"; known classes are {self.classes_.tolist()}"
            )
        onehot = np.zeros((len(y), len(self.classes_)), dtype=self.dtype)
        onehot[np.arange(len(y)), index] = 1.0
        return onehot

    # ------------------------------------------------------------------ the network
    def _init_weights(self, n_in: int, n_out: int, rng: np.random.Generator) -> None:
        sizes = [n_in, *self.hidden, n_out]
        self.weights_, self.biases_ = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            # He initialisation for relu (the seed's sqrt(2 / fan_in)), LeCun for tanh/sigmoid.
            scale = math.sqrt((2.0 if self.activation == "relu" else 1.0) / fan_in)
            # Drawn as (fan_out, fan_in) like the seed's column-major layout, so that seed=42
            # gives the seed's initial weights, then stored transposed for row-major data.
            W = rng.normal(0.0, scale, (fan_out, fan_in)).T
            self.weights_.append(np.ascontiguousarray(W, dtype=self.dtype))
            self.biases_.append(np.zeros(fan_out, dtype=self.dtype))
        # batch norm's learned scale and shift and its running statistics, per hidden layer
        widths = list(self.hidden) if self.batch_norm else []
        self.gammas_ = [np.ones(w, dtype=self.dtype) for w in widths]
        self.betas_ = [np.zeros(w, dtype=self.dtype) for w in widths]
        self.running_means_ = [np.zeros(w, dtype=self.dtype) for w in widths]
        self.running_vars_ = [np.ones(w, dtype=self.dtype) for w in widths]

    def parameters(self) -> list[np.ndarray]:
        """Every learned array, in the order of :meth:`loss_and_gradients`' gradients: the
        weights, the biases, then batch norm's scales and shifts."""
        return [*self.weights_, *self.biases_, *self.gammas_, *self.betas_]

    # arrays that make up a trained network: what early stopping keeps of its best epoch
    STATE = ("weights_", "biases_", "gammas_", "betas_", "running_means_", "running_vars_")

    def _state(self) -> dict[str, list[np.ndarray]]:
        return {name: [a.copy() for a in getattr(self, name)] for name in self.STATE}

    def _forward(
        self,
        X: np.ndarray,
        masks: list[np.ndarray | None] | None = None,
        weight_masks: list[np.ndarray] | None = None,
        batch_stats: bool = True,
        update_stats: bool = False,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[Norm | None], np.ndarray]:
        """Returns the activations entering every layer (before and after dropout), what batch
        norm keeps for the backward pass (None per layer without it) and the output scores.

        ``masks[i]`` (already divided by the keep probability) multiplies the input of layer i,
        ``weight_masks[i]`` (DropConnect, likewise scaled) its weights; ``None`` leaves them
        alone. Batch norm uses the batch's statistics (``batch_stats``; updating the running
        ones with ``update_stats``) or the running ones.
        """
        act = ACTIVATION_TABLE[self.activation].forward
        acts, inputs, norms = [], [], []
        A = X
        n_layers = len(self.weights_)
        for i, (W, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            acts.append(A)
            if masks is not None and masks[i] is not None:
                A = A * masks[i]
            inputs.append(A)
            Z = self._affine(A, W if weight_masks is None else W * weight_masks[i])
            if self.batch_norm and i < n_layers - 1:
                Z, norm = self._normalise(Z, i, batch_stats, update_stats)
                norms.append(norm)
            else:
                Z += b
                norms.append(None)
            A = Z if i == n_layers - 1 else act(Z)
        return acts, inputs, norms, A

    def _normalise(
        self, Z: np.ndarray, i: int, batch_stats: bool, update_stats: bool
    ) -> tuple[np.ndarray, Norm]:
        """Batch norm of hidden layer ``i``'s pre-activations: ``gamma * Z_hat + beta``."""
        if batch_stats:
            mean, var = Z.mean(axis=0), Z.var(axis=0)
            if update_stats:
                m, n = self.bn_momentum, Z.shape[0]
                unbiased = var * (n / (n - 1)) if n > 1 else var
                self.running_means_[i] *= 1 - m
                self.running_means_[i] += m * mean
                self.running_vars_[i] *= 1 - m
                self.running_vars_[i] += m * unbiased
        else:
            mean, var = self.running_means_[i], self.running_vars_[i]
        inv_std = 1.0 / np.sqrt(var + self.bn_eps)
        Z_hat = (Z - mean) * inv_std
        return Z_hat * self.gammas_[i] + self.betas_[i], Norm(Z_hat, inv_std)

    def _data_loss(
        self, scores: np.ndarray, Y: np.ndarray, gradient: bool = True
    ) -> tuple[float, np.ndarray | None]:
        """Mean data loss and (unless ``gradient`` is False) its gradient with respect to the
        output scores."""
        n = scores.shape[0]
        if self.task == "regression":
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

    def _backward(
        self,
        acts: list[np.ndarray],
        inputs: list[np.ndarray],
        norms: list[Norm | None],
        dscores: np.ndarray,
        masks: list[np.ndarray | None] | None,
        weight_masks: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Gradients of the data loss plus the coupled L2 term (``wd * W``; none for adamw),
        in the order of :meth:`parameters`."""
        coupled_wd = self.weight_decay if self.optimizer != "adamw" else 0.0
        n_layers = len(self.weights_)
        grads_W: list[np.ndarray] = [None] * n_layers  # type: ignore[list-item]
        grads_b: list[np.ndarray] = [None] * n_layers  # type: ignore[list-item]
        grads_gamma, grads_beta = [], []
        dZ = dscores
        for i in range(n_layers - 1, -1, -1):
            W = self.weights_[i] if weight_masks is None else self.weights_[i] * weight_masks[i]
            if norms[i] is not None:  # through batch norm: its scale and shift, then Z
                Z_hat, inv_std = norms[i]
                grads_gamma.insert(0, (dZ * Z_hat).sum(axis=0))
                grads_beta.insert(0, dZ.sum(axis=0))
                dZ_hat = dZ * self.gammas_[i]
                n = dZ.shape[0]
                dZ = (inv_std / n) * (
                    n * dZ_hat - dZ_hat.sum(axis=0) - Z_hat * (dZ_hat * Z_hat).sum(axis=0)
                )
                grads_b[i] = np.zeros_like(self.biases_[i])  # unused: the shift replaces it
            else:
                grads_b[i] = dZ.sum(axis=0)
            gW = inputs[i].T @ dZ
            if weight_masks is not None:
                gW *= weight_masks[i]
            if coupled_wd:
                gW += coupled_wd * self.weights_[i]
            grads_W[i] = gW
            if i == 0:
                break
            # a single output unit makes this an outer product too (see _forward)
            dA = dZ * W[:, 0] if W.shape[1] == 1 else dZ @ W.T
            if masks is not None and masks[i] is not None:
                dA *= masks[i]
            dA *= ACTIVATION_TABLE[self.activation].derivative(acts[i])
            dZ = dA
        return [*grads_W, *grads_b, *grads_gamma, *grads_beta]

    def _penalty(self) -> float:
        total = 0.0
        for W in self.weights_:
            if self.weight_decay:
                total += 0.5 * self.weight_decay * float(np.vdot(W, W))
            if self.l1:
                total += self.l1 * float(np.abs(W).sum())
        return total

    def loss_and_gradients(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        masks: list[np.ndarray | None] | None = None,
        weight_masks: list[np.ndarray] | None = None,
    ) -> tuple[float, list[np.ndarray]]:
        """The full objective (data loss + ``wd/2 ||W||^2`` + ``l1 |W|``) and its gradient with
        respect to each array of :meth:`parameters`, in that order.

        For checking gradients: ``Y`` is in the network's encoding (one-hot rows for
        classification), the dropout ``masks`` and DropConnect ``weight_masks`` are held fixed,
        batch norm uses the batch's statistics (the running ones are left alone), and the L1
        term is differentiated as ``l1 * sign(W)`` (exact wherever no weight is zero).
        Training itself applies L1 by a proximal step instead.
        """
        acts, inputs, norms, scores = self._forward(X, masks, weight_masks)
        loss, dscores = self._data_loss(scores, Y)
        grads = self._backward(acts, inputs, norms, dscores, masks, weight_masks)
        for i, W in enumerate(self.weights_):
            if self.optimizer == "adamw":  # decoupled decay is not in the gradient: add it
                grads[i] = grads[i] + self.weight_decay * W
            if self.l1:
                grads[i] = grads[i] + self.l1 * np.sign(W)
        return loss + self._penalty(), grads

    def _dropout_masks(self, n: int, rng: np.random.Generator) -> list[np.ndarray | None] | None:
        keeps = [self.input_keep_prob, *([self.keep_prob] * len(self.hidden))]
        if all(p == 1.0 for p in keeps):
            return None
        masks: list[np.ndarray | None] = []
        for p, W in zip(keeps, self.weights_, strict=True):
            if p == 1.0:
                masks.append(None)
            else:
                keep = rng.random((n, W.shape[0])) < p
                masks.append(keep * np.asarray(1.0 / p, dtype=self.dtype))
        return masks

    def _connect_masks(self, rng: np.random.Generator) -> list[np.ndarray] | None:
        """DropConnect: one mask per weight matrix, scaled by 1 / connect_keep_prob."""
        p = self.connect_keep_prob
        if p == 1.0:
            return None
        scale = np.asarray(1.0 / p, dtype=self.dtype)
        return [(rng.random(W.shape) < p) * scale for W in self.weights_]

    def _augment(
        self, X: np.ndarray, Y: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """A training batch with input noise and mixup applied, where they are on."""
        if self.input_noise:
            noise = rng.standard_normal(X.shape).astype(self.dtype, copy=False)
            X = X + noise * (self.input_noise * self._feature_std)
        if self.mixup_alpha:
            lam = rng.beta(self.mixup_alpha, self.mixup_alpha)
            other = rng.permutation(X.shape[0])
            X = lam * X + (1 - lam) * X[other]
            Y = lam * Y + (1 - lam) * Y[other]
        return X, Y

    # ------------------------------------------------------------------ optimisation
    def _make_optimizer(self) -> SGD | Momentum | Adam:
        return OPTIMIZER_TABLE[self.optimizer](
            self.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            beta1=self.beta1,
            beta2=self.beta2,
            eps=self.eps,
            weight_decay=self.weight_decay,
            n_decayed=len(self.weights_),
        )

    def _update(self, grads: list[np.ndarray]) -> None:
        """One optimiser step, then the steps that act on the weights themselves: the proximal
        L1 step and the max-norm constraint."""
        self._optimizer.step(self.parameters(), grads)
        if self.l1:
            prox_l1(self.weights_, self.lr * self.l1)
        if self.max_norm is not None:
            clip_max_norm(self.weights_, self.max_norm)

    def _train_epoch(self, X: np.ndarray, Y: np.ndarray, rng: np.random.Generator) -> float:
        """One pass over the training data; returns the mean data loss of its forward passes."""
        n = X.shape[0]
        if self.batch_size is None or self.batch_size >= n:
            batches: list[np.ndarray | slice] = [slice(None)]
        else:
            order = rng.permutation(n)
            batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        total = 0.0
        augment = self.input_noise or self.mixup_alpha
        for batch in batches:
            Xb, Yb = X[batch], Y[batch]
            if augment:
                Xb, Yb = self._augment(Xb, Yb, rng)
            masks = self._dropout_masks(Xb.shape[0], rng)
            weight_masks = self._connect_masks(rng)
            acts, inputs, norms, scores = self._forward(Xb, masks, weight_masks, update_stats=True)
            loss, dscores = self._data_loss(scores, Yb)
            total += loss * Xb.shape[0]
            self._update(self._backward(acts, inputs, norms, dscores, masks, weight_masks))
        return total / n

    def fit(
        self,
        X: Any,
        y: Any,
        X_val: Any = None,
        y_val: Any = None,
        on_epoch: EpochCallback | None = None,
    ) -> MLP:
        """Train on ``X, y``; validate on ``X_val, y_val`` after every epoch when given.

        ``on_epoch(epoch, metrics)`` is called after each epoch with that epoch's row of
        ``history_``; returning True stops training (an exception it raises, e.g. Optuna's
        ``TrialPruned``, propagates). Raises :class:`DivergenceError` on a NaN or infinite loss.
        """
        self._validate_params()
        X = self._validate_X(X)
        y = self._validate_y(y, X.shape[0])
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together")
        if self.task == "classification":
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(f"y has {len(self.classes_)} class: classification needs >= 2")
        Y = self._encode(y)
        has_val = X_val is not None
        if has_val:
            X_val = self._validate_X(X_val, "X_val")
            if X_val.shape[1] != X.shape[1]:
                raise ValueError(f"X_val has {X_val.shape[1]} features, X has {X.shape[1]}")
            Y_val = self._encode(self._validate_y(y_val, X_val.shape[0], "y_val"), "y_val")
        early_stopping = bool(self.patience)
        if early_stopping and not has_val:
            raise ValueError(
                f"patience={self.patience} needs validation data: pass X_val and "
                "y_val to fit, or set patience=None"
            )

        # default_rng(seed) draws the initial weights (so seed=42 gives the seed chapter's);
        # dropout masks and batch order come from an independent child stream.
        self._init_weights(X.shape[1], Y.shape[1], np.random.default_rng(self.seed))
        noise_seed = self.seed if self.noise_seed is None else self.noise_seed
        train_rng = np.random.default_rng(np.random.SeedSequence(noise_seed).spawn(1)[0])
        self._optimizer = self._make_optimizer()
        self._feature_std = X.std(axis=0)  # the unit of input_noise
        self.n_features_in_ = X.shape[1]
        self.history_: dict[str, list[float]] = {"epoch": [], "train_loss": []}
        if has_val:
            self.history_["val_loss"] = []
            if self.task == "classification":
                self.history_["val_accuracy"] = []
        self.best_epoch_: int | None = None
        self.best_val_loss_ = math.inf
        best_state: dict[str, list[np.ndarray]] | None = None
        if has_val:
            val_buffers = [np.empty((len(X_val), b.size), self.dtype) for b in self.biases_]

        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(1, self.max_epochs + 1):
                row = {"epoch": epoch, "train_loss": self._train_epoch(X, Y, train_rng)}
                if has_val:
                    row.update(self._metrics(X_val, Y_val, "val_", val_buffers))
                for key, value in row.items():
                    self.history_[key].append(value)
                self.stopped_epoch_ = epoch
                bad = [k for k, v in row.items() if not math.isfinite(v)]
                if bad:
                    raise DivergenceError(
                        f"training diverged at epoch {epoch}: {bad[0]} is "
                        f"{row[bad[0]]} (try a smaller lr)"
                    )
                if has_val and row["val_loss"] < self.best_val_loss_ - self.min_delta:
                    self.best_val_loss_, self.best_epoch_ = row["val_loss"], epoch
                    if early_stopping:  # batch norm's running statistics included
                        best_state = self._state()
                if on_epoch is not None and on_epoch(epoch, dict(row)):
                    break
                if early_stopping and epoch - self.best_epoch_ >= self.patience:
                    break
        if best_state is not None:
            for name, arrays in best_state.items():
                setattr(self, name, arrays)
        del self._optimizer
        return self

    # ------------------------------------------------------------------ inference
    def _checked_X(self, X: Any) -> np.ndarray:
        if not hasattr(self, "weights_"):
            raise RuntimeError("this MLP is not fitted yet: call fit first")
        X = self._validate_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, the network was fitted on {self.n_features_in_}"
            )
        return X

    def _scores(self, X: Any) -> np.ndarray:
        return self._infer(self._checked_X(X))

    def _infer(self, X: np.ndarray, buffers: list[np.ndarray] | None = None) -> np.ndarray:
        """Output scores without dropout, keeping no activations: for evaluation and prediction.

        With ``buffers`` (one array per layer, of shape ``(len(X), fan_out)``) every layer writes
        into them instead of new arrays. Validation runs on the same set every epoch, and fresh
        arrays of a few hundred KiB cost page faults each time (glibc hands them back to the OS).

        For relu a hidden layer costs one pass over its activations instead of two:
        ``relu(P + c) = max(P, -c) + c``, and the constant row ``c`` is carried into the next
        layer's bias (``c @ W``) instead of being added to every row.
        """
        act = ACTIVATION_TABLE[self.activation].forward
        *hidden_layers, (W_out, b_out) = self._inference_layers()
        A, shift = X, None  # the true activations are A + shift (shift: one row, or None)
        for i, (W, b) in enumerate(hidden_layers):
            Z = self._affine(A, W, None if buffers is None else buffers[i])
            bias = b if shift is None else b + shift @ W
            if self.activation == "relu":
                A, shift = np.maximum(Z, -bias, out=Z), bias
            else:
                Z += bias
                A = act(Z)
        scores = self._affine(A, W_out, None if buffers is None else buffers[-1])
        scores += b_out if shift is None else b_out + shift @ W_out
        return scores

    def _inference_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W, b) per layer as inference applies them: batch norm with its running statistics
        is an affine map, folded into the layer's weights and bias: with ``s = gamma / std``,
        ``gamma * (XW - mean) / std + beta = X (W * s) + (beta - mean * s)``."""
        layers = list(zip(self.weights_, self.biases_, strict=True))
        for i, (gamma, beta) in enumerate(zip(self.gammas_, self.betas_, strict=True)):
            scale = gamma / np.sqrt(self.running_vars_[i] + self.bn_eps)
            layers[i] = (self.weights_[i] * scale, beta - self.running_means_[i] * scale)
        return layers

    def _mc_outputs(self, X: np.ndarray, checkpoints: Sequence[int]) -> Iterator[np.ndarray]:
        """The mean of the outputs (class probabilities for classification, predictions for
        regression) over the first T stochastic forward passes, for each T of ``checkpoints``
        (ascending): dropout and DropConnect masks as in training, batch norm with its running
        statistics. Monte-Carlo dropout (Gal & Ghahramani 2016): the ensemble of thinned
        networks that weight scaling approximates. Reproducible: the masks come from a stream
        of ``seed``, so the first T passes are the same whatever the checkpoints."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(2)[1])
        total = None
        for t in range(1, max(checkpoints) + 1):
            masks = self._dropout_masks(X.shape[0], rng)
            scores = self._thinned_scores(X, masks, self._connect_masks(rng))
            out = self._softmax(scores) if self.task == "classification" else scores
            total = out if total is None else total + out
            if t in checkpoints:
                yield total / t

    def _thinned_scores(
        self,
        X: np.ndarray,
        masks: list[np.ndarray | None] | None,
        weight_masks: list[np.ndarray] | None,
    ) -> np.ndarray:
        """Output scores of one thinned network: :meth:`_forward` without batch statistics,
        at the cost of inference. It keeps no activations for a backward pass and uses the
        folded batch norm layers; a DropConnect mask commutes with the fold, whose scale is
        per output unit. A quarter of the time of :meth:`_forward` on the default sweep's
        validation set, where each complete trial takes ten such passes."""
        act = ACTIVATION_TABLE[self.activation].forward
        layers = self._inference_layers()
        A = X
        for i, (W, b) in enumerate(layers):
            if masks is not None and masks[i] is not None:
                A = A * masks[i]
            if weight_masks is not None:
                W = W * weight_masks[i]
            A = self._affine(A, W)
            A += b
            if i < len(layers) - 1:
                A = act(A)
        return A

    def mc_losses(self, X: Any, y: Any, checkpoints: Sequence[int]) -> dict[int, float]:
        """Data loss of the Monte-Carlo average of T passes, for each T of ``checkpoints``,
        from one run of ``max(checkpoints)`` passes (see :meth:`evaluate`)."""
        if not checkpoints or not all(map(POSITIVE_INT.test, checkpoints)):
            raise ValueError(f"checkpoints={checkpoints!r}: must be integers >= 1")
        X = self._checked_X(X)
        Y = self._encode(self._validate_y(y, X.shape[0]))
        order = sorted(set(checkpoints))
        means = self._mc_outputs(X, order)
        return {
            t: self._output_metrics(out, Y)["loss"] for t, out in zip(order, means, strict=True)
        }

    def _output_metrics(self, out: np.ndarray, Y: np.ndarray) -> dict[str, float]:
        """Loss (and accuracy) of outputs that are probabilities or predictions, not scores."""
        if self.task == "regression":
            return {"loss": float(np.mean((out - Y) ** 2))}
        picked = np.maximum((out * Y).sum(axis=1), np.finfo(out.dtype).tiny)
        return {
            "loss": float(-np.log(picked).mean()),
            "accuracy": float((out.argmax(1) == Y.argmax(1)).mean()),
        }

    @staticmethod
    def _softmax(scores: np.ndarray) -> np.ndarray:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    @staticmethod
    def _affine(A: np.ndarray, W: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``A @ W``; a layer with a single input is an outer product, and broadcasting does it
        several times faster than a BLAS call with inner dimension 1."""
        return np.multiply(A, W[0], out=out) if W.shape[0] == 1 else np.matmul(A, W, out=out)

    def _metrics(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        prefix: str = "",
        buffers: list[np.ndarray] | None = None,
    ) -> dict[str, float]:
        scores = self._infer(X, buffers)
        loss, _ = self._data_loss(scores, Y, gradient=False)
        metrics = {f"{prefix}loss": loss}
        if self.task == "classification":
            metrics[f"{prefix}accuracy"] = float((scores.argmax(1) == Y.argmax(1)).mean())
        return metrics

    def evaluate(self, X: Any, y: Any, mc_samples: int | None = None) -> dict[str, float]:
        """Data loss (and accuracy for classification) of the fitted network on ``X, y``; of
        the Monte-Carlo average of ``mc_samples`` stochastic passes when given (see
        :meth:`predict`)."""
        if mc_samples is None:
            scores = self._scores(X)
            Y = self._encode(self._validate_y(y, scores.shape[0]))
            with np.errstate(over="ignore", invalid="ignore"):
                return self._metrics(self._validate_X(X), Y)
        out = self._outputs(X, mc_samples)
        return self._output_metrics(out, self._encode(self._validate_y(y, out.shape[0])))

    def _outputs(self, X: Any, mc_samples: int | None) -> np.ndarray:
        """Probabilities (classification) or predictions (regression), by weight scaling, or
        averaged over ``mc_samples`` stochastic passes."""
        if mc_samples is None:
            scores = self._scores(X)
            return self._softmax(scores) if self.task == "classification" else scores
        if not POSITIVE_INT.test(mc_samples):
            raise ValueError(f"mc_samples={mc_samples!r}: must be {POSITIVE_INT.allowed}, or None")
        (mean,) = self._mc_outputs(self._checked_X(X), [mc_samples])
        return mean

    def predict_proba(self, X: Any, mc_samples: int | None = None) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (see :meth:`predict`)."""
        if self.task != "classification":
            raise ValueError("predict_proba needs task='classification'")
        return self._outputs(X, mc_samples)

    def predict(self, X: Any, mc_samples: int | None = None) -> np.ndarray:
        """Class labels for classification; predictions of shape (n,) or (n, k) for regression.

        By default one deterministic pass with the weights as trained (dropout's weight
        scaling: the inverted masks make the expected activations equal). With
        ``mc_samples=T``, the average of T passes with dropout and DropConnect masks drawn as
        in training (Monte-Carlo dropout), the ensemble of thinned networks that weight
        scaling approximates (section 4 of the seed chapter)."""
        out = self._outputs(X, mc_samples)
        if self.task == "classification":
            return self.classes_[out.argmax(axis=1)]
        return out[:, 0] if out.shape[1] == 1 else out

    def hidden_activations(
        self, X: Any, rng: np.random.Generator | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each hidden layer, its activations on ``X`` without dropout and with the dropout
        of training (masks drawn from ``rng``; the same array twice when keep_prob is 1)."""
        X = self._validate_X(X)
        masks = self._dropout_masks(len(X), rng or np.random.default_rng(self.seed))
        acts, inputs, _, _ = self._forward(X, masks, batch_stats=False)
        return list(zip(acts[1:], inputs[1:], strict=True))

    def save(self, path: str | Path) -> None:
        """Write hyperparameters and learned weights to one ``.npz`` file (see :meth:`load`)."""
        if not hasattr(self, "weights_"):
            raise RuntimeError("this MLP is not fitted yet: nothing to save")
        arrays = {f"{name}{i}": a for name in self.STATE for i, a in enumerate(getattr(self, name))}
        if self.task == "classification":
            arrays["classes"] = self.classes_
        params = {**self.get_params(), "hidden": list(self.hidden)}
        np.savez(path, params=np.array(json.dumps(params)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> MLP:
        """An MLP saved by :meth:`save`, ready to ``predict``."""
        with np.load(path, allow_pickle=False) as f:
            params = json.loads(str(f["params"]))
            model = cls(**{**params, "hidden": tuple(params["hidden"])})
            for name in cls.STATE:
                prefix = name
                if name in LEGACY_KEYS and f"{name}0" not in f.files:  # saved before batch norm
                    prefix = LEGACY_KEYS[name]
                count = sum(key.rstrip("0123456789") == prefix for key in f.files)
                setattr(model, name, [f[f"{prefix}{i}"] for i in range(count)])
            if "classes" in f:
                model.classes_ = f["classes"]
        model.n_features_in_ = model.weights_[0].shape[0]
        return model

    def weight_norm(self) -> float:
        """Euclidean norm of all weights (biases excluded)."""
        return math.sqrt(sum(float(np.vdot(W, W)) for W in self.weights_))

    def sparsity(self) -> float:
        """Share of weights that are exactly zero."""
        zeros = sum(int((W == 0).sum()) for W in self.weights_)
        return zeros / sum(W.size for W in self.weights_)
