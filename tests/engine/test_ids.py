"""Tests for engine/ids.py: client order ids are deterministic, unique per leg and account, Binance-valid."""

from __future__ import annotations

import re

import pytest

from engine.ids import LEGS, client_order_id, is_valid_client_order_id

BINANCE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")  # Binance's newClientOrderId rule


def test_deterministic():
    assert client_order_id("sig-1", "Account 1", "E") == client_order_id("sig-1", "Account 1", "E")


@pytest.mark.parametrize("signal_id, account", [
    ("sig-1", "Account 1"), ("x" * 64, "a very long account label with spaces & ünïcödé 🚀" * 3), ("", ""),
])
def test_length_and_alphabet(signal_id, account):
    for leg in LEGS:
        cid = client_order_id(signal_id, account, leg)
        assert len(cid) <= 36
        assert BINANCE.match(cid), cid
        assert is_valid_client_order_id(cid)
        assert cid.startswith("fo-") and cid.endswith(f"-{leg}")


def test_distinct_per_signal_account_and_leg():
    ids = {client_order_id(s, a, leg) for s in ("s1", "s2") for a in ("Account 1", "Account 2") for leg in LEGS}
    assert len(ids) == 2 * 2 * len(LEGS)


def test_account_label_never_appears_in_the_id():
    assert "Alice" not in client_order_id("sig", "Alice", "SL")


def test_bad_leg():
    with pytest.raises(ValueError, match="leg"):
        client_order_id("sig", "Account 1", "TP2")


@pytest.mark.parametrize("cid", ["", "x" * 37, "has space", "bad#char", "ü"])
def test_invalid_ids_are_recognised(cid):
    assert not is_valid_client_order_id(cid)
