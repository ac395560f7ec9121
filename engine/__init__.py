"""The shared execution engine: signals, sizing, risk, the multi-account executor and the watcher (no I/O)."""

from engine.config import ExecutionConfig
from engine.executor import MultiAccountExecutor
from engine.ports import Account, Exchange, Notifier
from engine.results import AccountResult, ExecutionStats, SignalSummary
from engine.signal import Signal, SignalError, parse_signal
from engine.watcher import BracketWatcher

__all__ = [
    "Account",
    "AccountResult",
    "BracketWatcher",
    "Exchange",
    "ExecutionConfig",
    "ExecutionStats",
    "MultiAccountExecutor",
    "Notifier",
    "Signal",
    "SignalError",
    "SignalSummary",
    "parse_signal",
]
