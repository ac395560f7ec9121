"""Tests for fanout/cmd_report.py: `fanout report RUN_DIR` writes the charts as PNG and prints the table."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from fanout import cli, cmd_report

PNG = b"\x89PNG\r\n\x1a\n"
BASE_CHARTS = {"equity.png", "drawdown.png", "per_account.png"}


@pytest.fixture(scope="module")
def run_dir(demo_run) -> Path:
    """The offline demo backtest (as `fanout backtest` with no arguments) in a run folder (tests/conftest.py)."""
    return demo_run.path


def report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fanout")
    cmd_report.register(parser.add_subparsers())
    args = parser.parse_args(["report", *argv])
    return args.func(args)


def pngs(folder: Path) -> set[str]:
    found = {p.name for p in folder.glob("*.png")}
    for name in found:
        assert (folder / name).read_bytes()[:8] == PNG, name
    return found


def test_report_writes_the_charts_and_prints_the_table(run_dir, tmp_path, capsys):
    assert report(str(run_dir), "--out", str(tmp_path / "charts")) == 0
    assert pngs(tmp_path / "charts") == BASE_CHARTS | {"trades.png"}
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out
    for name in ("Account 1", "Account 2", "Account 3", "TOTAL", "trades.png"):
        assert name in out


def test_report_defaults_to_a_report_folder_in_the_run(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    assert report(str(run), "--account", "Account 3") == 0
    assert pngs(run / "report") == BASE_CHARTS | {"trades.png"}


def test_report_sizing_study(run_dir, tmp_path, capsys):
    assert report(str(run_dir), "--out", str(tmp_path), "--sizing", "--sizing-balances", "100,100000") == 0
    assert "sizing.png" in pngs(tmp_path)
    out = capsys.readouterr().out
    assert "sizing study" in out and "100000" in out


def test_report_without_locatable_candles_skips_the_trade_chart(run_dir, tmp_path, capsys):
    run = shutil.copytree(run_dir, tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["candles"] = {"source": "/gone/BTCUSDT-1m.csv", "synthetic": False}
    (run / "summary.json").write_text(json.dumps(summary))
    assert report(str(run), "--out", str(tmp_path / "charts")) == 0
    assert pngs(tmp_path / "charts") == BASE_CHARTS
    assert "trades.png not written" in capsys.readouterr().err
    assert report(str(run), "--sizing") == 2
    assert "--sizing needs candles" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["{missing}"], "does not exist"),
    (["{empty}"], "lacks trades.csv, skipped.csv, equity.csv, summary.json"),
    (["{run}", "--candles", "/gone/candles.csv"], "--candles: /gone/candles.csv: file not found"),
    (["{run}", "--account", "Nobody"], "--account 'Nobody' is not in the run"),
    (["{run}", "--sizing", "--sizing-balances", "100,lots"], "--sizing-balances: balance #2 'lots' is not a number"),
    (["{run}", "--sizing", "--signals", "/gone/signals.csv"], "signals file not found"),
])
def test_report_bad_input_exits_2_naming_it(run_dir, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "run": run_dir}
    assert report(*(a.format(**paths) for a in argv), "--out", str(tmp_path / "charts")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "charts").exists()


def test_report_through_the_console_script(run_dir, tmp_path, monkeypatch):
    if "fanout.cmd_report" not in cli.COMMAND_MODULES:  # until fanout/cli.py lists it
        monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "fanout.cmd_report"])
    assert cli.main(["report", str(run_dir), "--out", str(tmp_path)]) == 0
    assert BASE_CHARTS <= pngs(tmp_path)
