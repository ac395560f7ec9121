"""Tests for `fanout accounts` through the console entry point: the seed's account log lines on the terminal
(stderr), redacted keys on stdout, never a key or secret value (tests/live/test_cmd_accounts.py covers the rest)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.cli import main

ROOT = Path(__file__).resolve().parents[2]
KEY_1 = "k1AB" + "1" * 56 + "yz01"
KEY_2 = "k2CD" + "2" * 56 + "yz02"
SECRET_1 = "seed-secret-one-" + "s" * 48
SECRET_2 = "seed-secret-two-" + "t" * 48
SEED_LINES = ["✅ Loaded Account 1 from BINANCE_API_KEY", "✅ Loaded Account 2 from BINANCE_API_KEY_2",
              "🎯 Total accounts loaded: 2"]


@pytest.fixture
def env_file(tmp_path, monkeypatch):
    for var in list(os.environ):
        if var.startswith(("BINANCE_", "DATABASE_URL", "ENCRYPTION_KEY", "TRADING_MODE")):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "two.env"
    path.write_text(f"BINANCE_API_KEY={KEY_1}\nBINANCE_API_SECRET={SECRET_1}\nBINANCE_API_KEY_2={KEY_2}\n"
                    f"BINANCE_API_SECRET_2={SECRET_2}\nDATABASE_URL=sqlite:///{tmp_path / 'none.db'}\n",
                    encoding="utf-8")
    return path


def _no_secrets(*texts: str) -> None:
    for text in texts:
        for value in (KEY_1, KEY_2, SECRET_1, SECRET_2):
            assert value not in text


def test_accounts_logs_the_seed_lines_and_lists_redacted_keys(env_file, capsys, caplog):
    caplog.set_level(logging.INFO)
    assert main(["accounts", "--env-file", str(env_file)]) == 0
    out, err = capsys.readouterr()
    assert [m for m in caplog.messages if m.startswith(("✅", "🎯"))] == SEED_LINES
    assert "Active source: env (2 accounts)" in out
    assert "k1AB…yz01" in out and "k2CD…yz02" in out
    assert "Fallback: Account 1 (BINANCE_API_KEY)" in out
    _no_secrets(out, err, caplog.text)


def test_accounts_console_prints_the_seed_lines_on_stderr(env_file, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "DATABASE_URL", "ENCRYPTION_KEY"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "fanout.cli", "accounts", "--env-file", str(env_file)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == SEED_LINES  # the terminal shows exactly the seed's lines, in order
    assert "k1AB…yz01" in done.stdout and "k2CD…yz02" in done.stdout
    _no_secrets(done.stdout, done.stderr)
