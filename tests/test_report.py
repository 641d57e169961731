"""The report of a campaign stopped after its first iteration: it renders from the archive alone,
says what is missing, regenerates byte-identically from an empty figure cache without running or
writing anything in the archive, and opens in headless Chromium without errors or requests."""

from __future__ import annotations

import hashlib
import re
import shutil

import pytest

from ilcampaign.campaign.loader import load_spec
from ilcampaign.engine.graph.manifest import campaign_manifest
from ilcampaign.engine.run.runner import run_graph
from tests.chromium import find_browser, open_report
from tests.conftest import nodes_until, run_cli, trained_spec

pytestmark = pytest.mark.slow

EXTRA = """
sampling:
  - samplers:
      md: {n_steps: 10}
    selection: {kind: random, n: 1}
  - samplers:
      md: {n_steps: 10, temperature: 400 K}
    selection: {kind: random, n: 1}
production:
  runs:
    nvt: {temperatures: [300 K], ion_pairs: [1], length: 20 fs, interval: 2, box: {optimise: null}}
analyses:
  rdf: {kind: rdf, runs: [nvt], r_max: 3.5 A, bins: 50}
  errors: {kind: model_errors, models: [all]}
"""


@pytest.fixture(scope="module")
def partial(trained, tmp_path_factory):
    """The trained work directory with the first of two iterations done, and its spec."""
    root = tmp_path_factory.mktemp("partial")
    spec = trained_spec(root / "spec.yaml", EXTRA)
    shutil.copytree(trained, root / "wd")
    nodes = nodes_until(spec, "analysis.errors")
    manifest = campaign_manifest(load_spec(spec), spec, nodes)  # as `campaign run` stores it
    run_graph(nodes_until(spec, "iter01.train"), root / "wd", workers=1, progress=lambda *a: None, manifest=manifest)
    return spec, root / "wd"


def _archive_state(workdir) -> dict[str, str]:
    """Every file in the archive with its SHA-256 (to show rendering wrote nothing there)."""
    root = workdir / "archive"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _without_timestamp(text: str) -> str:
    return re.sub(r"<!-- generated -->Generated \S+", "", text)


def test_partial_report_says_what_is_missing(partial):
    spec, workdir = partial
    result = run_cli("report", spec, "--workdir", workdir)
    assert result.returncode == 0, result.stderr
    html = (workdir / "report.html").read_text()
    assert "Not complete: 9 step(s) are not done" in html
    assert "iter02.train" in html and "production.nvt" in html  # named among the steps not run yet
    table1 = html[html.index('id="table-table1"'):html.index("</table>", html.index('id="table-table1"'))]
    assert "iter01" in table1 and "md (not run)" in table1  # iteration 2's sampler has not run
    assert "Not available: no finished rdf analysis: analysis.rdf is not run" in html
    assert 'id="learning_curves"' in html and 'id="lotf_uncertainty"' in html


def test_report_regenerates_identically_without_running(partial):
    spec, workdir = partial
    assert run_cli("report", spec, "--workdir", workdir).returncode == 0
    first = (workdir / "report.html").read_text()
    before = _archive_state(workdir)
    shutil.rmtree(workdir / "report_cache")
    result = run_cli("report", workdir, "--out", workdir / "again.html")  # the work directory alone
    assert result.returncode == 0, result.stderr
    assert _without_timestamp((workdir / "again.html").read_text()) == _without_timestamp(first)
    assert _archive_state(workdir) == before  # no step ran, no journal line, nothing written


def test_figure_set_writes_pdf_png_csv_and_latex(partial, tmp_path):
    spec, workdir = partial
    result = run_cli("figures", spec, "--workdir", workdir, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    names = {p.name for p in tmp_path.iterdir()}
    for stem in ("learning_curves", "lotf_conditions", "lotf_uncertainty"):
        assert {f"{stem}.pdf", f"{stem}.png", f"{stem}.csv"} <= names
    assert {"table1.csv", "table1.tex", "model_errors.csv", "cost.tex"} <= names
    assert (tmp_path / "table1.tex").read_text().startswith(r"\begin{tabular}")


@pytest.mark.skipif(find_browser() is None, reason="needs Debian chromium (.ci/run installs it)")
def test_partial_report_opens_in_chromium(partial):
    spec, workdir = partial
    assert run_cli("report", spec, "--workdir", workdir).returncode == 0
    _, figures = open_report(workdir / "report.html", find_browser())
    for name in ("learning_curves", "lotf_conditions", "lotf_uncertainty"):
        assert figures[name]["width"] > 100 and figures[name]["height"] > 50 and figures[name]["paths"] > 5
    assert figures["fig7_density"]["missing"]  # the spec has no density analysis: said so, not drawn
