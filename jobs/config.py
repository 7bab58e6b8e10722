"""Load a `PipelineConfig` from a TOML file plus ``--set section.key=value`` overrides."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracking.config import ConfigError, PipelineConfig


def parse_override(item: str) -> tuple[str, str, Any]:
    """'tracker.max_age=60' -> ('tracker', 'max_age', 60). The value is read as a
    TOML value (numbers, booleans, [lists], "strings"); anything else is a bare string."""
    key, sep, raw = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. tracker.max_age=60")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, name, value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {str(p)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {e}") from e
    for item in overrides:
        section, name, value = parse_override(item)
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"--set {item!r}: {section!r} is not a table in the config file")
        table[name] = value
    return PipelineConfig.from_dict(data)
