"""Tests for live/env.py and live/accounts.py: env loading, numbering, errors, logs, redaction, priority chain."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from engine.config import ExecutionConfig
from engine.results import AccountResult
from live.account_store import AccountStore, open_account_store
from live.accounts import fallback_needed, load_env_accounts, resolve_accounts
from live.credentials import AccountConfigError, ApiCredentials, redact
from live.env import load_env


def key(n: int) -> str:
    return f"k{n:03d}" + "A" * 56 + f"z{n:03d}"


def secret(n: int) -> str:
    return f"TOPSECRET{n}" + "s" * 50


def pair(n: int) -> dict[str, str]:
    suffix = "" if n == 1 else f"_{n}"
    return {f"BINANCE_API_KEY{suffix}": key(n), f"BINANCE_API_SECRET{suffix}": secret(n)}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No real account variables leak in; the working directory has no production.env or fanout.db."""
    for var in list(os.environ):
        if var.startswith(("BINANCE_", "DATABASE_URL", "ENCRYPTION_KEY")):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------- load_env
def test_load_env_reads_file_and_real_env_wins(tmp_path, monkeypatch):
    f = tmp_path / "x.env"
    f.write_text("BINANCE_API_KEY=from-file\nLEVERAGE=10\nBARE\n", encoding="utf-8")
    monkeypatch.setenv("LEVERAGE", "7")
    before = dict(os.environ)
    env = load_env(f)
    assert env["BINANCE_API_KEY"] == "from-file"
    assert env["LEVERAGE"] == "7"  # the real environment wins
    assert env["BARE"] == ""  # a line without '=' stays visible to validation
    assert dict(os.environ) == before  # pure: os.environ untouched
    assert "BINANCE_API_KEY" not in os.environ


def test_load_env_explicit_environ_and_none_file(tmp_path):
    f = tmp_path / "x.env"
    f.write_text("A=1\nB=2\n", encoding="utf-8")
    assert load_env(f, environ={"B": "3"}) == {"A": "1", "B": "3"}
    assert load_env(None, environ={"C": "4"}) == {"C": "4"}


def test_load_env_missing_default_file_is_fine():
    assert load_env(environ={"X": "1"}) == {"X": "1"}  # no production.env in the (tmp) working directory


def test_load_env_missing_explicit_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.env"):
        load_env(tmp_path / "nope.env")


# ----------------------------------------------------------- env accounts
def test_three_accounts_exact_log_lines(caplog):
    env = {**pair(1), **pair(2), **pair(3), "BINANCE_ACCOUNT_NAME_2": "Big", "OTHER": "x"}
    with caplog.at_level(logging.INFO, logger="fanout.accounts"):
        accounts = load_env_accounts(env)
    assert [(a.number, a.name, a.variable, a.source) for a in accounts] == [
        (1, "Account 1", "BINANCE_API_KEY", "env"),
        (2, "Big", "BINANCE_API_KEY_2", "env"),
        (3, "Account 3", "BINANCE_API_KEY_3", "env"),
    ]
    assert accounts[1].api_key == key(2) and accounts[1].api_secret == secret(2)
    assert [r.getMessage() for r in caplog.records if r.name == "fanout.accounts"] == [
        "✅ Loaded Account 1 from BINANCE_API_KEY",
        "✅ Loaded Account 2 from BINANCE_API_KEY_2",
        "✅ Loaded Account 3 from BINANCE_API_KEY_3",
        "🎯 Total accounts loaded: 3",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert not any(secret(n) in caplog.text or key(n) in caplog.text for n in (1, 2, 3))


def test_gap_loads_every_number_and_warns(caplog):
    env = {**pair(1), **pair(2), **pair(4)}
    with caplog.at_level(logging.INFO, logger="fanout.accounts"):
        accounts = load_env_accounts(env)
    assert [a.number for a in accounts] == [1, 2, 4]
    assert [a.name for a in accounts] == ["Account 1", "Account 2", "Account 4"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "BINANCE_API_KEY_3" in warnings[0]
    assert "✅ Loaded Account 4 from BINANCE_API_KEY_4" in caplog.messages
    assert "🎯 Total accounts loaded: 3" in caplog.messages


def test_missing_primary_is_a_gap_too(caplog):
    with caplog.at_level(logging.INFO, logger="fanout.accounts"):
        accounts = load_env_accounts({**pair(2)})
    assert [a.number for a in accounts] == [2]
    assert any("BINANCE_API_KEY not set" in m for m in caplog.messages)


def test_long_gap_is_summarised(caplog):
    with caplog.at_level(logging.WARNING, logger="fanout.accounts"):
        load_env_accounts({**pair(1), **pair(40)})
    (msg,) = caplog.messages
    assert "BINANCE_API_KEY_2 … BINANCE_API_KEY_39 (38 variables)" in msg


def test_no_accounts_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="fanout.accounts"):
        assert load_env_accounts({"PATH": "/bin"}) == []
    assert caplog.messages == []


def test_non_numeric_suffix_is_ignored_with_a_warning(caplog):
    env = {**pair(1), "BINANCE_API_KEY_TESTNET": "whatever"}
    with caplog.at_level(logging.INFO, logger="fanout.accounts"):
        accounts = load_env_accounts(env)
    assert len(accounts) == 1
    assert any("BINANCE_API_KEY_TESTNET" in m and "ignored" in m for m in caplog.messages)
    assert "whatever" not in caplog.text


def test_name_without_account_warns(caplog):
    with caplog.at_level(logging.INFO, logger="fanout.accounts"):
        load_env_accounts({**pair(1), "BINANCE_ACCOUNT_NAME_5": "Ghost"})
    assert any("BINANCE_ACCOUNT_NAME_5" in m and "BINANCE_API_KEY_5" in m for m in caplog.messages)


def test_blank_name_falls_back_to_default():
    (acc,) = load_env_accounts({**pair(1), "BINANCE_ACCOUNT_NAME": "   "})
    assert acc.name == "Account 1"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BINANCE_API_KEY": key(1)}, "BINANCE_API_SECRET"),
        ({"BINANCE_API_SECRET": secret(1)}, "BINANCE_API_KEY"),
        ({**pair(1), "BINANCE_API_KEY_2": key(2)}, "BINANCE_API_SECRET_2"),
        ({**pair(1), "BINANCE_API_SECRET_3": secret(3)}, "BINANCE_API_KEY_3"),
        ({**pair(1), "BINANCE_API_KEY_2": "", "BINANCE_API_SECRET_2": secret(2)}, "BINANCE_API_KEY_2"),
        ({**pair(1), "BINANCE_API_KEY_2": key(2), "BINANCE_API_SECRET_2": "   \t"}, "BINANCE_API_SECRET_2"),
        ({"BINANCE_API_KEY": key(1), "BINANCE_API_SECRET": None}, "BINANCE_API_SECRET"),
        ({"BINANCE_API_KEY": key(1) + " " + key(9), "BINANCE_API_SECRET": secret(1)}, "BINANCE_API_KEY"),
        ({**pair(1), "BINANCE_API_KEY_2": key(1), "BINANCE_API_SECRET_2": secret(2)}, "BINANCE_API_KEY_2"),
        ({**pair(1), "BINANCE_API_KEY_2": key(2), "BINANCE_API_SECRET_2": secret(1)}, "BINANCE_API_SECRET_2"),
        ({**pair(1), "BINANCE_API_KEY_1": key(7), "BINANCE_API_SECRET_1": secret(7)}, "BINANCE_API_KEY_1"),
        ({**pair(1), "BINANCE_API_KEY_02": key(2), "BINANCE_API_SECRET_02": secret(2)}, "BINANCE_API_KEY_02"),
        ({**pair(1), "BINANCE_API_KEY_0": key(2), "BINANCE_API_SECRET_0": secret(2)}, "BINANCE_API_KEY_0"),
        ({**pair(1), **pair(2), "BINANCE_ACCOUNT_NAME_2": "Account 1"}, "BINANCE_ACCOUNT_NAME_2"),
    ],
    ids=[
        "key-without-secret", "secret-without-key", "key2-without-secret", "secret3-without-key", "empty-key",
        "whitespace-secret", "bare-line", "inner-whitespace", "same-key-twice", "same-secret-twice",
        "suffix-1", "leading-zero", "suffix-0", "duplicate-name",
    ],
)
def test_config_errors_name_the_variable_never_the_value(env, variable):
    with pytest.raises(AccountConfigError) as info:
        load_env_accounts(env)
    assert info.value.variable == variable
    assert variable in str(info.value)
    for value in env.values():
        if value and value.strip() and value != "Account 1":
            assert value not in str(info.value)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------- redaction
def test_redact():
    assert redact("abcd" + "0" * 56 + "wxyz") == "abcd…wxyz"
    assert redact("short") == "****"
    assert redact("") == "****"


def test_credentials_repr_and_str_hide_key_and_secret():
    acc = ApiCredentials(number=2, name="Big", api_key=key(2), api_secret=secret(2), source="env",
                         variable="BINANCE_API_KEY_2")
    for text in (repr(acc), str(acc), f"{acc}", repr([acc])):
        assert key(2) not in text and secret(2) not in text
        assert redact(key(2)) in text and "BINANCE_API_KEY_2" in text
    assert acc.redacted_key == "k002…z002"


def test_credentials_reject_unknown_source():
    with pytest.raises(ValueError, match="source"):
        ApiCredentials(number=1, name="A", api_key=key(1), api_secret=secret(1), source="ui", variable="X")


# ---------------------------------------------------------- priority chain
@pytest.fixture
def store(tmp_path):
    s = AccountStore(f"sqlite:///{tmp_path / 'db.sqlite'}", Fernet.generate_key().decode())
    yield s
    s.close()


def test_env_accounts_win_over_database(store):
    store.add("db-one", key(11), secret(11))
    sel = resolve_accounts({**pair(1), **pair(2)}, store=store)
    assert sel.source == "env"
    assert [a.variable for a in sel.accounts] == ["BINANCE_API_KEY", "BINANCE_API_KEY_2"]
    assert sel.fallback is not None
    assert sel.fallback.source == "fallback" and sel.fallback.api_key == key(1)
    assert sel.fallback.name == sel.accounts[0].name  # the same account, never a second one


def test_env_without_primary_has_no_fallback(store):
    sel = resolve_accounts({**pair(2)}, store=store)
    assert sel.source == "env" and sel.fallback is None


def test_database_when_no_env_accounts(store, caplog):
    store.add("alpha", key(11), secret(11))
    bid = store.add("beta", key(12), secret(12))
    store.add("gamma", key(13), secret(13))
    store.disable(bid)
    with caplog.at_level(logging.INFO, logger="fanout.accounts"):
        sel = resolve_accounts({"LEVERAGE": "20"}, store=store)
    assert sel.source == "database" and sel.fallback is None
    assert [(a.number, a.name, a.source) for a in sel.accounts] == [(1, "alpha", "database"), (2, "gamma", "database")]
    assert sel.accounts[1].api_secret == secret(13)
    assert "🎯 Total accounts loaded: 2" in caplog.messages
    assert secret(11) not in caplog.text and key(11) not in caplog.text


def test_database_opened_from_database_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    fkey = Fernet.generate_key().decode()
    with AccountStore(url, fkey) as s:
        s.add("main", key(21), secret(21))
    env = {"DATABASE_URL": url, "ENCRYPTION_KEY": fkey}
    with open_account_store(env) as opened:  # the composition root opens it; resolve_accounts opens nothing
        sel = resolve_accounts(env, opened)
    assert sel.source == "database" and [a.name for a in sel.accounts] == ["main"]


def test_resolve_accounts_opens_no_database_itself(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    fkey = Fernet.generate_key().decode()
    with AccountStore(url, fkey) as s:
        s.add("main", key(21), secret(21))
    assert resolve_accounts({"DATABASE_URL": url, "ENCRYPTION_KEY": fkey}).source == "none"  # no store passed in


def test_invalid_encryption_key_is_named_when_the_store_is_opened(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with AccountStore(url, Fernet.generate_key()) as s:
        s.add("main", key(21), secret(21))
    with pytest.raises(AccountConfigError) as info:
        open_account_store({"DATABASE_URL": url, "ENCRYPTION_KEY": "not-a-fernet-key"})
    assert info.value.variable == "ENCRYPTION_KEY" and "not-a-fernet-key" not in str(info.value)


def test_database_without_encryption_key_names_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with AccountStore(url, Fernet.generate_key()) as s:
        s.add("main", key(21), secret(21))
    env = {"DATABASE_URL": url}
    with pytest.raises(AccountConfigError) as info, open_account_store(env) as opened:
        resolve_accounts(env, opened)
    assert info.value.variable == "ENCRYPTION_KEY"


def test_none_when_nothing_configured_and_no_file_created(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fanout.accounts"):
        sel = resolve_accounts({}, open_account_store({}))  # default sqlite:///fanout.db in the (tmp) working dir
    assert sel.source == "none" and sel.accounts == () and sel.fallback is None
    assert not (tmp_path / "fanout.db").exists()
    missing = tmp_path / "other.db"
    env = {"DATABASE_URL": f"sqlite:///{missing}"}
    assert resolve_accounts(env, open_account_store(env)).source == "none"
    assert not missing.exists()
    assert any("No accounts" in m for m in caplog.messages)


def test_env_errors_are_not_hidden_by_the_database(store):
    store.add("alpha", key(11), secret(11))
    with pytest.raises(AccountConfigError):
        resolve_accounts({"BINANCE_API_KEY": key(1)}, store=store)


# ---------------------------------------------------------- fallback_needed
def result(status: str, **kw) -> AccountResult:
    return AccountResult(account="Account 1", signal_id="s1", symbol="BTC/USDT:USDT", side="long", status=status, **kw)


def test_fallback_needed_only_when_nothing_was_sent():
    assert fallback_needed([]) is True
    before_balance = result("failed", reason="AuthenticationError: invalid api key")
    before_leverage = result("failed", reason="leverage / margin mode not set, nothing traded: x", margin=20,
                             quantity=0.008)
    assert fallback_needed([before_balance, before_leverage]) is True


@pytest.mark.parametrize(
    "other",
    [
        result("success", margin=20, quantity=0.008, entry_order_id="1"),
        result("skipped", reason="balance $5.00 below minimum $10.00"),
        result("failed", reason="entry order failed: RequestTimeout", margin=20, quantity=0.008, entry_sent=True),
        result("failed", reason="stop-loss rejected, position closed at market", entry_order_id="1", closed=True),
        result("failed", reason="x", stop_loss_order_id="7"),
    ],
    ids=["success", "skipped", "entry-state-unknown", "emergency-closed", "order-id"],
)
def test_fallback_not_needed_when_any_order_may_exist(other):
    assert fallback_needed([result("failed", reason="NetworkError"), other]) is False


# ------------------------------------------------------ production.env.example
EXAMPLE = Path(__file__).resolve().parents[2] / "production.env.example"


def test_example_file_documents_every_variable_and_is_safe_as_shipped():
    text = EXAMPLE.read_text(encoding="utf-8")
    for var in (
        "BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_API_KEY_2", "BINANCE_API_SECRET_2", "BINANCE_API_KEY_3",
        "BINANCE_API_SECRET_3", "BINANCE_ACCOUNT_NAME", "BINANCE_ACCOUNT_NAME_2", "TRADING_MODE", "BINANCE_DEMO",
        "BINANCE_API_URL", "DISCORD_WEBHOOK_URL", "POSITION_SIZE_PCT", "MAX_POSITION_USD", "LEVERAGE",
        "MIN_BALANCE_USD", "DAILY_LOSS_LIMIT_PCT", "MAX_OPEN_POSITIONS", "MIN_REWARD_RISK", "PAPER_BALANCES",
        "DATABASE_URL", "ENCRYPTION_KEY", "WEBHOOK_TOKEN", "WEBHOOK_HOST", "WEBHOOK_PORT", "SIGNALS_FILE",
    ):
        assert f"{var}=" in text, var
    assert "withdrawals disabled" in text.lower() and "ip restriction on" in text.lower()
    assert "Fernet.generate_key()" in text and "BINANCE_API_KEY_3" in text and "gap" in text.lower()
    env = load_env(EXAMPLE, environ={})
    assert env["TRADING_MODE"] == "paper" and env["BINANCE_DEMO"] == "true"
    assert env["POSITION_SIZE_PCT"] == "2" and env["PAPER_BALANCES"] == "1000,5000,500"
    assert env["DATABASE_URL"] == "sqlite:///fanout.db" and env["WEBHOOK_HOST"] == "127.0.0.1"
    assert load_env_accounts(env) == []  # as shipped: no accounts, no errors
    assert resolve_accounts(env).source == "none"
    config = ExecutionConfig.from_env(env)
    assert (config.position_size_pct, config.max_position_usd, config.leverage) == (0.02, 100.0, 20)
    assert (config.min_balance_usd, config.daily_loss_limit_pct, config.max_open_positions) == (10.0, 0.05, 5)


class _Failing:
    """Wraps a simulated exchange; ``fail`` names the one method that raises (ccxt-like error class names)."""

    def __init__(self, inner, fail: str) -> None:
        self._inner, self._fail = inner, fail

    def __getattr__(self, name):
        if name == self._fail:
            error = type("RequestTimeout" if name == "create_order" else "AuthenticationError", (Exception,), {})

            async def boom(*args, **kwargs):
                raise error("refused")

            return boom
        return getattr(self._inner, name)


@pytest.mark.parametrize(
    ("fail", "needed"),
    [("fetch_balance", True), ("set_leverage", True), ("create_order", False), (None, False)],
    ids=["bad-key", "leverage", "entry-lost", "all-fine"],
)
async def test_fallback_needed_with_the_real_executor(make_accounts, seed_signal, fail, needed):
    from engine import Account, MultiAccountExecutor

    accounts = [Account(a.name, _Failing(a.exchange, fail)) for a in make_accounts(1000, 5000)]
    executor = MultiAccountExecutor(accounts, retries=0, retry_delay=0)
    summary = await executor.execute(seed_signal)
    assert fallback_needed(summary.results) is needed
