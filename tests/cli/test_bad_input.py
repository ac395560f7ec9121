"""The bad-input corpus (issue 11): hostile options, environment values, files and an unreachable venue, each through
the real CLI (``fanout.cli.main``). Every case must end with a non-zero exit, one ``error:`` line naming what was
wrong (option, variable, file, field or venue host) and no traceback; no case may print a key or secret."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fanout.cli import main
from tests.standin import cli_flows as flows

KEY, SECRET = flows.credentials()[0].api_key, flows.credentials()[0].api_secret
SEED = ["signal", "BTCUSDT", "long", "--entry", "50000", "--sl", "49500", "--tp", "51000"]
BT = ["backtest", "--no-plot", "--no-progress", "--out", "{tmp}/out", "--candles", "{tmp}/candles.csv"]
CANDLES = "time,open,high,low,close,volume\n" + "".join(
    f"2024-01-01T{h:02d}:00:00Z,42000,42100,41900,42050,10\n" for h in range(6))
HEADER = "time,symbol,side,entry,stop_loss,take_profit\n"
SIGNAL_ROW = "2024-01-01T02:00:00Z,BTCUSDT,LONG,42000,41500,42500\n"
LIVE = {"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET, "BINANCE_API_URL": "http://127.0.0.1:{port}",
        "DATABASE_URL": "sqlite:///{tmp}/journal.db"}
PAPER = {"BINANCE_API_URL": "http://127.0.0.1:{port}", "DATABASE_URL": "sqlite:///{tmp}/journal.db"}
RUN = ["run", "--once", "--signals", "{tmp}/watched.csv"]  # a missing watched file is fine: nothing to read yet
UNREACHABLE = ["venue unreachable at 127.0.0.1:{port}", "BINANCE_API_URL", "connection refused"]


@dataclass(frozen=True)
class Case:
    """argv, env values and file contents may use {tmp} (the test's folder) and {port} (a closed local port)."""

    id: str
    argv: list[str]
    expect: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2


def bt(*argv: str, expect: list[str], signals: str | bytes | None = HEADER + SIGNAL_ROW, **files: str | bytes) -> dict:
    """A backtest over the small candles file, with these signals (and other files)."""
    written = {"candles.csv": CANDLES, **files}
    extra = []
    if signals is not None:
        written["signals.csv"] = signals
        extra = ["--signals", "{tmp}/signals.csv"]
    return {"argv": [*BT, *extra, *argv], "expect": expect, "files": written}


OPTIONS = [
    Case("taker-fee-nan", [*SEED, "--taker-fee", "nan"], ["argument --taker-fee", "'nan'"]),
    Case("maker-fee-percent", [*BT, "--maker-fee", "0.5"], ["argument --maker-fee", "0.0005 = 0.05%"]),
    Case("slippage-negative", [*BT, "--slippage-bps", "-50"], ["argument --slippage-bps", "'-50'"]),
    Case("leverage-zero", [*SEED, "--leverage", "0"], ["argument --leverage", "1 to 125"]),
    Case("leverage-not-whole", [*SEED, "--leverage", "2.5"], ["argument --leverage", "'2.5'"]),
    Case("signal-leverage-200", [*SEED, "--signal-leverage", "200"], ["argument --signal-leverage"]),
    Case("position-pct-200", [*SEED, "--position-pct", "200"], ["argument --position-pct", "'200'"]),
    Case("position-pct-zero", [*SEED, "--position-pct", "0"], ["argument --position-pct"]),
    Case("max-position-inf", [*SEED, "--max-position", "inf"], ["argument --max-position"]),
    Case("daily-loss-100", [*SEED, "--daily-loss-pct", "100"], ["argument --daily-loss-pct"]),
    Case("max-open-negative", [*SEED, "--max-open", "-1"], ["argument --max-open"]),
    Case("min-rr-text", [*SEED, "--min-rr", "high"], ["argument --min-rr", "'high'"]),
    Case("balances-holes", [*SEED, "--balances", "1000,,x"], ["argument --balances", "#2"]),
    Case("balances-negative", [*SEED, "--balances", "1000,-5"], ["argument --balances", "'-5'"]),
    Case("balances-huge", [*SEED, "--balances", "1e400"], ["argument --balances", "'1e400'"]),
    Case("balances-empty", [*SEED, "--balances", ""], ["argument --balances", "at least one"]),
    Case("entry-nan", ["signal", "BTCUSDT", "long", "--entry", "nan", "--sl", "1", "--tp", "2"], ["argument --entry"]),
    Case("entry-huge", ["signal", "BTCUSDT", "long", "--entry", "1e400", "--sl", "1", "--tp", "2"],
         ["argument --entry", "'1e400'"]),
    Case("sl-negative", ["signal", "BTCUSDT", "long", "--entry", "5", "--sl", "-1", "--tp", "6"], ["argument --sl"]),
    Case("missing-entry", ["signal", "BTCUSDT", "long", "--sl", "1", "--tp", "2"], ["--entry", "required"]),
    Case("mode-unknown", [*SEED, "--mode", "yolo"], ["argument --mode", "'yolo'"]),
    Case("symbol-option", [*BT, "--symbol", "FOO"], ["argument --symbol", "'FOO'"]),
    Case("timeframe-option", [*BT, "--timeframe", "7x"], ["argument --timeframe", "'7x'"]),
    Case("retries-negative", ["data", "download", "BTCUSDT", "1m", "--since", "2024-01-01", "--retries", "-3"],
         ["argument --retries", "'-3'"]),
    Case("since-words", ["data", "download", "BTCUSDT", "1m", "--since", "yesterday"], ["--since", "'yesterday'"]),
    Case("side-word", ["signal", "BTCUSDT", "sideways", "--entry", "5", "--sl", "4", "--tp", "6"],
         ["'side'", "'sideways'", "SIDE"]),
    Case("long-sl-above-entry", ["signal", "BTCUSDT", "long", "--entry", "50000", "--sl", "50500", "--tp", "51000"],
         ["'stop_loss'", "--sl", "below entry"]),
    Case("short-sl-below-entry", ["signal", "BTCUSDT", "short", "--entry", "50000", "--sl", "49500", "--tp", "49000"],
         ["'stop_loss'", "--sl", "above entry"]),
    Case("short-tp-above-entry", ["signal", "BTCUSDT", "short", "--entry", "50000", "--sl", "50500", "--tp", "51000"],
         ["'take_profit'", "--tp"]),
    Case("symbol-malformed", ["signal", "BTC-USD-PERP", "long", "--entry", "5", "--sl", "4", "--tp", "6"],
         ["'symbol'", "SYMBOL"]),
    Case("symbol-unknown", ["signal", "FOOUSDT", "long", "--entry", "5", "--sl", "4", "--tp", "6"],
         ["SYMBOL FOO/USDT", "market-rules snapshot"]),
]

FILES = [
    Case("signals-extra-field", **bt(expect=["signals.csv:2", "7 fields, the header has 6"],
                                     signals=HEADER + SIGNAL_ROW.strip() + ",surplus\n")),
    Case("signals-fewer-fields", **bt(expect=["signals.csv:2", "'take_profit'"],
                                      signals=HEADER + "2024-01-01T02:00:00Z,BTCUSDT,LONG,42000,41500\n")),
    Case("signals-missing-column", **bt(expect=["signals.csv", "missing column(s) take_profit"],
                                        signals="time,symbol,side,entry,stop_loss\n")),
    Case("signals-empty-file", **bt(expect=["signals.csv", "empty"], signals="")),
    Case("signals-header-only", **bt(expect=["--signals", "signals.csv", "no signals"], signals=HEADER)),
    Case("signals-binary", **bt(expect=["signals.csv", "not a text file"], signals=bytes(range(256)) * 4)),
    Case("signals-nul-bytes", **bt(expect=["signals.csv", "not a text file"], signals=b"time,sym\x00bol\n\x00\x00\n")),
    Case("signals-directory", [*BT, "--signals", "{tmp}"], ["cannot be read"], files={"candles.csv": CANDLES}),
    Case("signals-missing-file", [*BT, "--signals", "{tmp}/nope.csv"], ["signals file not found", "nope.csv"],
         files={"candles.csv": CANDLES}),
    Case("signals-bad-time", **bt(expect=["signals.csv:2", "'time'"],
                                  signals=HEADER + "tomorrow,BTCUSDT,LONG,42000,41500,42500\n")),
    Case("signals-side-word", **bt(expect=["signals.csv:2", "'side'"],
                                   signals=HEADER + "2024-01-01T02:00:00Z,BTCUSDT,UP,42000,41500,42500\n")),
    Case("signals-sl-wrong-side", **bt(expect=["signals.csv:2", "'stop_loss'"],
                                       signals=HEADER + "2024-01-01T02:00:00Z,BTCUSDT,LONG,42000,42500,43000\n")),
    Case("signals-huge-price", **bt(expect=["signals.csv:2", "'take_profit'", "not finite"],
                                    signals=HEADER + "2024-01-01T02:00:00Z,BTCUSDT,LONG,42000,41500,1e999\n")),
    Case("signals-duplicate-id", **bt(expect=["signals.csv", "duplicate signal id", "a1"],
                                      signals="id," + HEADER + "a1," + SIGNAL_ROW + "a1," + SIGNAL_ROW)),
    Case("signals-jsonl-list", **bt(expect=["signals.jsonl:1", "expected a JSON object"], signals=None,
                                    **{"signals.jsonl": "[1, 2, 3]\n"}) | {"argv": [*BT, "--signals",
                                                                                  "{tmp}/signals.jsonl"]}),
    Case("signals-jsonl-broken", **bt(expect=["signals.jsonl:2", "not valid JSON"], signals=None,
                                      **{"signals.jsonl": '{"symbol": "BTCUSDT", "side": "long", "entry": 5, '
                                                          '"sl": 4, "tp": 6, "time": "2024-01-01T02:00Z"}\n{oops\n'})
         | {"argv": [*BT, "--signals", "{tmp}/signals.jsonl"]}),
    Case("accounts-json-numbers", **bt("--accounts", "{tmp}/a.json", expect=["--accounts", "a.json", "entry 1"],
                                       **{"a.json": "[1, 2, 3]"})),
    Case("accounts-json-invalid", **bt("--accounts", "{tmp}/a.json", expect=["--accounts", "a.json", "not valid JSON"],
                                       **{"a.json": "{bad"})),
    Case("accounts-json-null", **bt("--accounts", "{tmp}/a.json", expect=["--accounts", "a.json", "NoneType"],
                                    **{"a.json": "null"})),
    Case("accounts-json-no-balance", **bt("--accounts", "{tmp}/a.json", expect=["--accounts", "entry 1", "balance"],
                                          **{"a.json": '[{"name": "a"}]'})),
    Case("accounts-json-negative", **bt("--accounts", "{tmp}/a.json", expect=["--accounts", "'a'", ">= 0"],
                                        **{"a.json": '{"a": -5}'})),
    Case("accounts-json-infinite", **bt("--accounts", "{tmp}/a.json", expect=["--accounts", "'a'", "finite"],
                                        **{"a.json": '{"a": 1e999}'})),
    Case("accounts-csv-extra-field", **bt("--accounts", "{tmp}/a.csv", expect=["--accounts", "a.csv", "line 2",
                                                                             "3 fields, the header has 2"],
                                          **{"a.csv": "name,balance\nalpha,100,oops\n"})),
    Case("accounts-csv-no-header", **bt("--accounts", "{tmp}/a.csv", expect=["--accounts", "a.csv", "name,balance"],
                                        **{"a.csv": "alpha,100\n"})),
    Case("accounts-csv-duplicate", **bt("--accounts", "{tmp}/a.csv", expect=["--accounts", "duplicate name 'a'"],
                                        **{"a.csv": "name,balance\na,1\na,2\n"})),
    Case("accounts-csv-empty", **bt("--accounts", "{tmp}/a.csv", expect=["--accounts", "a.csv", "empty"],
                                    **{"a.csv": ""})),
    Case("accounts-binary", **bt("--accounts", "{tmp}/a.csv", expect=["--accounts", "a.csv", "not a text file"],
                                 **{"a.csv": bytes(range(128, 256))})),
    Case("candles-row-index", **bt(expect=["candles.csv", "column 'time'", "row index"], **{
        "candles.csv": "time,open,high,low,close\n0,1,2,1,1.5\n1,1,2,1,1.5\n2,1,2,1,1.5\n"})),
    Case("candles-1970-epochs", **bt(expect=["candles.csv", "column 'time'", "row 1", "1970-01-01"], **{
        "candles.csv": "time,open,high,low,close\n1000,1,2,1,1.5\n1060,1,2,1,1.5\n1120,1,2,1,1.5\n"})),
    Case("candles-far-future", **bt(expect=["candles.csv", "column 'time'", "outside 2009..2100"], **{
        "candles.csv": "time,open,high,low,close\n9999999999999,1,2,1,1.5\n9999999999999.5,1,2,1,1.5\n"})),
    Case("candles-empty", **bt(expect=["candles.csv", "cannot be read"], **{"candles.csv": ""})),
    Case("candles-binary", **bt(expect=["candles.csv", "cannot be read"], **{"candles.csv": bytes(range(128, 256))})),
    Case("candles-bad-parquet", **bt(expect=["candles.parquet", "Parquet"], **{"candles.parquet": b"PAR1 nonsense"})
         | {"argv": [*BT[:-1], "{tmp}/candles.parquet", "--signals", "{tmp}/signals.csv"]}),
    Case("candles-no-time-column", **bt(expect=["candles.csv", "no time column"], **{
        "candles.csv": "open,high,low,close\n1,2,1,1.5\n"})),
    Case("candles-high-below-low", **bt(expect=["candles.csv", "column 'high'", "row 2"], **{
        "candles.csv": CANDLES.replace("2024-01-01T01:00:00Z,42000,42100", "2024-01-01T01:00:00Z,42000,41000")})),
    Case("candles-unknown-type", [*BT[:-1], "{tmp}/candles.xlsx"], ["candles.xlsx", "unknown file type"]),
    Case("fine-candles-row-index", **bt("--fine-candles", "{tmp}/fine.csv", expect=["fine.csv", "row index"], **{
        "fine.csv": "time,open,high,low,close\n0,1,2,1,1.5\n1,1,2,1,1.5\n"})),
    Case("env-file-missing", [*SEED, "--env-file", "{tmp}/nope.env"], ["--env-file", "nope.env"]),
    Case("env-file-directory", [*SEED, "--env-file", "{tmp}"], ["--env-file", "not a regular file"]),
]

ENV = [
    Case("webhook-port-text", RUN, ["WEBHOOK_PORT", "'abc'"], env={"WEBHOOK_PORT": "abc", "WEBHOOK_TOKEN": "t" * 12}),
    Case("webhook-port-range", RUN, ["WEBHOOK_PORT", "'70000'"],
         env={"WEBHOOK_PORT": "70000", "WEBHOOK_TOKEN": "t" * 12}),
    Case("webhook-token-short", RUN, ["WEBHOOK_TOKEN", "at least 8"], env={"WEBHOOK_TOKEN": "abc"}),
    Case("database-url-garbage", RUN, ["DATABASE_URL", "not a database URL"], env={"DATABASE_URL": "garbage"}),
    Case("database-url-bad-port", RUN, ["DATABASE_URL"],
         env={"DATABASE_URL": "postgresql://user:hunter2hunter2@127.0.0.1:notaport/db"}),
    Case("database-url-other-engine", RUN, ["DATABASE_URL", "sqlite:// or postgresql://"],
         env={"DATABASE_URL": "mysql://user:hunter2hunter2@db/fanout"}),
    Case("database-url-unopenable", RUN, ["DATABASE_URL", "unable to open database file"],
         env={"DATABASE_URL": "sqlite:///{tmp}/missing/dir/fanout.db"}, code=1),
    Case("database-url-refused", RUN, ["DATABASE_URL", "127.0.0.1:{port}", "did not answer within 0 s"],
         env={"DATABASE_URL": "postgresql://user:hunter2hunter2@127.0.0.1:{port}/db", "DATABASE_WAIT_SECONDS": "0"},
         code=1),  # the server's failure, not the input's
    Case("database-url-in-memory-run", RUN, ["DATABASE_URL", "in-memory SQLite", "must survive restarts"],
         env={"DATABASE_URL": "sqlite://"}),
    Case("database-url-in-memory-live", [*RUN, "--mode", "live"], ["DATABASE_URL", "in-memory SQLite"],
         env={**LIVE, "DATABASE_URL": "sqlite:///:memory:"}),
    Case("database-url-in-memory-signal", [*SEED, "--mode", "paper"], ["DATABASE_URL", "in-memory SQLite"],
         env={**PAPER, "DATABASE_URL": "sqlite://"}),
    Case("database-wait-negative", RUN, ["DATABASE_WAIT_SECONDS", "'-1'"], env={"DATABASE_WAIT_SECONDS": "-1"}),
    Case("standby-poll-text", [*RUN, "--mode", "live"], ["LIVE_STANDBY_POLL_SECONDS", "'x'"],
         env={**LIVE, "LIVE_STANDBY_POLL_SECONDS": "x"}),
    Case("database-url-not-a-database", RUN, ["DATABASE_URL", "not a database"],
         env={"DATABASE_URL": "sqlite:///{tmp}/junk.db"}, files={"junk.db": b"\x01" * 4096}, code=1),
    Case("paper-balances-text", RUN, ["PAPER_BALANCES", "'abc'"], env={"PAPER_BALANCES": "abc"}),
    Case("paper-balances-negative", RUN, ["PAPER_BALANCES", "'-1'"], env={"PAPER_BALANCES": "1000,-1"}),
    Case("paper-poll-zero", RUN, ["PAPER_POLL_SECONDS", "'0'"], env={"PAPER_POLL_SECONDS": "0"}),
    Case("live-poll-text", [*RUN, "--mode", "live"], ["LIVE_POLL_SECONDS", "'soon'"],
         env={**LIVE, "LIVE_POLL_SECONDS": "soon"}),
    Case("trading-mode-run", RUN, ["TRADING_MODE", "'yolo'"], env={"TRADING_MODE": "yolo"}),
    Case("trading-mode-signal", SEED, ["TRADING_MODE", "'yolo'"], env={"TRADING_MODE": "yolo"}),
    Case("binance-demo-typo", [*RUN, "--mode", "live"], ["BINANCE_DEMO", "'ture'"],
         env={**LIVE, "BINANCE_DEMO": "ture"}),
    Case("binance-api-url-scheme", [*SEED, "--mode", "live"], ["BINANCE_API_URL", "http://"],
         env={**LIVE, "BINANCE_API_URL": "ftp://example.com"}),
    Case("leverage-variable", RUN, ["LEVERAGE", "'0'"], env={"LEVERAGE": "0"}),
    Case("position-size-variable", RUN, ["POSITION_SIZE_PCT", "'lots'"], env={"POSITION_SIZE_PCT": "lots"}),
    Case("working-type-variable", RUN, ["WORKING_TYPE", "'LAST'"], env={"WORKING_TYPE": "LAST"}),
    Case("discord-url", SEED, ["DISCORD_WEBHOOK_URL"], env={"DISCORD_WEBHOOK_URL": "not-a-url"}),
    Case("key-without-secret", [*SEED, "--mode", "live"], ["BINANCE_API_SECRET"],
         env={**LIVE, "BINANCE_API_SECRET": ""}),
    Case("no-signal-source", ["run", "--once"], ["--signals", "WEBHOOK_TOKEN"]),
    Case("no-live-accounts", [*SEED, "--mode", "live"], ["no accounts configured"], env=PAPER),
]

VENUE = [
    Case("signal-live-unreachable", [*SEED, "--mode", "live"], UNREACHABLE, env=LIVE, code=1),
    Case("run-live-unreachable", [*RUN, "--mode", "live"], UNREACHABLE, env=LIVE, code=1),
    Case("signal-paper-unreachable", [*SEED, "--mode", "paper"], UNREACHABLE, env=PAPER, code=1),
    Case("run-paper-unreachable", ["run", "--once", "--signals", "{tmp}/s.csv"], ["s.csv", *UNREACHABLE],
         env=PAPER, files={"s.csv": "symbol,side,entry,stop_loss,take_profit\nBTCUSDT,long,50000,49500,51000\n"},
         code=1),
    Case("data-download-unreachable", ["data", "download", "BTCUSDT", "1m", "--since", "2024-01-01", "--until",
                                       "2024-01-02", "--cache-dir", "{tmp}/cache", "-q", "--retries", "0"],
         ["BTC/USDT:USDT 1m: venue unreachable at 127.0.0.1:{port} (BINANCE_API_URL)", "nothing new was written"],
         env=PAPER, code=1),  # worded as every other command words an unreachable venue
]

CASES = OPTIONS + FILES + ENV + VENUE


@pytest.fixture
def closed_port():
    """A local port bound but not listening: every connection to it is refused, nothing leaves the machine."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    flows.isolate(monkeypatch, tmp_path)


def _fill(text: str, tmp: Path, port: int) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{port}", str(port))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_naming_what_was_wrong(case, tmp_path, closed_port, monkeypatch, capsys):
    for name, content in case.files.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for var, value in case.env.items():
        monkeypatch.setenv(var, _fill(value, tmp_path, closed_port))
    code = main([_fill(a, tmp_path, closed_port) for a in case.argv])
    out, err = capsys.readouterr()
    assert code == case.code, err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for part in case.expect:
        assert _fill(part, tmp_path, closed_port) in errors[0]
    for secret in (KEY, SECRET, "hunter2hunter2"):
        assert secret not in out + err
    assert not (tmp_path / "out").exists()  # a refused backtest writes nothing


def test_verbose_adds_the_traceback_before_the_same_line(tmp_path, capsys):
    argv = ["backtest", "--candles", str(tmp_path / "none.csv"), "--no-plot", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    quiet = capsys.readouterr().err
    assert main([*argv, "-v"]) == 2 and main(["-v", *argv]) == 2
    loud = capsys.readouterr().err
    assert "Traceback" not in quiet and loud.count("Traceback (most recent call last)") == 2
    assert loud.splitlines()[-1] == quiet.strip()


def test_verbose_traceback_masks_secrets(tmp_path, monkeypatch, capsys, closed_port):
    """ccxt's exception chain carries the request; the key and secret of the settings never show, even with -v."""
    for var, value in LIVE.items():
        monkeypatch.setenv(var, _fill(value, tmp_path, closed_port))
    assert main(["-v", *SEED, "--mode", "live"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" in err and "venue unreachable" in err.splitlines()[-1]
    assert KEY not in out + err and SECRET not in out + err


def _console(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(flows.ENV_PREFIXES)}
    return subprocess.run([sys.executable, "-m", "fanout.cli", *argv], env={**clean, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv, env", [
    ([*RUN, "--mode", "live"], LIVE),
    ([*SEED, "--mode", "paper"], PAPER),
], ids=["run-live", "signal-paper"])
def test_unreachable_venue_in_a_real_process(argv, env, tmp_path, closed_port):
    """The console script as users run it: nothing printed at interpreter exit either (unclosed sessions, "Task
    exception was never retrieved")."""
    done = _console([_fill(a, tmp_path, closed_port) for a in argv],
                    {k: _fill(v, tmp_path, closed_port) for k, v in env.items()}, tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"error: venue unreachable at 127.0.0.1:{closed_port} (BINANCE_API_URL): " \
                                           "connection refused"
    for noise in ("Traceback", "Task exception", "Unclosed", "release all resources", KEY, SECRET):
        assert noise not in done.stdout + done.stderr
