"""Reading signal files: CSV (time, symbol, side, entry, stop_loss, take_profit[, id, leverage]) or JSON lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from engine.signal import Signal, SignalError, parse_signal

REQUIRED = ("time", "symbol", "side", "entry", "stop_loss", "take_profit")


class SignalFileError(ValueError):
    """A signal file could not be read; names the file and line."""


def is_json_lines(path: str | Path) -> bool:
    """JSON lines (``.jsonl``, ``.json``, ``.ndjson``) rather than CSV, by the file name."""
    return Path(path).suffix.lower() in (".jsonl", ".json", ".ndjson")


def read_text(path: str | Path) -> str:
    """The file's text (a UTF-8 byte-order mark dropped); :class:`SignalFileError` when it cannot be read as text."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SignalFileError(f"signals file not found: {p}") from None
    except UnicodeDecodeError:
        text = "\x00"
    except OSError as exc:
        raise SignalFileError(f"{p}: cannot be read ({exc.strerror})") from None
    if "\x00" in text:
        raise SignalFileError(f"{p}: not a text file (not UTF-8); expected CSV or JSON lines")
    return text


def csv_fields(line: str, *, path: str, lineno: int) -> list[str]:
    """One CSV line's fields, stripped."""
    try:
        return [v.strip() for v in next(csv.reader([line]), [])]
    except csv.Error as exc:
        raise SignalFileError(f"{path}:{lineno}: not a CSV line ({exc})") from None


def line_data(line: str, *, path: str, lineno: int, header: list[str] | None = None) -> dict[str, Any]:
    """One line as the mapping :func:`parse_signal` takes: a JSON object (``header`` None) or a CSV row under
    ``header`` (lower-case column names). A row with more fields than the header is refused; one with fewer
    leaves the last columns empty (a missing required field is then named by the signal's validation)."""
    if header is None:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SignalFileError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise SignalFileError(f"{path}:{lineno}: expected a JSON object, got {type(data).__name__}")
        return {str(k).strip().lower(): v for k, v in data.items()}
    values = csv_fields(line, path=path, lineno=lineno)
    if len(values) > len(header):
        raise SignalFileError(f"{path}:{lineno}: {len(values)} fields, the header has {len(header)} "
                              f"({', '.join(header)})")
    return dict(zip(header, values + [""] * (len(header) - len(values)), strict=True))


def read_signals(path: str | Path, *, require_time: bool = True) -> list[Signal]:
    """All signals of a file; the first bad line raises :class:`SignalFileError` and nothing is returned.

    Blank lines and lines starting with ``#`` are skipped; in a CSV file the first other line is the header."""
    p = Path(path)
    text = read_text(p)
    header: list[str] | None = None
    signals: list[Signal] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if header is None and not is_json_lines(p):
            header = [h.lower() for h in csv_fields(line, path=str(p), lineno=n)]
            missing = [c for c in REQUIRED if c not in header and (c != "time" or require_time)]
            if missing:
                raise SignalFileError(f"{p}: missing column(s) {', '.join(missing)}; "
                                      f"found {', '.join(header) or 'none'}")
            continue
        data = line_data(line, path=str(p), lineno=n, header=header)
        if header is not None and not any(data.values()):
            continue  # a row of empty cells (a spreadsheet's trailing ",,,,,")
        try:
            signals.append(parse_signal(data))
        except SignalError as exc:
            raise SignalFileError(f"{p}:{n}: {exc}") from None
    if header is None and not is_json_lines(p):
        raise SignalFileError(f"{p}: empty; expected a header ({', '.join(REQUIRED)}) and one signal per line")
    if require_time:
        for s in signals:
            if s.time is None:
                raise SignalFileError(f"{p}: signal {s.id} has no time")
    ids = [s.id for s in signals]
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(ids) != len(set(ids)) else []
    if dupes:
        raise SignalFileError(f"{p}: duplicate signal id(s) {', '.join(dupes[:5])}")
    return signals
