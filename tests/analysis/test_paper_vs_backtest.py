"""Tests for analysis/paper_vs_backtest.py: paper records from the journal (through Journal) or a CSV export, and
entry fills compared with a backtest's."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

import analysis
from engine.results import AccountResult
from storage.journal import Journal

T_FILL = 1_704_067_260_000  # 2024-01-01T00:01:00Z


def _result(account: str, status: str, *, price: float | None, quantity: float, reason: str = "") -> AccountResult:
    return AccountResult(account=account, signal_id="s1", symbol="BTC/USDT:USDT", side="LONG", status=status,
                         reason=reason, quantity=quantity, fill_price=price, margin=18.9 if price else 0.0,
                         time=T_FILL)


def _journal_with_records(url: str) -> str:
    """Record one paper signal on two accounts and one live execution through Journal; returns the URL."""
    journal = Journal(url)
    journal.record_results("paper", [
        _result("Account 1", "success", price=42_000.5, quantity=0.009),
        _result("Account 2", "skipped", price=None, quantity=0.0,
                reason="notional $40.00 below exchange minimum $100.00"),
    ], succeeded=1, total=2)
    journal.record_results("live", [_result("Account 3", "success", price=42_001.0, quantity=0.009)], 1, 1)
    journal.close()
    return url


@pytest.fixture
def journal_url(database_url) -> str:
    """A journal holding records, once on SQLite and once on PostgreSQL (tests/conftest.py ``database_url``)."""
    return _journal_with_records(database_url)


def test_load_paper_records_reads_the_journal_through_its_api(journal_url):
    """What Journal.record_results wrote comes back through Journal.executions: SQLite and PostgreSQL alike."""
    records = analysis.load_paper_records(journal_url)
    assert list(records.columns[:5]) == ["signal_id", "account", "fill_price", "quantity", "time"]
    assert records["account"].tolist() == ["Account 1", "Account 2"]
    assert records["status"].tolist() == ["success", "skipped"]
    assert records["fill_price"][0] == 42_000.5 and np.isnan(records["fill_price"][1])
    assert records["time"][0] == pd.Timestamp("2024-01-01T00:01:00Z")
    assert records["mode"].unique().tolist() == ["paper"]
    assert len(analysis.load_paper_records(journal_url, mode=None)) == 3
    assert analysis.load_paper_records(journal_url, mode="live")["account"].tolist() == ["Account 3"]


def test_load_paper_records_reads_a_journal_file_path_the_same_way(tmp_path):
    url = _journal_with_records(f"sqlite:///{tmp_path / 'fanout.db'}")
    from_path = analysis.load_paper_records(tmp_path / "fanout.db")
    pd.testing.assert_frame_equal(from_path, analysis.load_paper_records(url))


def test_load_paper_records_goes_through_journal(journal_url, monkeypatch):
    """The journal is read by storage.journal.Journal (so PostgreSQL works alike), never by raw sqlite3."""
    opened = []

    class Spy(Journal):
        def __init__(self, url, **kwargs):
            opened.append((url, kwargs))
            super().__init__(url, **kwargs)

    monkeypatch.setattr("analysis.paper_vs_backtest.Journal", Spy)
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: pytest.fail("raw sqlite3 used"))
    assert len(analysis.load_paper_records(journal_url)) == 2
    assert opened == [(journal_url, {"create": False})]


def test_reading_a_journal_creates_nothing(tmp_path):
    missing = tmp_path / "none.db"
    with pytest.raises(ValueError, match=r"paper records: no journal at sqlite:///.*none\.db: the SQLite file does not"):
        analysis.load_paper_records(f"sqlite:///{missing}")
    assert not missing.exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE fills (signal_id TEXT, account TEXT, price REAL)")
    with pytest.raises(ValueError, match=r"paper records: sqlite:///.*other\.db is not a fanout journal \(no table"):
        analysis.load_paper_records(other)
    with sqlite3.connect(other) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"fills"}


def test_an_empty_journal_says_which_mode_it_lacks(journal_url):
    with pytest.raises(ValueError, match=r"holds no executions of mode 'backtest' \(mode=None reads every mode\)"):
        analysis.load_paper_records(journal_url, mode="backtest")


def test_a_journal_url_password_never_shows_in_errors():
    with pytest.raises(ValueError) as caught:
        analysis.load_paper_records("nosuchdialect://fanout:s3cret@db.example/fanout")
    assert "s3cret" not in str(caught.value) and "paper records" in str(caught.value)


def test_load_paper_records_csv_round_trip(tmp_path):
    records = pd.DataFrame({
        "signal_id": ["s1", "s1"], "account": ["A", "B"], "fill_price": [100.5, np.nan], "quantity": [2.0, 0.0],
        "time": pd.to_datetime([T_FILL, T_FILL], unit="ms", utc=True), "status": ["success", "skipped"],
    })
    records.to_csv(tmp_path / "r.csv", index=False)
    loaded = analysis.load_paper_records(tmp_path / "r.csv")
    assert loaded["fill_price"].tolist() == pytest.approx(records["fill_price"].tolist(), nan_ok=True)
    assert (loaded["time"] == records["time"]).all()
    assert loaded["status"].tolist() == ["success", "skipped"]


def test_load_paper_records_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        analysis.load_paper_records(tmp_path / "nope.csv")
    (tmp_path / "r.csv").write_text("signal_id,account,qty\ns1,A,1\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) fill_price"):
        analysis.load_paper_records(tmp_path / "r.csv")
    (tmp_path / "aliases.csv").write_text("signal_id,account,avg_price,filled,timestamp\ns1,A,100.5,2,1704067200\n")
    loaded = analysis.load_paper_records(tmp_path / "aliases.csv")
    assert loaded.loc[0, ["fill_price", "quantity"]].tolist() == [100.5, 2]
    assert loaded.loc[0, "time"] == pd.Timestamp("2024-01-01T00:00:00Z")
    (tmp_path / "times.csv").write_text("signal_id,account,fill_price,time\ns1,A,1,yesterday\n")
    with pytest.raises(ValueError, match="column 'time' must be epoch ms / s or ISO-8601"):
        analysis.load_paper_records(tmp_path / "times.csv")


def test_compare_fills_signs_slippage_against_the_trader():
    t = pd.Timestamp("2024-01-01T00:00:00Z")
    trades = pd.DataFrame({
        "account": ["A", "A", "A"], "signal_id": ["long", "short", "bt-only"], "symbol": ["BTC/USDT:USDT"] * 3,
        "side": ["LONG", "SHORT", "LONG"], "entry_time": [t] * 3, "entry_price": [100.0, 100.0, 100.0],
        "quantity": [2.0, 2.0, 1.0],
    })
    paper = pd.DataFrame({
        "signal_id": ["long", "short", "paper-only"], "account": ["A", "A", "A"], "fill_price": [101.0, 99.0, 50.0],
        "quantity": [2.0, 1.0, 1.0], "time": [t] * 3,
    })
    fills = analysis.compare_fills(paper, trades).set_index("signal_id")
    assert fills.loc["long", "slippage_bps"] == pytest.approx(100.0)  # paid more on a LONG: worse
    assert fills.loc["short", "slippage_bps"] == pytest.approx(100.0)  # sold lower on a SHORT: worse
    assert fills.loc["long", "slippage_cost"] == pytest.approx(2.0)
    assert fills.loc["bt-only", "matched"] == "backtest_only" and fills.loc["paper-only", "matched"] == "paper_only"
    assert np.isnan(fills.loc["paper-only", "slippage_bps"])
    table = analysis.slippage_by_account(fills.reset_index()).loc["A"]
    assert (table["matched"], table["paper_only"], table["backtest_only"]) == (2, 1, 1)
    assert table["mean_bps"] == pytest.approx(100.0) and table["cost_usdt"] == pytest.approx(3.0)
    assert table["quantity_mismatches"] == 1
    fig = analysis.plot_slippage(fills.reset_index())
    assert [ax.get_title() for ax in fig.axes] == ["per trade", "per account"]


def test_compare_fills_ignores_records_that_did_not_fill(journal_url, demo_run):
    records = analysis.load_paper_records(journal_url)
    fills = analysis.compare_fills(records, demo_run.trades)
    assert (fills[fills["signal_id"] == "s1"]["matched"] == "paper_only").all()
    assert fills[fills["signal_id"] == "s1"]["account"].tolist() == ["Account 1"]  # Account 2 was skipped
