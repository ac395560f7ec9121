"""Live room: read settings from production.env overlaid with the real environment (real variables win)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

DEFAULT_ENV_FILE = "production.env"


def load_env(
    env_file: str | Path | None = DEFAULT_ENV_FILE, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the settings: values from ``env_file`` (if it exists) overlaid with ``environ`` (default os.environ).

    A missing default file (``production.env`` in the working directory) is fine: only the real environment is
    used. A missing file that was named explicitly is an error naming the path. ``None`` skips the file.
    A line without ``=`` (``BINANCE_API_KEY``) becomes an empty string so that validation can name it.
    Pure: os.environ is never modified.
    """
    values: dict[str, str] = {}
    if env_file is not None:
        path = Path(env_file)
        if path.is_file():
            values = {k: ("" if v is None else v) for k, v in dotenv_values(path).items()}
        elif path.exists():
            raise FileNotFoundError(f"--env-file {path} is not a regular file")
        elif str(env_file) != DEFAULT_ENV_FILE:
            raise FileNotFoundError(f"--env-file {path} does not exist")
    values.update(os.environ if environ is None else environ)
    return values
