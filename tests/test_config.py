"""Sweep files: every shipped file is valid; every kind of bad file or override gets one clear
error naming the file, the key, the value and what is allowed, exit status 2, nothing written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from e2e import cli_in_process as _cli

from pipeline.config import ConfigError, load_sweep, parse_override

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.toml"))

GOOD = """
[study]
name = "t"
n_trials = 4

[data]
name = "sine"

[fixed]
max_epochs = 20

[search]
keep_prob = { type = "float", low = 0.5, high = 1.0 }
weight_decay = { type = "float", low = 1e-5, high = 1e-1, log = true }
patience = { type = "int", low = 0, high = 10 }
optimizer = { type = "categorical", choices = ["sgd", "adam"] }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_shipped_sweeps_are_valid(path):
    cfg = load_sweep(path)
    assert cfg.study.n_trials >= 1 and cfg.search


def test_expected_sweeps_are_shipped():
    assert {"default.toml", "smoke.toml", "digits.toml", "breast_cancer.toml", "moons.toml"} <= {
        p.name for p in SWEEPS
    }


def test_a_good_file_resolves_names_and_defaults(tmp_path):
    cfg = load_sweep(write(tmp_path, GOOD))
    assert cfg.direction == "minimize" and cfg.task == "regression"
    assert cfg.sampler.name == "tpe" and cfg.pruner.name == "median"
    assert cfg.study.n_jobs == (os.cpu_count() or 1)
    assert set(cfg.search) == {"keep_prob", "weight_decay", "patience", "optimizer"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[study]", "[study]\ncolour = 'red'"), "study.colour: unknown key"),
        (("[fixed]", "[extra]\nx = 1\n[fixed]"), "extra: unknown key"),
        (("n_trials = 4", "n_trials = 'many'"), "study.n_trials = 'many': Input should be"),
        (("n_trials = 4", "n_trials = 0"), "study.n_trials = 0: Input should be greater than"),
        (
            ("low = 0.5, high = 1.0", "low = 1.0, high = 0.5"),
            "search.keep_prob: low (1.0) must be < high (0.5)",
        ),
        (
            ("low = 1e-5, high = 1e-1, log = true", "low = 0.0, high = 1e-1, log = true"),
            "search.weight_decay: log = true needs low > 0",
        ),
        (
            ("low = 0.5, high = 1.0", "low = 0.5, high = 1.5"),
            "search.keep_prob.high = 1.5: keep_prob must be a number in (0, 1]",
        ),
        (
            ("low = 0.5, high = 1.0", "low = 0.0, high = 1.0"),
            "search.keep_prob.low = 0.0: keep_prob must be a number in (0, 1]",
        ),
        (
            ("max_epochs = 20", "max_epochs = 20\nl1 = -0.1"),
            "fixed.l1 = -0.1: must be a finite number >= 0",
        ),
        (
            ("max_epochs = 20", "max_epochs = 20\nkeep_prob = 0.8"),
            "search.keep_prob: 'keep_prob' is both fixed and searched",
        ),
        (
            ("[search]", "[search]\ncolour = { type = 'float', low = 0.0, high = 1.0 }"),
            "search.colour: the model has no searchable hyperparameter 'colour'",
        ),
        (
            ("max_epochs = 20", "max_epochs = 20\nlearning_rate = 0.1"),
            "fixed.learning_rate = 0.1: unknown hyperparameter",
        ),
        (('name = "sine"', 'name = "mnist"'), "unknown data set 'mnist'; known: sine"),
        (('name = "sine"', 'name = "sine"\nn_vall = 10'), "has no option(s) ['n_vall']"),
        (
            ("[search]", "[sampler]\nname = 'bayes'\n[search]"),
            "sampler.name = 'bayes': Input should be 'tpe', 'gp', 'random', 'cmaes', 'qmc', "
            "'grid', 'nsga2' or 'nsga3'",
        ),
        (("[search]", "[pruner]\nname = 'asha'\n[search]"), "pruner.name = 'asha': Input should"),
        (
            ("[search]", "[pruner]\nname = 'median'\nwarmup = 3\n[search]"),
            "pruner = 'median' with options {'warmup': 3}",
        ),
        (
            ('choices = ["sgd", "adam"]', 'choices = ["sgd", "lbfgs"]'),
            "search.optimizer.choices = 'lbfgs': optimizer must be one of",
        ),
        (("[study]", "[study]\nmetric = 'val_accuracy'"), "accuracy needs a classification"),
        (
            ('type = "int", low = 0', 'type = "integer", low = 0'),
            "search.patience: Input tag 'integer'",
        ),
        (
            ("max_epochs = 20", "max_epochs = 20\nconnect_keep_prob = 0.0"),
            "fixed.connect_keep_prob = 0.0: must be a number in (0, 1]",
        ),
        (
            ("[search]", "[search]\nbatch_norm = { type = 'categorical', choices = [true, 1] }"),
            "search.batch_norm.choices = 1: batch_norm must be true or false",
        ),
        (
            ("[search]", "[search]\ninput_noise = { type = 'float', low = -0.1, high = 0.5 }"),
            "search.input_noise.low = -0.1: input_noise must be a finite number >= 0",
        ),
        (
            ("[study]", "[study]\ndeliver = 'ensemble'"),
            "study.deliver = 'ensemble': its networks are refitted from the re-runs' seeds; "
            "set study.repeats",
        ),
        (
            ("[study]", "[study]\ndeliver = 'bagging'"),
            "study.deliver = 'bagging': Input should be 'refit', 'ensemble' or 'trial'",
        ),
    ],
)
def test_each_bad_file_names_the_file_key_value_and_what_is_allowed(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_broken_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep(write(tmp_path, "[study\nname = 'x'"))
    with pytest.raises(ConfigError, match="no such file"):
        load_sweep(tmp_path / "nope.toml")


def test_overrides_are_validated_like_the_file(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = load_sweep(
        path, [parse_override("fixed.max_epochs=7"), parse_override("search.keep_prob.low=0.3")]
    )
    assert cfg.fixed["max_epochs"] == 7 and cfg.search["keep_prob"].low == 0.3
    with pytest.raises(ConfigError, match=r"fixed\.max_epochs = 'lots': must be an integer"):
        load_sweep(path, [parse_override("fixed.max_epochs=lots")])
    with pytest.raises(ConfigError, match=r"search\.keep_prob\.high = 2\.0: keep_prob must be"):
        load_sweep(path, [parse_override("search.keep_prob.high=2.0")])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("fixed.max_epochs")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--n-trials", "0"], "study.n_trials = 0"),
        (["--n-jobs", "-2"], "study.n_jobs = -2"),
        (["--set", "fixed.keep_prob=7"], "fixed.keep_prob = 7: must be a number in (0, 1]"),
        (["--set", "data.name=nope"], "unknown data set 'nope'"),
        (["--storage", "redis://localhost/0"], "storage = 'redis://localhost/0': must be a"),
        (["--storage", "."], "storage = '.': is a folder"),
        (["--tracking-uri", "ftp://host/x"], "tracking uri = 'ftp://host/x': must be an MLflow"),
    ],
)
def test_cli_rejects_bad_input_with_status_2_and_writes_nothing(tmp_path, args, expected):
    path = write(tmp_path, GOOD)
    result = _cli(tmp_path, "sweep", str(path), *args)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and str(path) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]  # no store, no journal


def test_cli_rejects_a_csv_that_cannot_be_loaded_before_writing(tmp_path):
    path = write(
        tmp_path,
        GOOD.replace(
            'name = "sine"', 'name = "csv"\npath = "missing.csv"\ntarget = "y"\ntask = "regression"'
        ),
    )
    result = _cli(tmp_path, "sweep", str(path))
    assert result.returncode == 2 and "data: csv: missing.csv: no such file" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.toml"]


def test_help_documents_every_command():
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("sweep", "check", "studies", "ui", "dashboard", "report", "figures", "head"):
        assert command in result.stdout


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random", "cmaes", "qmc", "grid"])
def test_every_sampler_builds_and_suggests_within_the_space(tmp_path, sampler):
    import optuna

    from pipeline.search._study import suggest

    text = GOOD.replace("low = 0.5, high = 1.0", "low = 0.5, high = 1.0, step = 0.25")
    text = text.replace("low = 1e-5, high = 1e-1, log = true", "low = 0.0, high = 0.1, step = 0.05")
    cfg = load_sweep(write(tmp_path, text + f"\n[sampler]\nname = '{sampler}'\n"))
    study = optuna.create_study(sampler=cfg.sampler_for(0), pruner=cfg.make_pruner())
    values = suggest(study.ask(), cfg)
    assert values["keep_prob"] in (0.5, 0.75, 1.0)
    assert 0 <= values["patience"] <= 10 and values["optimizer"] in ("sgd", "adam")


def test_the_gp_sampler_models_the_objective_after_its_random_start(tmp_path):
    """Optuna's GPSampler by name: after its random start, its suggestions follow a Gaussian
    process fitted to the trials (on a smooth objective, they close in on the minimum)."""
    import optuna

    cfg = load_sweep(write(tmp_path, GOOD + "\n[sampler]\nname = 'gp'\nn_startup_trials = 5\n"))
    sampler = cfg.sampler_for(0)
    assert isinstance(sampler, optuna.samplers.GPSampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -3, 3) - 1.234) ** 2, n_trials=20)
    start, modelled = study.trials[:5], study.trials[5:]
    assert min(t.value for t in modelled) < 1e-3 < min(t.value for t in start)


@pytest.mark.parametrize("name", ["gp", "cmaes"])
def test_samplers_that_model_trials_jointly_ignore_the_baselines_values_off_the_space(name):
    """A baseline's weight_decay 0 cannot be a param of a log-scale search (it is an override),
    so a baseline trial lacks that param; seen by GP or CMA-ES, it would take weight_decay out
    of the space they model, and they would sample it at random ever after."""
    import optuna

    from pipeline.config import make_sampler
    from pipeline.names import BASELINE, OVERRIDES

    sampler = make_sampler(name, {"n_startup_trials": 4} if name == "gp" else {}, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"x": 0.5}, user_attrs={BASELINE: "unregularised", OVERRIDES: {"wd": 0}})

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        wd = trial.user_attrs.get(OVERRIDES, {}).get("wd")
        wd = trial.suggest_float("wd", 1e-5, 1, log=True) if wd is None else wd
        return (x - 0.3) ** 2 + (np.log10(wd + 1e-9) + 2) ** 2

    study.optimize(objective, n_trials=12)
    last = study.trials[-1]
    space = sampler.infer_relative_search_space(study, last)
    assert set(space) == {"x", "wd"}  # both modelled, the baseline notwithstanding
    if name == "gp":  # and the GP's own record of what it suggested has both
        shared = "".join(v for k, v in last.system_attrs.items() if k.startswith("gp:relative"))
        assert {"x", "wd"} <= set(json.loads(shared))


def test_the_gp_sampler_without_pytorch_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # this machine has PyTorch: hide it, as on a core install
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"the gp sampler needs PyTorch.*regsweep\[gp\]"):
        load_sweep(write(tmp_path, GOOD + "\n[sampler]\nname = 'gp'\n"))


def test_grid_sampler_needs_steps_for_floats(tmp_path):
    with pytest.raises(ConfigError, match="the grid sampler needs a step"):
        load_sweep(write(tmp_path, GOOD + "\n[sampler]\nname = 'grid'\n"))


def test_hyperband_and_no_pruner(tmp_path):
    from optuna.pruners import HyperbandPruner, NopPruner

    hyper = load_sweep(write(tmp_path, GOOD + "\n[pruner]\nname = 'hyperband'\n"))
    assert isinstance(hyper.make_pruner(), HyperbandPruner)
    none = load_sweep(write(tmp_path, GOOD + "\n[pruner]\nname = 'none'\n"))
    assert isinstance(none.make_pruner(), NopPruner) and none.report_every == 1


def test_the_chapters_other_techniques_are_searchable_and_run(tmp_path):
    """DropConnect, input noise, mixup and batch norm as sweep-file keys, searched and fixed,
    run as trials with the values Optuna suggested."""
    import optuna

    from pipeline.core import load
    from pipeline.search import mc_curve, run_trial

    text = GOOD.replace(
        "[search]",
        "[search]\n"
        "connect_keep_prob = { type = 'float', low = 0.5, high = 1.0 }\n"
        "input_noise = { type = 'float', low = 0.0, high = 0.5 }\n"
        "batch_norm = { type = 'categorical', choices = [true, false] }",
    ).replace("max_epochs = 20", "max_epochs = 20\nmixup_alpha = 0.2")
    cfg = load_sweep(write(tmp_path, text))
    assert {"connect_keep_prob", "input_noise", "batch_norm"} <= set(cfg.search)
    # a seeded draw: about 1 unseeded draw in 20 takes SGD with mixup and input noise to a
    # diverging loss, a failed trial with no network to average
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    data = load("sine", seed=1)
    result = run_trial(trial, cfg, data)
    values = result.hyperparameters
    assert values["mixup_alpha"] == 0.2 and values["batch_norm"] == trial.params["batch_norm"]
    assert result.model.connect_keep_prob == trial.params["connect_keep_prob"]
    assert result.state == "complete" and set(mc_curve(result.model, data)) == {1, 3, 10}
