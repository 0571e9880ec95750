"""The peer rows: scikit-learn's MLP as a user would run it (GridSearchCV over alpha on the
study's folds, refitted on training + validation), checked against the same search done by
hand with scikit-learn's own metrics."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error
from sklearn.neural_network import MLPClassifier, MLPRegressor

from pipeline.core import fold_splits, load, pooled, refit_split
from pipeline.search import DEFAULT, TUNED_ALPHA
from pipeline.search._peer import ALPHAS, TUNED_DEFAULT_SIZE, peer_results


def _quietly(fit, *args):
    """A fit with scikit-learn's convergence warnings silenced, as the peer does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(*args)


def test_the_grid_spans_1e_5_to_10():
    assert min(ALPHAS) == pytest.approx(1e-5) and max(ALPHAS) == pytest.approx(10)
    assert 1e-4 in ALPHAS  # scikit-learn's default among them


def test_the_defaults_row_is_scikit_learns_mlp_as_it_comes_fitted_on_all_non_test_data():
    d = load("sine", seed=1)
    rows = peer_results(d, (16,), "val_loss", seed=3)
    X, y = pooled(d)
    direct = MLPRegressor(random_state=3)  # (100,), alpha 1e-4
    with pytest.warns(Warning):  # scikit-learn's 200 iterations do not converge here
        direct.fit(X, y[:, 0])
    expected = mean_squared_error(d.y_test[:, 0], direct.predict(d.X_test))
    assert rows[DEFAULT]["alpha"] == direct.alpha
    assert rows[DEFAULT]["test_loss"] == pytest.approx(expected, rel=1e-12)
    # without folds its validation figure is the study's split: fitted on training only
    alone = MLPRegressor(random_state=3)
    with pytest.warns(Warning):
        alone.fit(d.X_train, d.y_train[:, 0])
    val = mean_squared_error(d.y_val[:, 0], alone.predict(d.X_val))
    assert rows[DEFAULT]["final_val_loss"] == pytest.approx(val, rel=1e-9)
    assert set(rows) == {DEFAULT, TUNED_ALPHA, TUNED_DEFAULT_SIZE}


def test_alpha_is_chosen_on_the_studys_folds_by_its_metric_then_refitted():
    d = load("breast_cancer", seed=0)
    rows = peer_results(d, (8,), "val_loss", seed=0, folds=3)
    by_hand = {}
    for alpha in ALPHAS:  # the study's folds, fitted by hand
        losses = []
        for split in fold_splits(d, 3, seed=0):
            model = MLPClassifier(hidden_layer_sizes=(8,), alpha=alpha, random_state=0)
            _quietly(model.fit, split.X_train, split.y_train)
            losses.append(log_loss(split.y_val, model.predict_proba(split.X_val)))
        by_hand[alpha] = np.mean(losses)
    chosen = min(by_hand, key=by_hand.get)
    row = rows[TUNED_ALPHA]
    assert row["alpha"] == pytest.approx(chosen)
    assert row["final_val_loss"] == pytest.approx(by_hand[chosen], rel=1e-6)
    # refitted on every non-test row, its preprocessing fitted on those rows too
    every = refit_split(d)
    refit = MLPClassifier(hidden_layer_sizes=(8,), alpha=chosen, random_state=0)
    _quietly(refit.fit, every.X_train, every.y_train)
    tested = every.X_test
    assert row["test_accuracy"] == pytest.approx(accuracy_score(d.y_test, refit.predict(tested)))
    assert row["test_loss"] == pytest.approx(log_loss(d.y_test, refit.predict_proba(tested)))


def test_the_default_size_row_is_left_out_when_the_study_uses_that_size():
    d = load("iris", seed=0)
    rows = peer_results(d, (100,), "val_accuracy", seed=0)
    assert set(rows) == {DEFAULT, TUNED_ALPHA}
    assert 0 <= rows[TUNED_ALPHA]["final_val_accuracy"] <= 1


def test_for_a_study_that_delivers_its_trials_network_the_peer_trains_on_the_training_split():
    """deliver = "trial": the study's model saw the training split only, and so does the
    peer's (alpha still chosen on the validation split)."""
    d = load("sine", seed=1)
    rows = peer_results(d, (16,), "val_loss", seed=3, refit=False)
    row = rows[TUNED_ALPHA]
    alone = MLPRegressor(hidden_layer_sizes=(16,), alpha=row["alpha"], random_state=3)
    _quietly(alone.fit, d.X_train, d.y_train[:, 0])
    expected = mean_squared_error(d.y_test[:, 0], alone.predict(d.X_test))
    assert row["test_loss"] == pytest.approx(expected, rel=1e-12)
    refitted = peer_results(d, (16,), "val_loss", seed=3)[TUNED_ALPHA]
    assert refitted["alpha"] == row["alpha"] and refitted["test_loss"] != row["test_loss"]


def test_on_a_table_the_peer_is_a_pipeline_whose_preprocessing_is_fitted_in_each_fold(tmp_path):
    """The peer sees the table as the study does: text columns one-hot, gaps imputed, fitted
    on each fold's training rows (a scikit-learn Pipeline in GridSearchCV), so its figures are
    those of an MLP fitted on the study's own fold splits."""
    from tables import mixed_table

    mixed_table(150, seed=1).to_csv(tmp_path / "t.csv", index=False)
    d = load("csv", path=str(tmp_path / "t.csv"), target="species")
    row = peer_results(d, (8,), "val_loss", seed=0, folds=3)[TUNED_ALPHA]
    losses = []
    for split in fold_splits(d, 3, seed=0):
        model = MLPClassifier(hidden_layer_sizes=(8,), alpha=row["alpha"], random_state=0)
        _quietly(model.fit, split.X_train, split.y_train)
        losses.append(log_loss(split.y_val, model.predict_proba(split.X_val)))
    assert row["final_val_loss"] == pytest.approx(np.mean(losses), rel=1e-9)
