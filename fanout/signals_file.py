"""Reading signal files: CSV (time, symbol, side, entry, stop_loss, take_profit[, id, leverage]) or JSON lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from engine.signal import Signal, SignalError, parse_signal

REQUIRED = ("time", "symbol", "side", "entry", "stop_loss", "take_profit")


class SignalFileError(ValueError):
    """A signal file could not be read; names the file and line."""


def parse_line(line: str, *, path: str = "<input>", lineno: int = 0, fmt: str = "jsonl",
               header: list[str] | None = None) -> Signal:
    """Parse one JSON-lines or CSV line (with its header) into a Signal, naming file, line and field on error."""
    try:
        if fmt == "jsonl":
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SignalFileError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        else:
            values = next(csv.reader([line]))
            data = dict(zip(header or [], values, strict=False))
        return parse_signal(data)
    except SignalError as exc:
        raise SignalFileError(f"{path}:{lineno}: {exc}") from None


def read_signals(path: str | Path, *, require_time: bool = True) -> list[Signal]:
    """All signals of a file; the first bad line raises :class:`SignalFileError` and nothing is returned."""
    p = Path(path)
    if not p.exists():
        raise SignalFileError(f"signals file not found: {p}")
    text = p.read_text(encoding="utf-8-sig")
    signals: list[Signal] = []
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                signals.append(parse_line(line, path=str(p), lineno=n))
    else:
        reader = csv.DictReader(text.splitlines())
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header and (c != "time" or require_time)]
        if missing:
            raise SignalFileError(f"{p}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'none'}")
        for n, row in enumerate(reader, 2):
            data = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            if not any(data.values()):
                continue
            try:
                signals.append(parse_signal(data))
            except SignalError as exc:
                raise SignalFileError(f"{p}:{n}: {exc}") from None
    if require_time:
        for s in signals:
            if s.time is None:
                raise SignalFileError(f"{p}: signal {s.id} has no time")
    ids = [s.id for s in signals]
    dupes = sorted({i for i in ids if ids.count(i) > 1}) if len(ids) != len(set(ids)) else []
    if dupes:
        raise SignalFileError(f"{p}: duplicate signal id(s) {', '.join(dupes[:5])}")
    return signals
