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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pipeline.core._activations import data_loss, loss_and_gradient, output_metrics, softmax
from pipeline.core._constraints import POSITIVE_INT
from pipeline.core._optimizers import OPTIMIZER_TABLE, SGD, Adam, Momentum, clip_max_norm, prox_l1
from pipeline.core._propagation import Network

EpochCallback = Callable[[int, dict[str, float]], bool | None]
LEGACY_KEYS = {"weights_": "W", "biases_": "b"}  # array names in models saved before batch norm


class DivergenceError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class MLP(Network):
    """Multi-layer perceptron trained by gradient descent, with dropout, DropConnect, input noise,
    mixup, batch norm, L2, L1, max-norm and early stopping.

    Its hyperparameters, their defaults and what each may be are declared once, in
    :class:`~pipeline.core.Hyperparams` (``MLP(keep_prob=0.8, weight_decay=1e-3, ...)``);
    ``MLP.get_params()`` lists them. Learned attributes end in ``_`` (scikit-learn's convention):
    ``weights_``, ``biases_``, ``history_``, ``best_epoch_``, ``stopped_epoch_``, ``classes_``.
    """

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
            loss, dscores = loss_and_gradient(self.task, scores, Yb)
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
        X, Y, X_val, Y_val = self._fit_inputs(X, y, X_val, y_val)
        has_val = X_val is not None
        early_stopping = bool(self.patience)
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
        if X_val is not None:
            val_buffers = [np.empty((len(X_val), b.size), self.dtype) for b in self.biases_]

        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for epoch in range(1, self.max_epochs + 1):
                row = {"epoch": epoch, "train_loss": self._train_epoch(X, Y, train_rng)}
                if X_val is not None and Y_val is not None:
                    row.update(self._metrics(X_val, Y_val, "val_", val_buffers))
                self._record(epoch, row)
                if has_val and row["val_loss"] < self.best_val_loss_ - self.min_delta:
                    self.best_val_loss_, self.best_epoch_ = row["val_loss"], epoch
                    if early_stopping:  # batch norm's running statistics included
                        best_state = self._state()
                if on_epoch is not None and on_epoch(epoch, dict(row)):
                    break
                if early_stopping and epoch - (self.best_epoch_ or 0) >= (self.patience or 0):
                    break
        if best_state is not None:
            for name, arrays in best_state.items():
                setattr(self, name, arrays)
        del self._optimizer
        return self

    def _fit_inputs(
        self, X: Any, y: Any, X_val: Any, y_val: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """The hyperparameters and the data checked; targets encoded as the network sees them
        (``classes_`` learnt for classification)."""
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
        Y_val = None
        if X_val is not None:
            X_val = self._validate_X(X_val, "X_val")
            if X_val.shape[1] != X.shape[1]:
                raise ValueError(f"X_val has {X_val.shape[1]} features, X has {X.shape[1]}")
            Y_val = self._encode(self._validate_y(y_val, X_val.shape[0], "y_val"), "y_val")
        if self.patience and X_val is None:
            raise ValueError(
                f"patience={self.patience} needs validation data: pass X_val and "
                "y_val to fit, or set patience=None"
            )
        return X, Y, X_val, Y_val

    def _record(self, epoch: int, row: dict[str, float]) -> None:
        """An epoch's row into ``history_``; a NaN or infinite value ends training."""
        for key, value in row.items():
            self.history_[key].append(value)
        self.stopped_epoch_ = epoch
        bad = [k for k, v in row.items() if not math.isfinite(v)]
        if bad:
            raise DivergenceError(
                f"training diverged at epoch {epoch}: {bad[0]} is {row[bad[0]]} (try a smaller lr)"
            )

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
            t: output_metrics(self.task, out, Y)["loss"]
            for t, out in zip(order, means, strict=True)
        }

    def _metrics(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        prefix: str = "",
        buffers: list[np.ndarray] | None = None,
    ) -> dict[str, float]:
        scores = self._infer(X, buffers)
        loss = data_loss(self.task, scores, Y)
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
        return output_metrics(self.task, out, self._encode(self._validate_y(y, out.shape[0])))

    def _outputs(self, X: Any, mc_samples: int | None) -> np.ndarray:
        """Probabilities (classification) or predictions (regression), by weight scaling, or
        averaged over ``mc_samples`` stochastic passes."""
        if mc_samples is None:
            scores = self._scores(X)
            return softmax(scores) if self.task == "classification" else scores
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

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write hyperparameters and learned weights to one ``.npz`` file (see :meth:`load`)."""
        if not hasattr(self, "weights_"):
            raise RuntimeError("this MLP is not fitted yet: nothing to save")
        arrays = {f"{name}{i}": a for name in self.STATE for i, a in enumerate(getattr(self, name))}
        if self.task == "classification":
            arrays["classes"] = self.classes_
        for name in ("best_epoch_", "stopped_epoch_"):  # how long it trained, when known
            if getattr(self, name, None) is not None:
                arrays[name] = np.array(getattr(self, name))
        params = {**self.get_params(), "hidden": list(self.hidden)}
        np.savez(path, params=np.array(json.dumps(params)), **arrays)

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> MLP:
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
            for name in ("best_epoch_", "stopped_epoch_"):
                if name in f:
                    setattr(model, name, int(f[name]))
        model.n_features_in_ = model.weights_[0].shape[0]
        return model

    def weight_norm(self) -> float:
        """Euclidean norm of all weights (biases excluded)."""
        return math.sqrt(sum(float(np.vdot(W, W)) for W in self.weights_))

    def nonzero_weights(self) -> int:
        """How many weights are not exactly zero (biases excluded)."""
        return sum(int(np.count_nonzero(W)) for W in self.weights_)

    def sparsity(self) -> float:
        """Share of weights that are exactly zero."""
        zeros = sum(int((W == 0).sum()) for W in self.weights_)
        return zeros / sum(W.size for W in self.weights_)
