"""Parsing simulated account balances: `--balances 1000,5000,500` or an accounts file (CSV name,balance or JSON)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

DEFAULT_BALANCES = "1000,5000,500"  # three simulated accounts (CLI commands, PAPER_BALANCES unset)


def parse_balances(text: str, *, variable: str = "--balances") -> dict[str, float]:
    """``"1000,5000,500"`` → {"Account 1": 1000.0, "Account 2": 5000.0, "Account 3": 500.0}."""
    parts = [p.strip() for p in str(text).split(",")]
    if not text or not any(parts):
        raise ValueError(f"{variable}: give at least one balance, e.g. 1000,5000,500")
    out = {}
    for i, part in enumerate(parts, 1):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{variable}: balance #{i} {part!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{variable}: balance #{i} must be a finite number >= 0, got {part!r}")
        out[f"Account {i}"] = value
    return out


def read_accounts_file(path: str | Path) -> dict[str, float]:
    """CSV with columns name,balance — or JSON {"name": balance} / [{"name":..,"balance":..}]."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"--accounts: file not found: {p}")
    text = p.read_text()
    if p.suffix.lower() == ".json":
        data = json.loads(text)
        rows = list(data.items()) if isinstance(data, dict) else [(d.get("name"), d.get("balance")) for d in data]
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or not {"name", "balance"} <= {f.strip().lower() for f in reader.fieldnames}:
            raise ValueError(f"--accounts: {p} needs columns name,balance")
        rows = [({k.strip().lower(): v for k, v in r.items()}["name"], {k.strip().lower(): v for k, v in r.items()}["balance"])
                for r in reader]
    out: dict[str, float] = {}
    for n, (name, bal) in enumerate(rows, 1):
        name = str(name or "").strip()
        if not name:
            raise ValueError(f"--accounts: {p} row {n}: empty name")
        if name in out:
            raise ValueError(f"--accounts: {p} row {n}: duplicate name {name!r}")
        try:
            value = float(bal)
        except (TypeError, ValueError):
            raise ValueError(f"--accounts: {p} row {n}: balance {bal!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--accounts: {p} row {n}: balance must be >= 0")
        out[name] = value
    if not out:
        raise ValueError(f"--accounts: {p} lists no accounts")
    return out
