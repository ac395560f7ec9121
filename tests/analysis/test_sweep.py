"""Tests for analysis/sweep.py and `fanout sweep`: the grid, local processes and Ray give the same cells."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.sweep import AXES, METRICS, SweepGrid, local_map, ray_map, sweep
from fanout.cli import main
from marketdata import paths

SMALL = SweepGrid(balance=(1_000.0, 10_000.0), leverage=(10, 20), position_pct=(2.0, 10.0), max_position=(100.0,),
                  min_rr=(0.0, 1.8), slippage_bps=(0.0, 5.0))


def test_the_grid_is_the_product_of_its_axes_and_checks_each_value():
    assert len(SweepGrid()) == 135 and len(SMALL) == 32 and len(SMALL.tasks()) == 16
    assert SMALL.tasks()[0] == {"leverage": 10, "position_pct": 2.0, "max_position": 100.0, "min_rr": 0.0,
                                "slippage_bps": 0.0}
    with pytest.raises(ValueError, match="'leverage': value 2.5 out of range"):
        SweepGrid(leverage=(10, 2.5))
    with pytest.raises(ValueError, match="'balance' needs at least one value"):
        SweepGrid(balance=())
    with pytest.raises(ValueError, match="'position_pct' repeats a value"):
        SweepGrid(position_pct=(2.0, 2.0))


def test_cells_in_grid_order_with_every_metric(demo_candles, demo_signals):
    cells = sweep([demo_candles], demo_signals, SMALL, mapper=local_map(1))
    assert list(cells.columns) == [*AXES, *METRICS] and len(cells) == 32
    assert list(cells["balance"][:16]) == [1_000.0] * 16  # balance first, then the other axes as listed
    assert np.allclose(cells["final_equity"], cells["balance"] + cells["pnl"])  # pnl counts the fees
    high_rr = cells[cells["min_rr"] == 1.8]
    low_rr = cells[cells["min_rr"] == 0.0]
    assert (high_rr["skipped_share"].to_numpy() > low_rr["skipped_share"].to_numpy()).all()
    assert cells[cells["slippage_bps"] == 5.0]["pnl"].sum() < cells[cells["slippage_bps"] == 0.0]["pnl"].sum()
    assert cells.equals(sweep([demo_candles], demo_signals, SMALL, mapper=local_map(2)))


@pytest.fixture(scope="module")
def local_cells(demo_candles, demo_signals):
    return sweep([demo_candles], demo_signals, SweepGrid(), mapper=local_map(2))


def test_a_ray_cluster_gives_the_local_cells(demo_candles, demo_signals, local_cells, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra fanout[ray]; without it --ray is refused")
    on_ray = sweep([demo_candles], demo_signals, SweepGrid(), mapper=ray_map(None, num_cpus=2,
                                                                              include_dashboard=False))
    assert len(on_ray) == 135
    local_cells.to_csv(tmp_path / "local.csv", index=False)
    on_ray.to_csv(tmp_path / "ray.csv", index=False)
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "ray.csv").read_bytes()


def test_ray_missing_is_said_plainly(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kw):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RuntimeError, match=r"pip install 'fanout\[ray\]'"):
        ray_map("auto")


def test_the_command_sweeps_the_demo_and_writes_csv_png_and_table(tmp_path, capsys, monkeypatch, local_cells):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "no-cache")
    assert main(["sweep", "--out", str(tmp_path / "a"), "--workers", "2"]) == 0
    out = capsys.readouterr()
    assert "135 cells (27 backtests of 5 balances) on 2 local worker processes" in out.err
    assert "... 105 more cells in sweep.csv" in out.out and "📁" in out.out
    assert (tmp_path / "a" / "sweep.png").stat().st_size > 10_000
    local_cells.to_csv(tmp_path / "expected.csv", index=False)
    assert (tmp_path / "a" / "sweep.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
    assert main(["sweep", "--out", str(tmp_path / "b"), "--no-plot", "--workers", "1", "--balances", "2000",
                 "--leverage", "10,20", "--position-pct", "5", "--max-position", "100", "--slippage-bps", "0,3"]) == 0
    assert "4 cells (4 backtests of 1 balances)" in capsys.readouterr().err
    assert not (tmp_path / "b" / "sweep.png").exists()
    assert main(["sweep", "--out", str(tmp_path / "c"), "--leverage", "10,10"]) == 2
    assert "argument --leverage: repeats a value: '10,10'" in capsys.readouterr().err
