"""The ensemble a study may deliver: the average of networks of one configuration trained from
different seeds, checked against the average of its members' outputs computed by hand."""

import numpy as np
import pytest

from pipeline.core import MLP, Ensemble, load, load_network


def _members(name: str, seeds=(1, 2, 3)) -> tuple:
    d = load(name)
    return d, [
        MLP(hidden=(8,), task=d.task, max_epochs=30, seed=s).fit(d.X_train, d.y_train)
        for s in seeds
    ]


def test_a_classifiers_ensemble_averages_its_members_probabilities():
    d, members = _members("wine")
    ensemble = Ensemble(members)
    by_hand = np.mean([m.predict_proba(d.X_test) for m in members], axis=0)
    assert np.allclose(ensemble.predict_proba(d.X_test), by_hand, rtol=0, atol=1e-15)
    assert np.array_equal(ensemble.predict(d.X_test), members[0].classes_[by_hand.argmax(1)])
    picked = by_hand[np.arange(len(d.y_test)), np.searchsorted(members[0].classes_, d.y_test)]
    tested = ensemble.evaluate(d.X_test, d.y_test)
    assert tested["loss"] == pytest.approx(-np.log(picked).mean(), rel=1e-12)
    assert tested["accuracy"] == np.mean(ensemble.predict(d.X_test) == d.y_test)
    # the members differ (their seeds), so the average is not any one of them
    assert not np.allclose(members[0].predict_proba(d.X_test), by_hand)


def test_a_regressors_ensemble_averages_its_members_predictions():
    d, members = _members("diabetes")
    ensemble = Ensemble(members)
    by_hand = np.mean([m.predict(d.X_test) for m in members], axis=0)
    assert np.allclose(ensemble.predict(d.X_test), by_hand, rtol=0, atol=1e-15)
    mse = np.mean((by_hand - np.ravel(d.y_test)) ** 2)
    assert ensemble.evaluate(d.X_test, d.y_test)["loss"] == pytest.approx(mse, rel=1e-12)
    # averaging cannot be worse than the members' mean squared error (Jensen)
    assert mse <= np.mean([m.evaluate(d.X_test, d.y_test)["loss"] for m in members])


def test_an_ensemble_saves_and_loads_back_predicting_the_same(tmp_path):
    d, members = _members("wine")
    ensemble = Ensemble(members)
    ensemble.save(tmp_path / "e.npz")
    members[0].save(tmp_path / "m.npz")
    back, single = load_network(tmp_path / "e.npz"), load_network(tmp_path / "m.npz")
    assert isinstance(back, Ensemble) and len(back.members) == 3 and isinstance(single, MLP)
    assert np.array_equal(back.predict_proba(d.X_test), ensemble.predict_proba(d.X_test))
    assert back.get_params()["members"] == 3 and back.get_params()["hidden"] == (8,)


def test_networks_of_other_classes_or_tasks_make_no_ensemble():
    _, wine = _members("wine", seeds=(1,))
    _, iris = _members("iris", seeds=(1,))
    _, diabetes = _members("diabetes", seeds=(1,))
    with pytest.raises(ValueError, match="share their task, inputs and classes"):
        Ensemble([*wine, *iris])
    with pytest.raises(ValueError, match="share their task, inputs and classes"):
        Ensemble([*wine, *diabetes])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])
