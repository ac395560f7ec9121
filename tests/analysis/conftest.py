"""Helpers of the analysis tests (the demo fixtures demo_candles, demo_signals, demo_run are in tests/conftest.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import analysis


def copy_run(run: analysis.Run, dest: Path, **summary_changes) -> Path:
    """A copy of a run folder with summary.json top-level fields replaced."""
    shutil.copytree(run.path, dest)
    summary = json.loads((dest / "summary.json").read_text())
    summary.update(summary_changes)
    (dest / "summary.json").write_text(json.dumps(summary))
    return dest
