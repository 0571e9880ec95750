"""The study's plots read at MLflow's preview size: labels that do not overlap, our objective's
name, every trial drawn."""

import itertools

import numpy as np
import optuna
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from pipeline.analysis import plots

PARAMS = ["keep_prob", "weight_decay", "l1", "patience", "lr", "activation"]


@pytest.fixture(scope="module")
def study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(t):
        k = t.suggest_float("keep_prob", 0.3, 1.0)
        w = t.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
        t.suggest_float("l1", 1e-7, 1e-2, log=True)
        t.suggest_int("patience", 0, 100, step=10)
        t.suggest_float("lr", 1e-3, 1e-1, log=True)
        t.suggest_categorical("activation", ["relu", "tanh"])
        for epoch in range(1, 6):
            t.report(1.0 / epoch + k, epoch)
        return (k - 0.8) ** 2 + abs(np.log10(w) + 3) * 0.01

    s.optimize(objective, n_trials=150)  # the default sweep's budget
    return s


def _boxes(fig, texts):
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts if t.get_text()]


def test_parallel_coordinates_label_each_axis_once_without_overlap(study):
    fig = plots.parallel_coordinates(study, PARAMS, "final_val_loss")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    labels = ax.get_xticklabels()
    assert [t.get_text().split("\n")[0] for t in labels] == PARAMS
    assert "(log)" in labels[1].get_text() and "{relu, tanh}" in labels[5].get_text()
    for a, b in itertools.combinations(_boxes(fig, labels), 2):
        assert not a.overlaps(b), (a, b)
    assert len(ax.lines) == len(study.trials) + len(PARAMS)  # a line per trial, an axis each
    assert fig.axes[1].get_ylabel() == "final_val_loss"


def test_study_figures_are_named_by_the_objective_and_written(study, tmp_path):
    written = plots.study_figures(study, PARAMS, tmp_path, "final_val_loss")
    names = {p.rsplit("/", 1)[1] for p in written}
    assert {
        "optimization_history.png",
        "intermediate_values.png",
        "parallel_coordinate.png",
        "slice.png",
        "param_importances.png",
        "contour_keep_prob_weight_decay.png",
    } == names
    fig = plots.intermediate_values(study, "final_val_loss")
    assert len(fig.axes[0].get_legend().get_texts()) == 2  # by state, not one entry per trial


def test_diverging_trials_set_no_scale_and_break_no_plot(tmp_path):
    s = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for number in range(12):
        t = s.ask({"keep_prob": optuna.distributions.FloatDistribution(0.3, 1.0)})
        if number % 4 == 3:  # diverging: huge, then non-finite, values reported
            for epoch, value in enumerate([1.0, 1e180, float("inf")], start=1):
                t.report(value, epoch)
            s.tell(t, state=optuna.trial.TrialState.FAIL)
            continue
        for epoch in range(1, 4):
            t.report(0.5 / epoch + t.params["keep_prob"], epoch)
        s.tell(t, t.params["keep_prob"])
    fig = plots.intermediate_values(s, "final_val_loss")
    assert fig.axes[0].get_ylim()[1] < 10  # set by the bulk, not by 1e180
    written = plots.study_figures(s, ["keep_prob"], tmp_path, "final_val_loss")
    assert str(tmp_path / "intermediate_values.png") in written
