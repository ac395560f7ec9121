"""Tests for fanout/cmd_accounts.py: `fanout accounts` list / add / disable through its own parser and handler, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import argparse
import io
import os
import sys
from unittest import mock

import pytest
from cryptography.fernet import Fernet

from fanout import cmd_accounts

KEY_A = "akey" + "1" * 56 + "aend"
KEY_B = "bkey" + "2" * 56 + "bend"
SECRET_A = "SECRET-A-" + "x" * 55
SECRET_B = "SECRET-B-" + "y" * 55
ENV_KEY = "ekey" + "3" * 56 + "eend"
ENV_SECRET = "ENV-SECRET-" + "z" * 53


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in list(os.environ):
        if var.startswith(("BINANCE_", "DATABASE_URL", "ENCRYPTION_KEY")):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def env_file(tmp_path, database_url):
    """Settings naming an empty database: a SQLite file, then a PostgreSQL database (every test runs on both)."""
    path = tmp_path / "test.env"
    path.write_text(f"DATABASE_URL={database_url}\nENCRYPTION_KEY={Fernet.generate_key().decode()}\n",
                    encoding="utf-8")
    return path


def run(argv: list[str], stdin: str = "") -> int:
    parser = argparse.ArgumentParser(prog="fanout")
    cmd_accounts.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    with mock.patch.object(sys, "stdin", io.StringIO(stdin)):
        return args.func(args)


def test_add_list_disable_round_trip(env_file, capsys):
    assert run(["accounts", "add", "--env-file", str(env_file), "--label", "alpha"], f"{KEY_A}\n{SECRET_A}\n") == 0
    assert run(["accounts", "--env-file", str(env_file), "add", "--label", "beta", "--api-key", KEY_B],
               f"{SECRET_B}\n") == 0
    out = capsys.readouterr().out
    assert "Added account id 1 'alpha' (key akey…aend)" in out
    assert "Added account id 2 'beta' (key bkey…bend)" in out

    assert run(["accounts", "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    assert "Active source: database (2 accounts)" in out
    assert "alpha" in out and "akey…aend" in out and "bkey…bend" in out
    assert "Fallback: none" in out

    assert run(["accounts", "disable", "alpha", "--env-file", str(env_file)]) == 0
    assert "Disabled account id 1 'alpha'" in capsys.readouterr().out

    assert run(["accounts", "list", "--env-file", str(env_file)]) == 0
    captured = capsys.readouterr()
    assert "Active source: database (1 account)" in captured.out
    assert "disabled" in captured.out and "active" in captured.out
    for text in (captured.out, captured.err):
        for value in (SECRET_A, SECRET_B, KEY_A, KEY_B):
            assert value not in text


def test_add_reads_secret_with_getpass_on_a_terminal(env_file, monkeypatch, capsys):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    prompts = []
    monkeypatch.setattr(cmd_accounts.getpass, "getpass", lambda prompt: prompts.append(prompt) or SECRET_A)
    parser = argparse.ArgumentParser()
    cmd_accounts.register(parser.add_subparsers())
    args = parser.parse_args(["accounts", "add", "--env-file", str(env_file), "--label", "alpha", "--api-key", KEY_A])
    monkeypatch.setattr(sys, "stdin", Tty())
    assert args.func(args) == 0
    assert prompts == ["API secret (hidden): "]
    assert SECRET_A not in capsys.readouterr().out


def test_secret_is_never_a_command_line_argument(env_file, capsys):
    with pytest.raises(SystemExit) as info:
        run(["accounts", "add", "--env-file", str(env_file), "--label", "a", "--api-secret", SECRET_A])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--api-secret is not accepted" in err and SECRET_A not in err


def test_add_errors_exit_2_and_name_the_field(env_file, capsys):
    assert run(["accounts", "add", "--env-file", str(env_file), "--label", "alpha", "--api-key", KEY_A], "\n") == 2
    err = capsys.readouterr().err
    assert "api_secret is empty" in err


def test_add_without_encryption_key_fails_before_prompting(tmp_path, capsys):
    path = tmp_path / "nokey.env"
    path.write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'x.db'}\n", encoding="utf-8")
    assert run(["accounts", "add", "--env-file", str(path), "--label", "a"], f"{KEY_A}\n{SECRET_A}\n") == 2
    assert "ENCRYPTION_KEY is not set" in capsys.readouterr().err


def test_list_env_source_with_fallback_and_unused_database(env_file, capsys):
    assert run(["accounts", "add", "--env-file", str(env_file), "--label", "alpha"], f"{KEY_A}\n{SECRET_A}\n") == 0
    with env_file.open("a", encoding="utf-8") as f:
        f.write(f"BINANCE_API_KEY={ENV_KEY}\nBINANCE_API_SECRET={ENV_SECRET}\nBINANCE_ACCOUNT_NAME=Main\n")
    capsys.readouterr()
    assert run(["accounts", "--env-file", str(env_file)]) == 0
    out = capsys.readouterr().out
    assert "Active source: env (1 account)" in out
    assert "Main" in out and "ekey…eend" in out and "BINANCE_API_KEY" in out
    assert "Fallback: Main (BINANCE_API_KEY)" in out
    assert "1 row (not used while environment accounts are set)" in out
    assert ENV_SECRET not in out and ENV_KEY not in out


def test_list_with_nothing_configured(tmp_path, capsys):
    assert run(["accounts"]) == 0  # no production.env, no fanout.db in the (tmp) working directory
    out = capsys.readouterr().out
    assert "Active source: none" in out and "not created yet" in out
    assert not (tmp_path / "fanout.db").exists()


def test_real_environment_wins_over_the_file(env_file, monkeypatch, capsys):
    with env_file.open("a", encoding="utf-8") as f:
        f.write(f"BINANCE_API_KEY={ENV_KEY}\nBINANCE_API_SECRET={ENV_SECRET}\n")
    monkeypatch.setenv("BINANCE_ACCOUNT_NAME", "FromShell")
    assert run(["accounts", "--env-file", str(env_file)]) == 0
    assert "FromShell" in capsys.readouterr().out


def test_config_error_exit_2_without_value(env_file, capsys):
    with env_file.open("a", encoding="utf-8") as f:
        f.write(f"BINANCE_API_KEY={ENV_KEY}\n")
    assert run(["accounts", "--env-file", str(env_file)]) == 2
    err = capsys.readouterr().err
    assert "BINANCE_API_SECRET is missing" in err and ENV_KEY not in err


def test_missing_env_file_exit_2(tmp_path, capsys):
    assert run(["accounts", "--env-file", str(tmp_path / "absent.env")]) == 2
    assert "absent.env" in capsys.readouterr().err


def test_disable_unknown_and_missing_database(env_file, tmp_path, capsys):
    assert run(["accounts", "add", "--env-file", str(env_file), "--label", "alpha"], f"{KEY_A}\n{SECRET_A}\n") == 0
    assert run(["accounts", "disable", "ghost", "--env-file", str(env_file)]) == 1
    assert "ghost" in capsys.readouterr().err
    path = tmp_path / "nodb.env"
    path.write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'none.db'}\n", encoding="utf-8")
    assert run(["accounts", "disable", "3", "--env-file", str(path)]) == 1
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
