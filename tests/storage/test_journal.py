"""storage/journal.py on SQLite and on a real PostgreSQL server: claims, executions, state, concurrent claims."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import inspect

from engine.results import AccountResult
from storage import journal as journal_tables
from storage.database import open_engine
from storage.journal import Journal, JournalMissing


@pytest.fixture
def journal(database_url):
    j = Journal(database_url)
    yield j
    j.close()


def _result(account: str, signal_id: str = "s1", **kw) -> AccountResult:
    base = dict(account=account, signal_id=signal_id, symbol="BTC/USDT:USDT", side="LONG", status="success",
                margin=20.0, notional=400.0, quantity=0.008, leverage=20, fill_price=50_012.3,
                entry_order_id="123456789012", stop_loss_order_id="fo-abc-SL", take_profit_order_id="fo-abc-TP",
                stop_loss=49_500.0, take_profit=51_000.0, time=1_704_067_200_000)
    return AccountResult(**(base | kw))


def test_claim_is_taken_once_and_release_lets_it_be_taken_again(journal):
    payload = {"symbol": "BTC/USDT:USDT", "entry": 50_000.0, "time": None, "nested": {"é": [1, 2.5]}}
    assert journal.claim_signal("s1", mode="live", source="webhook", payload=payload) is True
    assert journal.claim_signal("s1", mode="live", source="webhook", payload=payload) is False
    assert journal.is_processed("s1") and not journal.is_processed("s2")
    journal.release_signal("s1")
    assert not journal.is_processed("s1")
    assert journal.claim_signal("s1", mode="paper", source="cli", payload={}) is True


def test_a_long_file_source_name_is_kept_within_the_column(journal):
    source = "file:" + "signals-from-a-very-long-tradingview-export-name-" * 3 + ".csv"
    assert journal.claim_signal("s1", mode="paper", source=source, payload={}) is True
    assert journal.is_processed("s1")


def test_concurrent_claims_of_one_signal_let_exactly_one_through(database_url):
    journals = [Journal(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(journals))
    won: list[bool] = []

    def claim(j: Journal) -> None:
        barrier.wait()
        won.append(j.claim_signal("race", mode="live", source="webhook", payload={}))

    threads = [threading.Thread(target=claim, args=(j,)) for j in journals]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for j in journals:
        j.close()
    assert sorted(won) == [False] * 5 + [True]


def test_executions_round_trip_types_and_order(journal):
    journal.claim_signal("s1", mode="live", source="file:signals.csv", payload={})
    journal.claim_signal("s2", mode="paper", source="cli", payload={})
    results = [_result("Account 2"), _result("Account 10"),
               _result("Account 1", status="skipped", reason="balance 5.00 under MIN_BALANCE_USD 10 ⏭️",
                       margin=0.0, notional=0.0, quantity=0.0, leverage=0, fill_price=None, entry_order_id=None,
                       stop_loss_order_id=None, take_profit_order_id=None, time=None)]
    journal.record_results("live", results, succeeded=2, total=3)
    journal.record_results("paper", [_result("Account 1", "s2", quantity=0.004, fill_price=50_000.0)], 1, 1)

    live = journal.executions("live")
    assert [(r["signal_id"], r["account"]) for r in live] == [("s1", "Account 1"), ("s1", "Account 10"),
                                                              ("s1", "Account 2")]  # time, signal, account
    first = live[2]
    assert (first["quantity"], first["fill_price"], first["margin"], first["leverage"]) == (0.008, 50_012.3, 20.0, 20)
    assert isinstance(first["leverage"], int) and isinstance(first["quantity"], float)
    assert first["time"] == 1_704_067_200_000 and first["entry_order_id"] == "123456789012"
    assert (first["mode"], first["status"], first["symbol"], first["side"]) == ("live", "success", "BTC/USDT:USDT",
                                                                               "LONG")
    skipped = live[0]
    assert (skipped["status"], skipped["fill_price"], skipped["time"]) == ("skipped", None, None)
    assert skipped["reason"].endswith("⏭️")
    assert [r["signal_id"] for r in journal.executions("paper")] == ["s2"]
    assert len(journal.executions()) == 4


def test_record_results_stores_the_signal_totals(journal):
    from sqlalchemy import select

    from storage.journal import processed_signals

    journal.claim_signal("s1", mode="live", source="cli", payload={})
    journal.record_results("live", [_result("Account 1")], succeeded=1, total=1)
    journal.record_results("live", [], succeeded=0, total=0)  # nothing to record: no change
    with journal.engine.connect() as conn:
        row = conn.execute(select(processed_signals).where(processed_signals.c.signal_id == "s1")).one()
    assert (row.succeeded, row.total, row.mode, row.source) == (1, 1, "live", "cli")


def test_state_is_upserted_and_reads_back_exactly(journal):
    assert journal.load_state("paper_venue") is None
    value = {"accounts": {"Account 1": {"wallet": 1008.0000000001, "positions": []}}, "ok": True, "none": None,
             "big": 2**53 + 1, "text": "ü 📄"}
    journal.save_state("paper_venue", value)
    assert journal.load_state("paper_venue") == value
    journal.save_state("paper_venue", [1, 2])
    assert journal.load_state("paper_venue") == [1, 2]


def test_two_journals_on_one_database_see_each_other(database_url):
    a, b = Journal(database_url), Journal(database_url)
    try:
        a.claim_signal("s1", mode="live", source="cli", payload={})
        a.save_state("k", {"v": 1})
        assert b.is_processed("s1") and b.load_state("k") == {"v": 1}
        assert b.claim_signal("s1", mode="live", source="cli", payload={}) is False
    finally:
        a.close()
        b.close()


def test_repr_hides_the_password():
    journal = Journal("sqlite://")
    try:
        assert repr(journal) == "Journal(sqlite://)"
    finally:
        journal.close()


# --- Journal(url, create=False): read an existing journal (analysis), creating and upgrading nothing ----------

def test_create_false_reads_an_existing_journal_as_it_is(database_url):
    """A version-1 journal (fanout before schema versions) is read, not upgraded."""
    engine = open_engine(database_url)
    for table in (journal_tables.processed_signals, journal_tables.executions, journal_tables.state):
        table.create(engine)
    with engine.begin() as conn:
        conn.execute(journal_tables.executions.insert().values(
            signal_id="s1", account="A", mode="paper", status="success", fill_price=50_000.0, recorded_at=1.0))
    journal = Journal(database_url, create=False)
    try:
        assert [(r["signal_id"], r["fill_price"]) for r in journal.executions("paper")] == [("s1", 50_000.0)]
    finally:
        journal.close()
    assert set(inspect(engine).get_table_names()) == {"processed_signals", "executions", "state"}
    engine.dispose()


def test_create_false_never_creates_a_sqlite_file(tmp_path):
    with pytest.raises(JournalMissing, match="SQLite file does not exist"):
        Journal(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()


def test_create_false_creates_no_table_in_a_database_without_a_journal(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE executions (signal_id TEXT)")
    with pytest.raises(JournalMissing, match=r"is not a fanout journal \(no table\(s\) processed_signals, state\)"):
        Journal(f"sqlite:///{path}", create=False)
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["executions"]
