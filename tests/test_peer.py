"""The peer row: scikit-learn's MLP on the study's splits, checked against scikit-learn's own
metrics on the same fits."""

import numpy as np
import pytest
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.neural_network import MLPClassifier, MLPRegressor

from pipeline.core import load
from pipeline.search import DEFAULT, TUNED_ALPHA
from pipeline.search._peer import ALPHAS, peer_results


def test_the_regression_peer_is_scikit_learns_mlp_measured_as_the_project_measures():
    d = load("sine", seed=1)
    rows = peer_results(d, (16,), "val_loss", seed=3)
    direct = MLPRegressor(hidden_layer_sizes=(16,), random_state=3, max_iter=200)
    with pytest.warns(Warning):  # scikit-learn's 200 iterations do not converge here
        direct.fit(d.X_train, d.y_train[:, 0])
    assert rows[DEFAULT]["alpha"] == direct.alpha
    expected = mean_squared_error(d.y_test[:, 0], direct.predict(d.X_test))
    assert rows[DEFAULT]["test_loss"] == pytest.approx(expected, rel=1e-12)
    # the chosen alpha is the one with the lowest validation loss among the grid
    chosen = rows[TUNED_ALPHA]
    assert chosen["alpha"] in ALPHAS
    assert chosen["final_val_loss"] <= rows[DEFAULT]["final_val_loss"]


def test_the_classification_peer_chooses_alpha_by_the_studys_metric():
    d = load("breast_cancer", seed=0)
    rows = peer_results(d, (8,), "val_accuracy", seed=0)
    direct = MLPClassifier(hidden_layer_sizes=(8,), random_state=0).fit(d.X_train, d.y_train)
    probs = direct.predict_proba(d.X_test)
    assert rows[DEFAULT]["test_loss"] == pytest.approx(log_loss(d.y_test, probs), rel=1e-9)
    assert rows[DEFAULT]["test_accuracy"] == pytest.approx(direct.score(d.X_test, d.y_test))
    assert rows[TUNED_ALPHA]["final_val_accuracy"] >= rows[DEFAULT]["final_val_accuracy"]
    assert np.isfinite(rows[TUNED_ALPHA]["test_accuracy"])


def test_with_folds_the_peer_chooses_and_tests_over_the_studys_folds():
    from pipeline.core import fold_splits

    d = load("breast_cancer", seed=0)
    rows = peer_results(d, (8,), "val_loss", seed=0, folds=3)
    val, test = [], []
    for split in fold_splits(d, 3, seed=0):  # the study's folds, fitted by hand
        direct = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
        direct.fit(split.X_train, split.y_train)
        val.append(log_loss(split.y_val, direct.predict_proba(split.X_val)))
        test.append(direct.score(d.X_test, d.y_test))
    assert rows[DEFAULT]["final_val_loss"] == pytest.approx(np.mean(val), rel=1e-9)
    assert rows[DEFAULT]["test_accuracy"] == pytest.approx(np.mean(test), rel=1e-12)
    # switched off, the peer is measured on the one validation split, which differs
    single = peer_results(d, (8,), "val_loss", seed=0)
    assert single[DEFAULT]["final_val_loss"] != pytest.approx(np.mean(val), rel=1e-6)
