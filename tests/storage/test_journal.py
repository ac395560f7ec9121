"""storage/journal.py on SQLite and on a real PostgreSQL server: claims, a signal's states, order intents, outcomes,
executions, state, concurrent claims, the group-commit writer and crash points."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import inspect

from engine.results import AccountResult, OrderEvent
from storage import journal as journal_tables
from storage.crash_points import CrashPoints
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


# --- a signal's life: states, order intents, outcomes as they happen (issue 11) ---------------------------------

def _event(account: str, leg: str, state: str, **kw) -> OrderEvent:
    return OrderEvent(signal_id="s1", account=account, leg=leg, state=state, client_order_id=f"fo-{leg}", **kw)


def test_a_signal_is_received_then_claimed_then_done(journal):
    assert journal.claim_signal("s1", mode="live", source="file:x.csv", payload={"id": "s1", "entry": 50_000.0})
    journal.claim_signal("p1", mode="paper", source="cli", payload={})
    (row,) = journal.unfinished_signals("live")
    assert (row["signal_id"], row["status"], row["source"], row["payload"]) == (
        "s1", "received", "file:x.csv", {"id": "s1", "entry": 50_000.0})
    journal.mark_claimed("s1")
    assert [r["status"] for r in journal.unfinished_signals("live")] == ["claimed"]
    journal.finish_signal("live", "s1", 2, 3)
    assert journal.unfinished_signals("live") == [] and journal.is_processed("s1")
    assert [r["signal_id"] for r in journal.unfinished_signals("paper")] == ["p1"]


async def test_an_orders_states_keep_what_its_intent_recorded(journal):
    await journal.record_order("live", _event("Account 1", "E", "intent", amount=0.008, price=50_000.0,
                                                margin=20.0, notional=400.0, leverage=20))
    await journal.record_order("live", _event("Account 1", "E", "sent", detail="RequestTimeout: lost"))
    await journal.record_order("live", _event("Account 1", "E", "acknowledged", order_id="4000000001"))
    await journal.record_order("live", _event("Account 2", "E", "intent", amount=0.04, price=50_000.0))
    await journal.record_order("live", _event("Account 2", "E", "failed", detail="InsufficientFunds: -2019"))
    one, two = journal.order_intents("s1")
    assert {k: one[k] for k in ("account", "leg", "state", "order_id", "amount", "price", "margin", "notional",
                                "leverage", "detail", "client_order_id", "mode")} == {
        "account": "Account 1", "leg": "E", "state": "acknowledged", "order_id": "4000000001", "amount": 0.008,
        "price": 50_000.0, "margin": 20.0, "notional": 400.0, "leverage": 20, "detail": "RequestTimeout: lost",
        "client_order_id": "fo-E", "mode": "live"}
    assert (two["state"], two["detail"], two["amount"]) == ("failed", "InsufficientFunds: -2019", 0.04)


async def test_an_outcome_is_written_when_known_and_replaced_when_settled(journal):
    await journal.record_outcome("live", _result("Account 1", status="unknown", reason="entry state unknown"))
    await journal.record_outcome("live", _result("Account 2"))
    assert {r["account"]: r["status"] for r in journal.outcomes("s1")} == {"Account 1": "unknown",
                                                                          "Account 2": "success"}
    await journal.record_outcome("live", _result("Account 1"))
    assert [(r["account"], r["status"], r["reason"]) for r in journal.outcomes("s1")] == [
        ("Account 1", "success", ""), ("Account 2", "success", "")]


async def test_many_writes_at_once_are_committed_in_a_few_transactions(journal):
    """A hundred accounts' intents arrive together: group commit, and each write is durable when awaited."""
    events = [_event(f"Account {i}", "E", "intent", amount=0.001) for i in range(100)]
    await asyncio.gather(*(journal.record_order("live", e) for e in events))
    assert len(journal.order_intents("s1")) == 100
    assert journal.writer.commits < 100 or journal.writer.inline


async def test_a_failing_write_fails_only_its_own_caller(journal):
    def broken(conn):
        raise RuntimeError("disk full")

    good = journal.record_order("live", _event("Account 1", "E", "intent"))
    results = await asyncio.gather(good, journal.writer.submit(broken), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], RuntimeError)
    assert [r["account"] for r in journal.order_intents("s1")] == ["Account 1"]


def test_a_crash_point_names_a_moment_of_the_signals_life():
    assert CrashPoints("E.acknowledged@Account 2").point == "E.acknowledged"
    assert CrashPoints("E.acknowledged@Account 2").account == "Account 2"
    assert CrashPoints("").point is None and CrashPoints(None).point is None
    with pytest.raises(ValueError, match="FANOUT_CRASH_AT='E.acked': unknown crash point 'E.acked'"):
        CrashPoints("E.acked")
    CrashPoints("done").reached("summary")  # another point: nothing happens
    CrashPoints("done@Account 1").reached("done", "Account 2")
