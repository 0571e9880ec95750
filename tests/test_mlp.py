"""The MLP core: gradients against finite differences, regularisers, early stopping, manners."""

import itertools

import numpy as np
import pytest

from pipeline.core import MLP, DivergenceError
from pipeline.core._optimizers import Adam, AdamW, Momentum, prox_l1


def _problem(task: str, n: int = 12, d: int = 3, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if task == "regression":
        return X, rng.normal(size=(n, 2))
    return X, rng.integers(0, k, size=n)


def _onehot(model: MLP, y: np.ndarray) -> np.ndarray:
    return model._encode(y) if model.task == "classification" else y


def _numeric_gradient(f, params: list[np.ndarray], eps: float = 1e-5) -> list[np.ndarray]:
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            up = f()
            p[idx] = old - eps
            down = f()
            p[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def _max_relative_error(analytic: list[np.ndarray], numeric: list[np.ndarray]) -> float:
    """max over parameter arrays of |a - n| / max(|a|, |n|), in the Euclidean norm.

    Per array rather than per entry: an entry whose true gradient is ~1e-7 cannot be resolved
    by finite differences to a relative 1e-6, while its array as a whole can.
    """
    return max(
        float(np.linalg.norm(a - n) / max(np.linalg.norm(a), np.linalg.norm(n), 1e-12))
        for a, n in zip(analytic, numeric, strict=True)
    )


@pytest.mark.parametrize(
    ("activation", "task", "weight_decay", "l1", "keep_prob", "optimizer"),
    [
        (act, task, wd, l1, kp, "sgd")
        for act, task, (wd, l1), kp in itertools.product(
            ("relu", "tanh", "sigmoid"),
            ("regression", "classification"),
            ((0.0, 0.0), (0.1, 0.0), (0.0, 0.05), (0.1, 0.05)),
            (1.0, 0.6),
        )
    ]
    + [("tanh", "regression", 0.1, 0.05, 0.6, "adamw")],
)
def test_gradients_match_central_differences(
    activation, task, weight_decay, l1, keep_prob, optimizer
):
    X, y = _problem(task)
    model = MLP(
        hidden=(5, 4),
        activation=activation,
        task=task,
        weight_decay=weight_decay,
        l1=l1,
        keep_prob=keep_prob,
        input_keep_prob=0.8 if keep_prob < 1 else 1.0,
        optimizer=optimizer,
        max_epochs=1,
        lr=1e-3,
        seed=3,
    ).fit(X, y)
    # biases away from zero so that relu units are active on some rows and idle on others
    for b in model.biases_:
        b += np.random.default_rng(1).normal(0, 0.3, b.shape)
    Y = _onehot(model, y)
    masks = model._dropout_masks(len(X), np.random.default_rng(7))  # held fixed throughout
    _, grads = model.loss_and_gradients(X, Y, masks)
    numeric = _numeric_gradient(
        lambda: model.loss_and_gradients(X, Y, masks)[0], model.parameters()
    )
    assert _max_relative_error(grads, numeric) < 1e-6


def test_gradient_check_detects_a_wrong_gradient():
    """The check above can fail: a deliberately wrong weight-decay gradient is caught."""
    X, y = _problem("regression")
    model = MLP(hidden=(5,), weight_decay=0.1, max_epochs=1, seed=3).fit(X, y)
    _, grads = model.loss_and_gradients(X, y)
    grads[0] = grads[0] + 0.1 * model.weights_[0]  # decay twice
    numeric = _numeric_gradient(lambda: model.loss_and_gradients(X, y)[0], model.parameters())
    assert _max_relative_error(grads, numeric) > 1e-3


def _numpy_forward(model: MLP, X: np.ndarray) -> np.ndarray:
    """An independent forward pass written from the definition, for comparison."""
    A = X
    for i, (W, b) in enumerate(zip(model.weights_, model.biases_, strict=True)):
        Z = A @ W + b
        A = Z if i == len(model.weights_) - 1 else np.maximum(Z, 0)
    return A


def test_dropout_preserves_the_mean_activation_and_is_identity_at_inference():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3))
    y = rng.normal(size=4000)
    model = MLP(hidden=(50,), keep_prob=0.5, max_epochs=2, seed=0).fit(X, y)
    masks = model._dropout_masks(len(X), np.random.default_rng(1))
    acts, inputs, _, _ = model._forward(X, masks)
    clean, dropped = acts[1], inputs[1]
    assert 0.45 < (dropped == 0).mean() < 0.55 + (clean == 0).mean()
    # mean of the dropped-out activations = mean of the clean ones, within 4 standard errors
    stderr = dropped.std() / np.sqrt(dropped.size)
    assert abs(dropped.mean() - clean.mean()) < 4 * stderr
    # inference: no masks, deterministic, equal to a plain forward pass
    np.testing.assert_allclose(model.predict(X), _numpy_forward(model, X)[:, 0], rtol=1e-12)


def test_strong_l1_gives_exact_zeros_monotonically():
    X, y = _problem("regression", n=80, d=6)
    sparsity = [
        MLP(hidden=(32,), l1=l1, lr=0.05, max_epochs=300, seed=0).fit(X, y).sparsity()
        for l1 in (0.0, 0.01, 0.05, 0.2)
    ]
    assert sparsity[0] == 0.0
    assert sparsity == sorted(sparsity) and sparsity[-1] > 0.5


def test_the_proximal_l1_step_never_moves_a_weight_across_zero():
    """Soft-thresholding sets weights within the threshold to exactly 0 and shrinks the rest
    toward 0 without flipping a sign, where a subgradient step would cross zero."""
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.1, (20, 30))
    before = W.copy()
    prox_l1([W], 0.05)
    assert np.all((np.sign(W) == np.sign(before)) | (W == 0))
    np.testing.assert_array_equal(W == 0, np.abs(before) <= 0.05)
    np.testing.assert_allclose(np.abs(W[W != 0]), np.abs(before[W != 0]) - 0.05)
    subgradient = before - 0.05 * np.sign(before)  # the control: it crosses zero
    assert np.any(np.sign(subgradient) == -np.sign(before))


def test_one_proximal_l1_update_by_hand():
    W = [np.array([[0.3, -0.05, 0.02]])]
    prox_l1(W, 0.04)  # lr 0.1 * l1 0.4
    np.testing.assert_allclose(W[0], [[0.26, -0.01, 0.0]], atol=1e-15)


def test_one_adam_step_by_hand():
    """Step 1: m = (1-b1) g, v = (1-b2) g^2, so m_hat = g and v_hat = g^2, and the step is
    lr * g / (|g| + eps_hat), eps_hat = eps / sqrt(1-b2) (the correction folded into the step)."""
    p, g = np.array([0.5, -0.2]), np.array([0.2, -3.0])
    adam = Adam([p], lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    adam.step([p], [g])
    np.testing.assert_allclose(adam.m[0], 0.1 * g)
    np.testing.assert_allclose(adam.v[0], 0.001 * g * g)
    eps_hat = 1e-8 / np.sqrt(0.001)
    np.testing.assert_allclose(p, [0.5, -0.2] - 0.1 * g / (np.abs(g) + eps_hat), rtol=1e-12)
    # step 2 with the same gradient: m_hat = g and v_hat = g^2 again, eps_hat over 1 - b2^2
    first = 0.1 * g / (np.abs(g) + eps_hat)
    adam.step([p], [g])
    second = 0.1 * g / (np.abs(g) + 1e-8 / np.sqrt(1 - 0.999**2))
    np.testing.assert_allclose(p, [0.5, -0.2] - first - second, rtol=1e-12, atol=1e-15)


def test_one_adamw_step_by_hand_decays_weights_but_not_biases():
    W, b = np.array([0.5]), np.array([0.5])
    g = np.array([0.2])
    adamw = AdamW([W, b], weight_decay=0.5, n_decayed=1, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8)
    adamw.step([W, b], [g, g.copy()])
    adam_step = 0.1 * 0.2 / (0.2 + 1e-8 / np.sqrt(0.001))  # lr * sign(g), up to eps
    np.testing.assert_allclose(W, 0.5 * (1 - 0.1 * 0.5) - adam_step, rtol=1e-12)  # decay first
    np.testing.assert_allclose(b, 0.5 - adam_step, rtol=1e-12)


def test_one_momentum_step_by_hand():
    p, g = np.array([1.0]), np.array([2.0])
    momentum = Momentum([p], lr=0.1, momentum=0.9)
    momentum.step([p], [g])
    momentum.step([p], [g])  # v1 = -0.2; v2 = 0.9 * -0.2 - 0.2 = -0.38
    np.testing.assert_allclose(p, 1.0 - 0.2 - 0.38)


def test_weight_decay_shrinks_the_weights_monotonically():
    X, y = _problem("regression", n=80, d=6)
    norms = [
        MLP(hidden=(32,), weight_decay=wd, lr=0.05, max_epochs=300, seed=0).fit(X, y).weight_norm()
        for wd in (0.0, 0.01, 0.1, 1.0)
    ]
    assert norms == sorted(norms, reverse=True) and norms[-1] < 0.5 * norms[0]


def test_adamw_decays_weights_apart_from_the_gradient():
    X, y = _problem("regression", n=80, d=6)
    plain = MLP(hidden=(32,), optimizer="adam", lr=0.01, max_epochs=200, seed=0).fit(X, y)
    decoupled = MLP(
        hidden=(32,), optimizer="adamw", weight_decay=1.0, lr=0.01, max_epochs=200, seed=0
    ).fit(X, y)
    assert decoupled.weight_norm() < 0.7 * plain.weight_norm()


def test_max_norm_caps_every_incoming_weight_vector():
    X, y = _problem("regression", n=80, d=6)
    model = MLP(hidden=(32, 16), max_norm=0.5, lr=0.1, max_epochs=100, seed=0).fit(X, y)
    for W in model.weights_:
        assert np.sqrt((W**2).sum(axis=0)).max() <= 0.5 + 1e-12


def test_early_stopping_stops_patience_after_best_and_restores_best_weights():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)  # pure noise: validation soon worsens
    Xv, yv = rng.normal(size=(30, 2)), rng.normal(size=30)
    kwargs = dict(hidden=(64, 64), lr=0.05, optimizer="momentum", max_epochs=2000, seed=1)
    stopped = MLP(patience=7, **kwargs).fit(X, y, Xv, yv)
    best = stopped.best_epoch_
    assert stopped.stopped_epoch_ == best + 7 < 2000
    assert min(stopped.history_["val_loss"]) == stopped.history_["val_loss"][best - 1]
    # the same run cut at the best epoch has the restored weights, so the same predictions
    reference = MLP(**{**kwargs, "max_epochs": best}).fit(X, y, Xv, yv)
    np.testing.assert_array_equal(stopped.predict(Xv), reference.predict(Xv))
    assert stopped.evaluate(Xv, yv)["loss"] == pytest.approx(stopped.best_val_loss_, rel=1e-12)


def test_min_delta_requires_a_real_improvement():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    kwargs = dict(hidden=(16,), lr=0.01, max_epochs=300, patience=5, seed=0)
    loose = MLP(min_delta=0.0, **kwargs).fit(X, y, X, y)
    strict = MLP(min_delta=0.05, **kwargs).fit(X, y, X, y)
    assert strict.stopped_epoch_ < loose.stopped_epoch_


def test_same_seed_same_weights_and_history_bit_for_bit():
    X, y = _problem("classification", n=60)
    kwargs = dict(
        hidden=(8, 8),
        task="classification",
        keep_prob=0.7,
        batch_size=16,
        optimizer="adam",
        lr=0.01,
        max_epochs=20,
    )
    a, b = MLP(seed=5, **kwargs).fit(X, y, X, y), MLP(seed=5, **kwargs).fit(X, y, X, y)
    c = MLP(seed=6, **kwargs).fit(X, y, X, y)
    assert a.history_ == b.history_
    for Wa, Wb in zip(a.weights_, b.weights_, strict=True):
        np.testing.assert_array_equal(Wa, Wb)
    assert a.history_ != c.history_


@pytest.mark.parametrize("activation, factor", [("relu", 6.0), ("tanh", 6.0), ("sigmoid", 2.0)])
def test_glorot_draws_weights_and_biases_uniform_within_scikit_learns_bound(activation, factor):
    """scikit-learn's MLP's initialisation: U(-b, b) with b = sqrt(factor / (fan_in +
    fan_out)) for weights and biases alike; a uniform's variance is b^2 / 3."""
    net = MLP(init="glorot", activation=activation, hidden=(300, 200))
    net._init_weights(100, 5, np.random.default_rng(0))
    for W, b, (fan_in, fan_out) in zip(
        net.weights_, net.biases_, [(100, 300), (300, 200), (200, 5)], strict=True
    ):
        bound = np.sqrt(factor / (fan_in + fan_out))
        assert W.shape == (fan_in, fan_out) and b.shape == (fan_out,)
        assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
        assert np.abs(W).max() > 0.99 * bound  # the whole interval, not a narrower one
        assert W.var() == pytest.approx(bound**2 / 3, rel=0.05)
        assert abs(W.mean()) < 0.05 * bound


def test_he_stays_the_default_and_glorot_starts_smaller_where_inputs_are_many():
    """The seed's He draw is kept unless asked (its figures depend on it); Glorot's first
    layer on 40 inputs and 64 units has sd sqrt(2 / 104) = 0.139 against He's sqrt(2 / 40) =
    0.224, the output layer's biases are not all zero."""
    he, glorot = MLP(hidden=(64,)), MLP(init="glorot", hidden=(64,))
    assert he.init == "he"
    he._init_weights(40, 1, np.random.default_rng(0))
    glorot._init_weights(40, 1, np.random.default_rng(0))
    assert he.weights_[0].std() == pytest.approx(np.sqrt(2 / 40), rel=0.05)
    assert glorot.weights_[0].std() == pytest.approx(np.sqrt(2 / 104), rel=0.05)
    assert not he.biases_[0].any() and glorot.biases_[0].any()


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_optimizer_learns_a_classification_task(optimizer, dtype):
    from pipeline.core import load

    d = load("moons", seed=0, n_samples=400, noise=0.1)
    model = MLP(
        hidden=(32,),
        task="classification",
        optimizer=optimizer,
        lr=0.1 if "sgd" in optimizer else 0.01,
        max_epochs=150,
        batch_size=32,
        seed=0,
        dtype=dtype,
    )
    model.fit(d.X_train, d.y_train, d.X_val, d.y_val)
    assert model.weights_[0].dtype == np.dtype(dtype)
    assert model.history_["val_accuracy"][-1] > 0.9
    assert model.history_["train_loss"][-1] < 0.5 * model.history_["train_loss"][0]
    proba = model.predict_proba(d.X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(model.predict(d.X_test)) <= set(model.classes_)


def test_string_labels_come_back_as_labels():
    X, y = _problem("classification", n=40)
    labels = np.array(["cat", "dog", "eel"])[y]
    model = MLP(hidden=(8,), task="classification", max_epochs=5).fit(X, labels)
    assert set(model.predict(X)) <= {"cat", "dog", "eel"}


def test_on_epoch_sees_every_epoch_and_can_stop_training():
    X, y = _problem("regression")
    seen = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return epoch == 4

    model = MLP(hidden=(4,), max_epochs=50).fit(X, y, X, y, on_epoch=on_epoch)
    assert model.stopped_epoch_ == 4 and len(model.history_["train_loss"]) == 4
    assert seen[0] == (1, ["epoch", "train_loss", "val_loss"])


def test_divergence_raises_with_the_epoch():
    X, y = _problem("regression")
    with pytest.raises(DivergenceError, match="diverged at epoch"):
        MLP(hidden=(64, 64), lr=1e3, max_epochs=100).fit(X, y * 1e3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep_prob": 0.0}, r"keep_prob=0\.0 .*\(0, 1\]"),
        ({"keep_prob": 1.5}, r"keep_prob=1\.5"),
        ({"weight_decay": -1e-3}, r"weight_decay=-0\.001 .*>= 0"),
        ({"l1": float("nan")}, r"l1=nan"),
        ({"patience": -1}, r"patience=-1"),
        ({"hidden": (64, 0)}, r"hidden=\(64, 0\)"),
        ({"activation": "gelu"}, r"activation='gelu' .*relu"),
        ({"init": "xavier"}, r"init='xavier' .*he.*glorot"),
        ({"optimizer": "rmsprop"}, r"optimizer='rmsprop'"),
        ({"lr": 0}, r"lr=0 "),
        ({"batch_size": 0}, r"batch_size=0"),
        ({"dtype": "float16"}, r"dtype='float16'"),
        ({"max_norm": -1.0}, r"max_norm=-1\.0"),
        ({"connect_keep_prob": 0.0}, r"connect_keep_prob=0\.0 .*\(0, 1\]"),
        ({"input_noise": -0.1}, r"input_noise=-0\.1 .*>= 0"),
        ({"mixup_alpha": float("inf")}, r"mixup_alpha=inf .*finite"),
        ({"batch_norm": 1}, r"batch_norm=1 .*true or false"),
        ({"bn_momentum": 0.0}, r"bn_momentum=0\.0"),
        ({"bn_eps": 0.0}, r"bn_eps=0\.0"),
    ],
)
def test_invalid_hyperparameters_name_parameter_value_and_what_is_allowed(kwargs, match):
    X, y = _problem("regression")
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs).fit(X, y)


def test_invalid_inputs_are_explained():
    X, y = _problem("regression")
    with pytest.raises(ValueError, match="different lengths: 12 samples in X, 11 in y"):
        MLP().fit(X, y[:11])
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values .*row 3, column 1"):
        MLP().fit(X_nan, y)
    with pytest.raises(ValueError, match="must be 2-D"):
        MLP().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="patience=3 needs validation data"):
        MLP(patience=3).fit(X, y)
    with pytest.raises(RuntimeError, match="not fitted"):
        MLP().predict(X)


# ---------------------------------------------------------------------------- the chapter's rest
@pytest.mark.parametrize(
    ("activation", "task", "batch_norm", "connect_keep_prob", "keep_prob"),
    [
        ("relu", "regression", True, 1.0, 1.0),
        ("tanh", "classification", True, 1.0, 1.0),
        ("relu", "regression", False, 0.6, 1.0),
        ("sigmoid", "classification", False, 0.7, 1.0),
        ("relu", "classification", True, 0.7, 0.6),  # all three together, masks held fixed
        ("tanh", "regression", True, 0.8, 0.7),
    ],
)
def test_gradients_with_batch_norm_and_dropconnect_match_central_differences(
    activation, task, batch_norm, connect_keep_prob, keep_prob
):
    X, y = _problem(task)
    model = MLP(
        hidden=(5, 4),
        activation=activation,
        task=task,
        batch_norm=batch_norm,
        connect_keep_prob=connect_keep_prob,
        keep_prob=keep_prob,
        weight_decay=0.05,
        max_epochs=1,
        lr=1e-3,
        seed=3,
    ).fit(X, y)
    rng = np.random.default_rng(5)
    for a in model.biases_ + model.gammas_ + model.betas_:  # away from their initial values
        a += rng.normal(0, 0.3, a.shape)
    Y = _onehot(model, y)
    masks = model._dropout_masks(len(X), np.random.default_rng(7))
    weight_masks = model._connect_masks(np.random.default_rng(8))
    _, grads = model.loss_and_gradients(X, Y, masks, weight_masks)
    assert len(grads) == len(model.parameters()) == 6 + (4 if batch_norm else 0)
    numeric = _numeric_gradient(
        lambda: model.loss_and_gradients(X, Y, masks, weight_masks)[0], model.parameters()
    )
    assert _max_relative_error(grads, numeric) < 1e-6


def test_batch_norm_normalises_in_training_and_folds_its_running_statistics_at_inference():
    X, y = _problem("regression", n=64, d=4)
    model = MLP(hidden=(8, 6), batch_norm=True, lr=0.05, max_epochs=30, seed=0).fit(X, y)
    acts, inputs, norms, _ = model._forward(X)  # batch statistics: mean 0, variance 1 per unit
    for norm in norms[:-1]:
        np.testing.assert_allclose(norm.Z_hat.mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(norm.Z_hat.var(axis=0), 1, atol=1e-3)
    assert norms[-1] is None  # not on the output layer
    # inference from the definition, with the running statistics
    A = X
    for i, (W, b) in enumerate(zip(model.weights_, model.biases_, strict=True)):
        Z = A @ W
        if i < len(model.gammas_):
            std = np.sqrt(model.running_vars_[i] + model.bn_eps)
            A = np.maximum(
                (Z - model.running_means_[i]) / std * model.gammas_[i] + model.betas_[i], 0
            )
        else:
            A = Z + b
    np.testing.assert_allclose(model.predict(X), A, rtol=1e-10)
    assert not np.allclose(model.running_vars_[0], 1)  # the running statistics were updated


def test_batch_norm_running_statistics_follow_the_momentum_rule():
    X, y = _problem("regression", n=40, d=3)
    model = MLP(hidden=(5,), batch_norm=True, bn_momentum=0.25, max_epochs=1, lr=1e-9, seed=0)
    model.fit(X, y)
    Z = X @ model.weights_[0]  # lr ~ 0: the weights are still the ones the epoch saw
    np.testing.assert_allclose(model.running_means_[0], 0.25 * Z.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        model.running_vars_[0], 0.75 + 0.25 * Z.var(axis=0, ddof=1), rtol=1e-6
    )


def test_early_stopping_restores_batch_norm_state_of_the_best_epoch():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    Xv, yv = rng.normal(size=(30, 2)), rng.normal(size=30)
    kwargs = dict(hidden=(32,), batch_norm=True, lr=0.05, batch_size=10, max_epochs=500, seed=1)
    stopped = MLP(patience=5, **kwargs).fit(X, y, Xv, yv)
    best = stopped.best_epoch_
    assert stopped.stopped_epoch_ == best + 5 < 500
    reference = MLP(**{**kwargs, "max_epochs": best}).fit(X, y, Xv, yv)
    for name in MLP.STATE:
        for a, b in zip(getattr(stopped, name), getattr(reference, name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert stopped.evaluate(Xv, yv)["loss"] == pytest.approx(stopped.best_val_loss_, rel=1e-12)


def test_batch_norm_model_saves_and_loads_and_older_files_still_load(tmp_path):
    X, y = _problem("classification", n=40)
    model = MLP(hidden=(6,), task="classification", batch_norm=True, max_epochs=20).fit(X, y)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(
        MLP.load(tmp_path / "m.npz").predict_proba(X), model.predict_proba(X)
    )
    plain = MLP(hidden=(6,), max_epochs=5).fit(X, y.astype(float))
    arrays = {f"W{i}": W for i, W in enumerate(plain.weights_)}  # the format before batch norm
    arrays |= {f"b{i}": b for i, b in enumerate(plain.biases_)}
    import json

    params = {k: v for k, v in plain.get_params().items() if k in {"hidden", "max_epochs"}}
    np.savez(tmp_path / "old.npz", params=np.array(json.dumps(params)), **arrays)
    np.testing.assert_array_equal(MLP.load(tmp_path / "old.npz").predict(X), plain.predict(X))


def test_mc_average_of_a_linear_output_equals_weight_scaling_in_expectation():
    """Dropout on the last hidden layer feeding a linear output: the mean over masks is the
    weight-scaled network exactly, so the MC average converges to predict() (closed form)."""
    X, y = _problem("regression", n=20, d=3)
    y = y[:, 0]
    for kwargs in ({"keep_prob": 0.5, "hidden": (16,)}, {"connect_keep_prob": 0.5, "hidden": ()}):
        model = MLP(max_epochs=50, lr=0.05, seed=0, **kwargs).fit(X, y)
        single = np.stack([model.predict(X, mc_samples=1) for _ in range(1)])
        mc = model.predict(X, mc_samples=4000)
        spread = np.abs(single - model.predict(X)).max()
        assert spread > 1e-3  # one stochastic pass differs from weight scaling
        np.testing.assert_allclose(mc, model.predict(X), atol=4 * spread / np.sqrt(4000) + 1e-9)
    plain = MLP(hidden=(8,), max_epochs=20, seed=0).fit(X, y)  # nothing stochastic: equal
    np.testing.assert_allclose(plain.predict(X, mc_samples=3), plain.predict(X), rtol=1e-12)
    with pytest.raises(ValueError, match="mc_samples=0"):
        plain.predict(X, mc_samples=0)


def test_mc_evaluate_scores_the_averaged_prediction():
    X, y = _problem("classification", n=60)
    model = MLP(hidden=(16,), task="classification", keep_prob=0.5, max_epochs=50, seed=0)
    model.fit(X, y)
    probs = model.predict_proba(X, mc_samples=20)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    expected = -np.log(probs[np.arange(len(y)), np.searchsorted(model.classes_, y)]).mean()
    assert model.evaluate(X, y, mc_samples=20)["loss"] == pytest.approx(expected, rel=1e-12)


def test_input_noise_has_the_asked_scale_and_mixup_mixes_inputs_and_targets_alike():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2)) * [1.0, 10.0]
    w = np.array([[2.0], [-0.5]])
    model = MLP(input_noise=0.3, max_epochs=1, seed=0).fit(X, X @ w)
    noisy, _ = model._augment(X, X @ w, np.random.default_rng(1))
    np.testing.assert_allclose((noisy - X).std(axis=0), 0.3 * X.std(axis=0), rtol=0.05)
    model = MLP(mixup_alpha=0.4, max_epochs=1, seed=0).fit(X, X @ w)
    mixed, targets = model._augment(X, X @ w, np.random.default_rng(1))
    assert not np.allclose(mixed, X)
    np.testing.assert_allclose(targets, mixed @ w, rtol=1e-12)  # a linear target stays exact
    onehot = np.eye(3)[rng.integers(0, 3, 2000)]
    _, soft = model._augment(X, onehot, np.random.default_rng(2))
    np.testing.assert_allclose(soft.sum(axis=1), 1.0)


def test_new_options_change_training_only_when_on():
    X, y = _problem("regression", n=40)
    base = MLP(hidden=(8,), keep_prob=0.7, batch_size=8, max_epochs=20, seed=0).fit(X, y)
    for option in ({"connect_keep_prob": 0.8}, {"input_noise": 0.1}, {"mixup_alpha": 0.2}):
        on = MLP(hidden=(8,), keep_prob=0.7, batch_size=8, max_epochs=20, seed=0, **option)
        assert not np.array_equal(on.fit(X, y).weights_[0], base.weights_[0]), option


def test_mc_losses_read_one_run_of_passes_at_each_checkpoint():
    X, y = _problem("classification", n=60)
    model = MLP(hidden=(16,), task="classification", keep_prob=0.5, max_epochs=30, seed=0)
    model.fit(X, y)
    curve = model.mc_losses(X, y, (1, 3, 10))
    for t, loss in curve.items():  # the same first T passes as a separate evaluation
        assert loss == pytest.approx(model.evaluate(X, y, mc_samples=t)["loss"], rel=1e-12)
    with pytest.raises(ValueError, match="checkpoints"):
        model.mc_losses(X, y, (0, 3))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_thinned_scores_equal_the_training_forward_pass_with_the_same_masks(activation):
    # the Monte-Carlo passes take the inference path (folded batch norm, no kept activations):
    # the same numbers as the training forward pass with running statistics and the same masks
    X, y = _problem("classification", n=50, d=4)
    model = MLP(
        hidden=(16, 8),
        task="classification",
        activation=activation,
        keep_prob=0.7,
        input_keep_prob=0.8,
        connect_keep_prob=0.9,
        batch_norm=True,
        max_epochs=20,
        batch_size=10,
        seed=0,
    ).fit(X, y)
    rng = np.random.default_rng(3)
    masks, weight_masks = model._dropout_masks(len(X), rng), model._connect_masks(rng)
    _, _, _, expected = model._forward(X, masks, weight_masks, batch_stats=False)
    np.testing.assert_allclose(model._thinned_scores(X, masks, weight_masks), expected, rtol=1e-10)
    assert not np.allclose(model._thinned_scores(X, None, None), expected)  # the masks matter
