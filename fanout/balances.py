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


def read_accounts_file(path: str | Path, option: str = "--accounts") -> dict[str, float]:
    """CSV with columns name,balance — or JSON {"name": balance} / [{"name":..,"balance":..}].

    Every refusal names ``option``, the file and, for a bad entry, its row (CSV: the line number)."""
    p = Path(path)
    where = f"{option} {p}"
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{where}: file not found") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a text file (not UTF-8)") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot be read ({exc.strerror})") from None
    rows = _json_rows(text, where) if p.suffix.lower() == ".json" else _csv_rows(text, where)
    out: dict[str, float] = {}
    for label, name, bal in rows:
        name = str(name if name is not None else "").strip()
        if not name:
            raise ValueError(f"{where}: {label}: empty name")
        if name in out:
            raise ValueError(f"{where}: {label}: duplicate name {name!r}")
        try:
            value = float(bal)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {label}: balance {bal!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{where}: {label}: balance must be a finite number >= 0, got {bal!r}")
        out[name] = value
    if not out:
        raise ValueError(f"{where}: lists no accounts")
    return out


def _json_rows(text: str, where: str) -> list[tuple[str, object, object]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if isinstance(data, dict):
        return [(f"account {name!r}", name, bal) for name, bal in data.items()]
    if not isinstance(data, list):
        raise ValueError(f'{where}: expected a JSON object {{"name": balance}} or a list of '
                         f'{{"name": ..., "balance": ...}}, got {type(data).__name__}')
    rows = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict) or not {"name", "balance"} <= set(item):
            raise ValueError(f'{where}: entry {n}: expected {{"name": ..., "balance": ...}}, got {item!r:.60}')
        rows.append((f"entry {n}", item["name"], item["balance"]))
    return rows


def _csv_rows(text: str, where: str) -> list[tuple[str, object, object]]:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    try:
        table = [(n, next(csv.reader([line]))) for n, line in lines]
    except csv.Error as exc:
        raise ValueError(f"{where}: not a CSV file ({exc})") from None
    if not table:
        raise ValueError(f"{where}: empty; expected a header name,balance and one row per account")
    _, header = table[0]
    columns = [h.strip().lower() for h in header]
    if "name" not in columns or "balance" not in columns:
        raise ValueError(f"{where}: needs columns name,balance; found {', '.join(columns) or 'none'}")
    rows = []
    for n, values in table[1:]:
        if len(values) != len(columns):
            raise ValueError(f"{where}: line {n}: {len(values)} fields, the header has {len(columns)}")
        row = dict(zip(columns, values, strict=True))
        rows.append((f"line {n}", row["name"], row["balance"]))
    return rows
