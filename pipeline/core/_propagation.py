"""The network's arrays and their passes: initialisation, forward and backward passes with
dropout, DropConnect and batch norm, the penalty terms, and inference.

:class:`Network` is the base class of :class:`~pipeline.core.MLP` (scikit-learn's
``BaseMultilayerPerceptron``): it holds what the arrays do, the estimator holds what a user calls
(``fit``, ``predict``, ``save``). Layer ``i`` maps ``A @ weights_[i] + biases_[i]`` with
``weights_[i]`` of shape ``(fan_in, fan_out)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from pipeline.core._activations import ACTIVATION_TABLE, loss_and_gradient, softmax
from pipeline.core._hyperparams import Hyperparams


class Norm(NamedTuple):
    """What batch norm keeps of a layer's forward pass for the backward one."""

    Z_hat: np.ndarray  # the normalised pre-activations
    inv_std: np.ndarray  # 1 / sqrt(var + eps), per unit


class Network(Hyperparams):
    """The learned arrays of a fully connected network and the passes over them."""

    weights_: list[np.ndarray]
    biases_: list[np.ndarray]
    gammas_: list[np.ndarray]
    betas_: list[np.ndarray]
    running_means_: list[np.ndarray]
    running_vars_: list[np.ndarray]
    _feature_std: np.ndarray  # per feature, on the training data: the unit of input_noise

    def _init_weights(self, n_in: int, n_out: int, rng: np.random.Generator) -> None:
        sizes = [n_in, *self.hidden, n_out]
        self.weights_, self.biases_ = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            if self.init == "glorot":
                # scikit-learn's MLP's draw: its smaller first-layer weights start a network
                # on many inputs closer to a smooth function than He's do
                factor = 2.0 if self.activation == "sigmoid" else 6.0
                bound = math.sqrt(factor / (fan_in + fan_out))
                W = rng.uniform(-bound, bound, (fan_in, fan_out))
                b = rng.uniform(-bound, bound, fan_out)
            else:
                # He for relu (the seed's sqrt(2 / fan_in)), LeCun for tanh/sigmoid, drawn as
                # (fan_out, fan_in) like the seed's column-major layout, so that seed=42 gives
                # the seed's initial weights, then stored transposed for row-major data.
                scale = math.sqrt((2.0 if self.activation == "relu" else 1.0) / fan_in)
                W = rng.normal(0.0, scale, (fan_out, fan_in)).T
                b = np.zeros(fan_out)
            self.weights_.append(np.ascontiguousarray(W, dtype=self.dtype))
            self.biases_.append(np.asarray(b, dtype=self.dtype))
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
        acts: list[np.ndarray] = []
        inputs: list[np.ndarray] = []
        norms: list[Norm | None] = []
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
        grads_gamma: list[np.ndarray] = []
        grads_beta: list[np.ndarray] = []
        dZ = dscores
        for i in range(n_layers - 1, -1, -1):
            W = self.weights_[i] if weight_masks is None else self.weights_[i] * weight_masks[i]
            norm = norms[i]
            if norm is not None:  # through batch norm: its scale and shift, then Z
                Z_hat, inv_std = norm
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
        loss, dscores = loss_and_gradient(self.task, scores, Y)
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
            out = softmax(scores) if self.task == "classification" else scores
            total = out if total is None else total + out
            if t in checkpoints:
                yield total / t

    @staticmethod
    def _affine(A: np.ndarray, W: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``A @ W``; a layer with a single input is an outer product, and broadcasting does it
        several times faster than a BLAS call with inner dimension 1."""
        return np.multiply(A, W[0], out=out) if W.shape[0] == 1 else np.matmul(A, W, out=out)
