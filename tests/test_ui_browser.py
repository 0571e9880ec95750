"""The study as a user sees it in the MLflow UI: a real headless Chromium (Debian's package,
driven by Playwright) against ``python -m pipeline ui`` over the smoke sweep's store. Each step
leaves a screenshot in the test's temporary folder."""

import re
import shutil
from pathlib import Path

import pytest
from e2e import client, read_link, runs, study, ui_server

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine: `make test` installs it (apt-get, as root)")
    playwright = pytest.importorskip("playwright.sync_api", reason="`make setup` installs it")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new"]
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def ui(smoke):
    folder, _ = smoke
    with ui_server(folder) as (base, output):
        yield folder, base, output


@pytest.fixture
def page(browser, tmp_path):
    # wide enough that the grid renders every column of the view (it renders only those seen)
    page = browser.new_page(viewport={"width": 2400, "height": 1000})
    page.set_default_timeout(60_000)
    shots = iter(range(100))
    page.shot = lambda name: page.screenshot(path=tmp_path / f"{next(shots):02d}-{name}.png")
    yield page
    page.close()


def test_the_printed_link_opens_the_trials_sorted_best_first_with_the_searched_columns(ui, page):
    folder, base, output = ui
    link = read_link(output, "smoke")
    assert link.startswith(f"{base}/#/experiments/")
    page.goto(link)
    page.wait_for_selector("[row-index='0'] [col-id='metrics.`final_val_loss`']")
    page.shot("study-view")
    header = page.locator("[role=columnheader][col-id]").evaluate_all(
        "cells => cells.map(c => c.getAttribute('col-id'))"
    )
    searched = ["keep_prob", "weight_decay", "l1", "patience"]
    expected = ["final_val_loss", "test_loss", *searched]
    assert {f"metrics.`{m}`" for m in expected} <= set(header), header
    assert {"tags.`state`", "tags.`baseline`"} <= set(header), header
    s = study(folder)
    rows = _rows(page)
    assert len(rows) == len(s.trials)  # the trials, not the parent run
    best = s.best_trial
    assert rows[0]["attributes.`Run Name`"].endswith(f"trial-{best.number:04d}")
    complete = [
        float(r["metrics.`final_val_loss`"]) for r in rows if r["tags.`state`"] == "complete"
    ]
    assert complete == sorted(complete) and complete[0] == pytest.approx(best.value)
    assert rows[0]["metrics.`keep_prob`"] == f"{best.params.get('keep_prob', 1.0):.4g}"
    states = {r["tags.`state`"] for r in rows}
    assert states <= {"complete", "pruned", "failed"} and "complete" in states


def test_a_trial_page_shows_a_readable_val_loss_chart_and_a_figure(ui, page):
    folder, base, _ = ui
    parent, _ = runs(folder)
    best = parent.data.tags["best_run_id"]
    experiment = parent.info.experiment_id
    page.goto(f"{base}/#/experiments/{experiment}/runs/{best}/model-metrics")
    page.get_by_placeholder("Search metric charts").fill("val_loss")
    labels = page.wait_for_function(CHART_LABELS, arg="val_loss").json_value()
    page.shot("val-loss-chart")
    ticks = [
        float(t.replace("\u2212", "-"))
        for t in labels
        if re.fullmatch(r"[\u2212-]?\d+(\.\d+)?(e[+-]?\d+)?", t.strip())
    ]
    history = client(folder).get_metric_history(best, "val_loss")
    values = [m.value for m in history]
    first_epoch = _first_val_loss(folder, best)
    # the axis spans the curve as logged, not the first epochs from random weights
    assert ticks and max(ticks) < first_epoch / 2, (ticks, first_epoch)
    assert max(ticks) <= 2 * max(values) + 1e-12
    page.goto(f"{base}/#/experiments/{experiment}/runs/{best}/artifacts/curves.png")
    page.wait_for_function(
        "() => Array.from(document.images).some(i => i.src.startsWith('blob:') && i.naturalWidth)"
    )
    page.shot("curves-png")
    widths = page.evaluate(
        "() => Array.from(document.images).filter(i => i.src.startsWith('blob:'))"
        ".map(i => i.naturalWidth)"
    )
    assert max(widths) >= 500  # legible at the preview's size (about 110 dpi)


def test_the_parent_run_says_the_answer_with_a_link_to_the_best_trial(ui, page, tmp_path):
    folder, base, _ = ui
    parent, _ = runs(folder)
    best = parent.data.tags["best_run_id"]
    number = study(folder).best_trial.number
    page.goto(f"{base}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}")
    answer = page.get_by_text("Best on validation:")
    answer.wait_for()
    page.shot("parent-note")
    assert "final_val_loss" in answer.inner_text()
    link = answer.get_by_role("link", name=f"trial {number}")
    assert best in link.get_attribute("href")
    with page.context.expect_page() as opened:  # MLflow opens a note's links in a new tab
        link.click()
    trial = opened.value
    trial.get_by_text(f"trial-{number:04d}").first.wait_for()
    assert f"/runs/{best}" in trial.url
    trial.screenshot(path=tmp_path / "best-trial.png")


# The text of a metric chart's SVG (tick labels) once drawn: the nearest ancestor of the
# chart's title that holds an SVG with text.
CHART_LABELS = """metric => {
    for (const el of document.querySelectorAll('body *')) {
        if (el.childElementCount || el.textContent.trim() !== metric) continue;
        let card = el.parentElement;
        while (card && !card.querySelector('svg text')) card = card.parentElement;
        const labels = card ? Array.from(card.querySelectorAll('svg text')) : [];
        if (labels.length > 3) return labels.map(t => t.textContent);
    }
    return null;
}"""


def _rows(page) -> list[dict[str, str]]:
    """The runs table as the user sees it, row by row: column id -> cell text."""
    return page.evaluate(
        """() => {
            const rows = {};
            for (const cell of document.querySelectorAll('[row-index] [col-id]')) {
                const i = Number(cell.closest('[row-index]').getAttribute('row-index'));
                (rows[i] ??= {})[cell.getAttribute('col-id')] = cell.innerText.trim();
            }
            return Object.keys(rows).sort((a, b) => a - b).map(i => rows[i]);
        }"""
    )


def _first_val_loss(folder: Path, run_id: str) -> float:
    from pipeline.tracking import read_history

    (folder / run_id).mkdir(exist_ok=True)
    path = client(folder).download_artifacts(run_id, "history.csv", str(folder / run_id))
    return read_history(Path(path))["val_loss"][0]


def test_the_parent_run_shows_its_logged_model_its_datasets_and_its_source(ui, page):
    folder, base, _ = ui
    parent, _ = runs(folder)
    tags = parent.data.tags
    model_id = tags["model_uri"].removeprefix("models:/")
    page.goto(f"{base}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}")
    page.get_by_text("Best on validation:").wait_for()  # the overview, drawn
    page.shot("parent-overview")
    about = page.locator("body").inner_text()
    # the source (the program that ran the sweep, and its git commit), from MLflow's own tags
    assert Path(tags["mlflow.source.name"]).name in about
    commit = tags.get("mlflow.source.git.commit")
    assert commit is None or commit[:7] in about
    # the data splits as inputs: the first by name, the others counted
    assert re.search(r"sine-train \(\w+\)\s+Train\s+\+2", about), about
    # the delivered model, in its own table of the overview, leading to the model's page
    models = page.get_by_text(re.compile(r"Logged models \(1\)"))
    models.scroll_into_view_if_needed()
    page.shot("parent-logged-models")
    link = page.locator(f"a[href*='{model_id}']").first
    link.click()
    page.get_by_text(model_id).first.wait_for()
    page.shot("logged-model")


@pytest.fixture(scope="module")
def pareto_ui(tmp_path_factory):
    """The shipped multi-objective sweep, small, in a store of its own, and the UI over it."""
    from e2e import ROOT, sweep

    folder = tmp_path_factory.mktemp("pareto-ui")
    small = ["study.n_trials=12", "study.repeats=2", "study.folds=2", "fixed.max_epochs=30"]
    args = [a for s in small for a in ("--set", s)]
    result = sweep(folder, *args, sweep_file=ROOT / "sweeps" / "sparse.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    with ui_server(folder) as (base, _):
        yield folder, base, result.stdout


def test_the_pareto_link_opens_the_front_with_both_objectives_most_accurate_first(pareto_ui, page):
    folder, base, output = pareto_ui
    (link,) = [line.strip() for line in output.splitlines() if "viewStateShareKey=pareto" in line]
    page.goto(link.replace("http://127.0.0.1:5000", base))
    first = "metrics.`final_val_accuracy`"
    page.wait_for_selector(f"[row-index='0'] [col-id='{first}']")
    page.shot("pareto-view")
    header = page.locator("[role=columnheader][col-id]").evaluate_all(
        "cells => cells.map(c => c.getAttribute('col-id'))"
    )
    assert {first, "metrics.`nonzero_weights`", "metrics.`l1`"} <= set(header), header
    _, children = runs(folder, "sparse-tradeoff")
    front = {r.info.run_name for r in children if r.data.tags.get("pareto") == "true"}
    rows = _rows(page)
    assert (
        front and {r["attributes.`Run Name`"].split()[-1] for r in rows} == front
    )  # the front alone
    accuracies = [float(r[first]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)  # the most accurate first
