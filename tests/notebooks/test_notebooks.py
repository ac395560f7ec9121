"""Tests for notebooks/: each is executed with nbclient on bundled data, offline, in this virtualenv's kernel.

The analysis functions behind them are tested in tests/analysis/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell

import analysis

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
NOTEBOOK_NAMES = ["analysis.ipynb", "paper_vs_backtest.ipynb"]
CELL_TIMEOUT = 600  # seconds: a safety net that ends a hung kernel, not a speed requirement


def execute(name: str, tmp_path: Path, monkeypatch, **parameters) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel of this virtualenv; a failing cell raises CellExecutionError."""
    venv_kernels = Path(sys.prefix) / "share" / "jupyter"
    if (venv_kernels / "kernels" / "python3").is_dir():  # this venv's kernelspec first, whatever the user has
        monkeypatch.setenv("JUPYTER_PATH", str(venv_kernels))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for key, value in parameters.items():
        cell.source, n = re.subn(rf"^{key} = .*$", f"{key} = {value!r}", cell.source, flags=re.M)
        assert n == 1, f"parameter {key} not in {name}"
    nb.cells.append(new_code_cell("import sys\nprint(sys.prefix)"))
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_is_committed_clean_with_parameters(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"clear the outputs of {name}"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and re.search(r"^RUN_DIR = None\b", params[0].source, re.M)


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_uses_the_public_analysis_surface(name):
    """Notebooks call ``analysis.<name>`` only for names the package exports (analysis/__init__.py)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "import analysis\n" in code
    used = set(re.findall(r"\banalysis\.(\w+)", code))
    assert used and used <= set(analysis.__all__)


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_runs_the_demo_offline(name, tmp_path, monkeypatch):
    nb = execute(name, tmp_path, monkeypatch)
    assert nb.cells[-1].outputs[0]["text"].strip() == sys.prefix, "the kernel is not this virtualenv's python"
    text = outputs_text(nb)
    assert "SYNTHETIC" in text
    assert images(nb) >= (6 if name == "analysis.ipynb" else 1)
    if name == "paper_vs_backtest.ipynb":
        assert "STAND-IN" in text


def test_a_failing_cell_fails_the_run(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError, match="RunDirError"):
        execute("analysis.ipynb", tmp_path, monkeypatch, RUN_DIR=str(tmp_path / "no-such-run"))


def test_analysis_notebook_loads_a_given_run(demo_run, tmp_path, monkeypatch):
    nb = execute("analysis.ipynb", tmp_path, monkeypatch, RUN_DIR=str(demo_run.path), SIZING_BALANCES=[100, 100_000])
    text = outputs_text(nb)
    assert "demo backtest written" not in text
    assert str(demo_run.path) in text


def test_paper_notebook_reads_a_records_file(demo_run, demo_candles, demo_signals, tmp_path, monkeypatch):
    records = analysis.recorded_price_paper(demo_candles, demo_signals, demo_run.start_balances)
    path = tmp_path / "paper.csv"
    records.to_csv(path, index=False)
    nb = execute("paper_vs_backtest.ipynb", tmp_path, monkeypatch, RUN_DIR=str(demo_run.path),
                 PAPER_RECORDS=str(path))
    text = outputs_text(nb)
    assert "STAND-IN paper records" not in text
    assert f"{len(records)} records" in text
