"""One trial on an in-memory Optuna study, tracking off: states, reasons, the objective, and how
fixed, searched and baseline values combine into the network that is trained."""

import math
import time

import optuna
import pytest
from e2e import SMOKE

from pipeline.config import load_sweep, model_kwargs, parse_override, trial_values
from pipeline.core import load
from pipeline.names import COMPLETE, FAILED, INTERRUPTED, INTERRUPTED_REASON, PRUNED
from pipeline.search import build_model, run_trial
from pipeline.search._study import baselines, enqueue_baselines, suggest


@pytest.fixture(scope="module")
def sine():
    return load("sine", seed=1)


def _cfg(*overrides: str):
    return load_sweep(SMOKE, [parse_override(o) for o in ("fixed.max_epochs=20", *overrides)])


def _study(cfg, pruner=None):
    return optuna.create_study(sampler=cfg.sampler_for(0), pruner=pruner or cfg.make_pruner())


def test_a_complete_trial_returns_its_objective_history_and_final_metrics(sine):
    cfg = _cfg()
    trial = _study(cfg).ask()
    result = run_trial(trial, cfg, sine)
    assert result.state == COMPLETE and result.reason is None
    assert len(result.history["val_loss"]) == result.model.stopped_epoch_ <= 20
    # the objective is the final validation loss of the returned network, measured anew
    assert result.value == pytest.approx(result.model.evaluate(sine.X_val, sine.y_val)["loss"])
    assert result.metrics["final_val_loss"] == result.value
    gap = result.metrics["final_val_loss"] - result.metrics["final_train_loss"]
    assert result.metrics["gen_gap"] == pytest.approx(gap)
    assert set(trial.params) <= set(result.hyperparameters) and result.metrics["train_time"] > 0


def test_a_trial_the_pruner_stops_is_pruned_with_its_epoch(sine):
    cfg = _cfg()
    always = optuna.pruners.ThresholdPruner(upper=0.0)  # every validation loss is above 0
    result = run_trial(_study(cfg, always).ask(), cfg, sine)
    assert result.state == PRUNED and result.value is None
    assert result.reason.startswith(f"pruned at epoch {cfg.report_every}:")
    assert result.metrics["stopped_epoch"] == cfg.report_every


def test_a_diverging_trial_fails_with_the_reason(sine):
    cfg = _cfg("fixed.lr=1000.0")
    result = run_trial(_study(cfg).ask(), cfg, sine)
    assert result.state == FAILED and "diverged" in result.reason and result.value is None


def test_a_stop_request_interrupts_the_trial(sine):
    cfg = _cfg()
    result = run_trial(_study(cfg).ask(), cfg, sine, stop_requested=lambda: True)
    assert result.state == INTERRUPTED and result.reason == INTERRUPTED_REASON


def test_baselines_override_searched_values_and_turn_regularisers_off(sine):
    cfg = _cfg()
    study = _study(cfg)
    enqueue_baselines(study, cfg)
    values = trial_values(cfg, {}, baselines(cfg)["unregularised"])
    assert values["keep_prob"] == 1.0 and values["weight_decay"] == 0.0 and values["l1"] == 0.0
    first = run_trial(study.ask(), cfg, sine)  # the unregularised baseline is queued first
    assert first.hyperparameters["weight_decay"] == 0.0
    assert first.model.keep_prob == 1.0 and first.model.patience == 0
    chapter = run_trial(study.ask(), cfg, sine)
    assert chapter.model.hidden == (64, 64) and chapter.model.max_epochs == 500
    assert chapter.model.seed == 42 and chapter.model.batch_size is None


def test_width_and_depth_build_hidden_and_a_baseline_hidden_becomes_width_and_depth(tmp_path):
    path = tmp_path / "wd.toml"
    path.write_text(
        "[study]\nname = 'wd'\nn_trials = 2\n[data]\nname = 'sine'\n[fixed]\ndepth = 3\n"
        "[search]\nwidth = { type = 'categorical', choices = [8, 16] }\n"
    )
    cfg = load_sweep(path)
    model = build_model(trial_values(cfg, {"width": 8}), "regression")
    assert model.hidden == (8, 8, 8)
    chapter = baselines(cfg)["chapter"]
    assert "hidden" not in chapter and (chapter["width"], chapter["depth"]) == (64, 2)
    assert build_model(trial_values(cfg, {"width": 8}, chapter), "regression").hidden == (64, 64)
    # zero means "off" where the MLP takes None
    kwargs = model_kwargs({"batch_size": 0, "max_norm": 0, "hidden": [4]})
    assert kwargs == {"batch_size": None, "max_norm": None, "hidden": (4,)}


def test_when_a_baseline_wins_the_searchs_own_best_is_also_tested(tmp_path):
    import optuna

    from pipeline.search._evaluation import TUNED, evaluate_on_test

    cfg = load_sweep(
        SMOKE,
        [parse_override(o) for o in ("fixed.max_epochs=20", "study.n_jobs=1")],
    )
    study = optuna.create_study()
    enqueue_baselines(study, cfg)
    d = load("sine", seed=1)
    for _ in range(5):  # the three baselines, then two of the search's own
        trial = study.ask()
        result = run_trial(trial, cfg, d)
        study.tell(trial, result.value)
    tested = evaluate_on_test(cfg, study, d, tmp_path).tests
    own = [t for t in study.trials if "baseline" not in t.user_attrs]
    # the chapter's baseline trains 500 epochs, the search's trials 20: a baseline wins
    assert study.best_trial.user_attrs["baseline"] == "chapter"
    assert tested["best"]["trial"] == study.best_trial.number
    assert tested[TUNED]["trial"] == min(own, key=lambda t: t.value).number
    assert tested[TUNED]["final_val_loss"] == pytest.approx(min(t.value for t in own))


def _history_reports(result, cfg):
    """What the trial should have reported: its metric every ``report_every`` epochs."""
    epochs, values = result.history["epoch"], result.history[cfg.study.metric]
    return {e: v for e, v in zip(epochs, values, strict=True) if e % cfg.report_every == 0}


def test_reports_no_pruner_waits_for_are_all_written_in_order_before_the_trial_ends(sine):
    cfg = _cfg()
    # a pruner that never prunes: the reports go from a thread of their own
    study = _study(cfg, optuna.pruners.NopPruner())
    write = study._storage.set_trial_intermediate_value

    def slow(*args):  # a storage far away: unfinished writes would show
        time.sleep(0.01)
        write(*args)

    study._storage.set_trial_intermediate_value = slow
    trial = study.ask()
    result = run_trial(trial, cfg, sine)
    assert result.state == COMPLETE
    stored = study._storage.get_trial(trial._trial_id).intermediate_values
    assert stored == _history_reports(result, cfg) and len(stored) >= 2
    assert list(stored) == sorted(stored)


def test_a_report_that_cannot_be_written_fails_the_trial_also_from_the_background(sine):
    cfg = _cfg()
    study = _study(cfg, optuna.pruners.NopPruner())
    trial = study.ask()

    def refuse(*args):
        raise RuntimeError("the storage is gone")

    study._storage.set_trial_intermediate_value = refuse
    result = run_trial(trial, cfg, sine)
    assert result.state == FAILED and result.reason == "RuntimeError: the storage is gone"


def test_a_baseline_trains_with_set_values_where_the_study_searches_the_training(tmp_path):
    """Not the sampler's draw: "no regularisation" at a random learning rate was luck."""
    from pipeline.search._study import centre

    path = tmp_path / "lr.toml"
    path.write_text(
        "[study]\nname = 'lr'\nn_trials = 2\n[data]\nname = 'moons'\n[search]\n"
        "weight_decay = { type = 'float', low = 1e-5, high = 1e-1, log = true }\n"
        "lr = { type = 'float', low = 1e-3, high = 1e-1, log = true }\n"
        "width = { type = 'int', low = 8, high = 64, step = 8 }\n"
        "depth = { type = 'categorical', choices = [2, 1] }\n"
    )
    cfg = load_sweep(path)
    unregularised = baselines(cfg)["unregularised"]
    # lr: the network's default 0.01, in the range; width: the middle on its grid
    assert unregularised == {"weight_decay": 0.0, "lr": 0.01, "width": 40, "depth": 2}
    study = _study(cfg)
    enqueue_baselines(study, cfg)
    first = study.ask()
    assert suggest(first, cfg) == unregularised
    lr = cfg.search["lr"]
    assert centre(lr.model_copy(update={"low": 0.02}), 0.01) == pytest.approx(math.sqrt(0.02 * 0.1))
    assert centre(cfg.search["width"], None) == 40
