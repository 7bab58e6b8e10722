"""What one count is: the lines and zones (on the command line and per camera from a TOML file),
the selection (classes, videos, keys, time window), the buckets, the anchor, the hysteresis and
the clock. Everything here is checked before the dataset is read.

The TOML file (every key optional; command-line flags override the top-level ones):

    anchor = "bottom_center"          # or "center"
    hysteresis_px = 8
    bucket = "1h"
    [clock]
    pattern = "*/%Y-%m-%d/%H-%M.mp4"  # wall-clock start of each video from its source key
    timezone = "Europe/Berlin"        # of the times in the keys (default UTC)
    [[camera]]                        # the first entry whose key glob matches a video applies
    key = "cam1/*"
    lines = { door = [100, 400, 600, 400] }
    zones = { queue = [100, 100, 300, 100, 300, 300] }
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobs.count.geometry import CountError, Line, Zone, check_names, make_line, make_zone, shape_dict

ANCHORS = ("bottom_center", "center")
HYSTERESIS_PX = 8.0  # a track must get this far past a line (or a zone's outline) to change sides
_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}
_FIELDS = {"Y": r"(?P<Y>\d{4})", "y": r"(?P<y>\d{2})", "m": r"(?P<m>\d{1,2})", "d": r"(?P<d>\d{1,2})",
           "H": r"(?P<H>\d{1,2})", "M": r"(?P<M>\d{1,2})", "S": r"(?P<S>\d{1,2})"}


@dataclass(frozen=True)
class Camera:
    """Lines and zones for the videos whose source key matches `key` (fnmatch, case-sensitive)."""

    key: str
    lines: tuple[Line, ...] = ()
    zones: tuple[Zone, ...] = ()


CONTAINER_CLOCK = "container"  # the clock pattern that means: the container's creation_time


@dataclass(frozen=True)
class Clock:
    """Wall-clock start of a video from its source key: `*` matches anything, `%Y %y %m %d %H
    %M %S` the date and time fields (strptime's), `%%` a percent sign. The pattern `container`
    takes each video's start from its container instead (`creation_time`, recorded in `_done`
    when the video was processed)."""

    pattern: str
    timezone: str = "UTC"
    regex: re.Pattern[str] | None = field(init=False, compare=False, repr=False)
    tz: tzinfo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", None if self.from_container else _pattern_regex(self.pattern))
        try:
            object.__setattr__(self, "tz", UTC if self.timezone.upper() == "UTC" else ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise CountError(f"clock timezone {self.timezone!r} is not a known time zone (e.g. UTC, "
                             "Europe/Berlin)") from None

    @property
    def from_container(self) -> bool:
        return self.pattern == CONTAINER_CLOCK

    def start_of(self, key: str, recorded: str) -> float | None:
        """The video's start as a UNIX time from its key, or from its container's `recorded`
        creation_time (ISO 8601; a time without a zone is UTC); None when unknown."""
        if not self.from_container:
            return self.start(key)
        if not recorded:
            return None
        try:
            d = datetime.fromisoformat(recorded.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()

    def start(self, key: str) -> float | None:
        """The video's start as a UNIX time, or None when the key does not match the pattern."""
        assert self.regex is not None
        m = self.regex.fullmatch(key)
        if not m:
            return None
        g = m.groupdict()
        year = int(g["Y"]) if g.get("Y") else 2000 + int(g["y"])
        try:
            d = datetime(year, int(g.get("m") or 1), int(g.get("d") or 1), int(g.get("H") or 0),
                         int(g.get("M") or 0), int(g.get("S") or 0), tzinfo=self.tz)
        except ValueError as e:
            raise CountError(f"clock pattern {self.pattern!r}: key {key!r} holds no valid time ({e})") from None
        return d.timestamp()


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "%" and i + 1 < len(pattern):
            f = pattern[i + 1]
            if f == "%":
                out.append("%")
            elif f in _FIELDS and f"(?P<{f}>" not in "".join(out):
                out.append(_FIELDS[f])
            else:
                raise CountError(f"clock pattern {pattern!r}: %{f} is not one of %Y %y %m %d %H %M %S (once each)")
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    regex = "".join(out)
    if "(?P<Y>" not in regex and "(?P<y>" not in regex:
        raise CountError(f"clock pattern {pattern!r}: it needs a year (%Y or %y)")
    return re.compile(regex)


@dataclass(frozen=True)
class CountSpec:
    lines: tuple[Line, ...] = ()  # every selected video (the command line)
    zones: tuple[Zone, ...] = ()
    cameras: tuple[Camera, ...] = ()  # per key glob (the TOML file)
    classes: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    since: float | None = None  # footage seconds, or a UNIX time when `wall_window`
    until: float | None = None
    wall_window: bool = False
    bucket_s: float | None = None  # None: one bucket for the whole selection
    anchor: str = "bottom_center"
    hysteresis_px: float = HYSTERESIS_PX
    clock: Clock | None = None

    def shapes_for(self, key: str) -> tuple[tuple[Line, ...], tuple[Zone, ...]]:
        """The lines and zones that apply to the video with this source key."""
        cam = next((c for c in self.cameras if fnmatch.fnmatchcase(key, c.key)), None)
        lines, zones = self.lines + (cam.lines if cam else ()), self.zones + (cam.zones if cam else ())
        check_names(lines, zones, f"video {key!r}")
        return lines, zones

    def selects(self, video_id: str, key: str) -> bool:
        return ((not self.videos or video_id in self.videos)
                and (not self.keys or any(fnmatch.fnmatchcase(key, k) for k in self.keys)))

    def check(self) -> None:
        if not (self.lines or self.zones or any(c.lines or c.zones for c in self.cameras)):
            raise CountError("nothing to count: give --line NAME=X1,Y1,X2,Y2, --zone NAME=X1,Y1,... or --config "
                             "FILE.toml with [[camera]] lines or zones")
        if self.anchor not in ANCHORS:
            raise CountError(f"anchor {self.anchor!r}: expected one of {', '.join(ANCHORS)}")
        if not self.hysteresis_px >= 0:
            raise CountError(f"hysteresis {self.hysteresis_px!r}: must be 0 or more pixels")
        if self.wall_window and self.clock is None:
            raise CountError("a date-time window needs the wall clock: give --clock-pattern (or [clock] pattern)")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise CountError("time window: --until must come after --since")
        check_names(self.lines, self.zones, "the command line")

    def document(self) -> dict[str, Any]:
        """Everything that changes this count's events, as JSON (its `set_id` is a hash of it)."""
        return {"lines": [shape_dict(s) for s in self.lines], "zones": [shape_dict(s) for s in self.zones],
                "cameras": [{"key": c.key, "shapes": [*map(shape_dict, c.lines), *map(shape_dict, c.zones)]}
                            for c in self.cameras],
                "classes": sorted(self.classes), "videos": sorted(self.videos), "keys": sorted(self.keys),
                "since": self.since, "until": self.until, "wall_window": self.wall_window,
                "anchor": self.anchor, "hysteresis_px": self.hysteresis_px,
                "clock": {"pattern": self.clock.pattern, "timezone": self.clock.timezone} if self.clock else None}


def parse_bucket(text: str) -> float:
    """`15min`, `1h`, `30s`, `1d` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", text.lower())
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise CountError(f"bucket {text!r}: expected a duration such as 30s, 15min, 1h or 1d")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_time(text: str, what: str) -> tuple[float, bool]:
    """Seconds of footage (`90`, `1.5`) or an ISO date-time (`2026-11-20T08:00`, UTC unless it
    says) -> (value, is_wall_clock)."""
    try:
        return float(text), False
    except ValueError:
        pass
    try:
        d = datetime.fromisoformat(text)
    except ValueError:
        raise CountError(f"{what} {text!r}: expected seconds of footage (e.g. 90) or a date-time "
                         "(e.g. 2026-11-20T08:00)") from None
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp(), True


def _shapes(table: Any, where: str, make: Any) -> tuple[Any, ...]:
    if not isinstance(table, dict):
        raise CountError(f"{where}: expected a table of NAME = [x1, y1, ...]")
    out = []
    for name, coords in table.items():
        if not isinstance(coords, list) or not all(isinstance(v, int | float) for v in coords):
            raise CountError(f"{where}.{name}: expected a list of numbers")
        out.append(make(str(name), coords))
    return tuple(out)


def load_toml(path: Path) -> dict[str, Any]:
    """Read a count file: {"cameras": (Camera, ...), "clock": Clock | None, and any of anchor,
    hysteresis_px, bucket}."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise CountError(f"count file {path}: {e}") from None
    unknown = set(data) - {"anchor", "hysteresis_px", "bucket", "clock", "camera"}
    if unknown:
        raise CountError(f"count file {path}: unknown key {sorted(unknown)[0]!r} (expected anchor, hysteresis_px, "
                         "bucket, [clock], [[camera]])")
    cameras = []
    for i, cam in enumerate(data.get("camera", [])):
        where = f"{path}: camera {i + 1}"
        if not isinstance(cam, dict) or not isinstance(cam.get("key"), str):
            raise CountError(f"{where}: needs key = \"GLOB\" (source keys it applies to)")
        cameras.append(Camera(cam["key"], _shapes(cam.get("lines", {}), f"{where} lines", make_line),
                              _shapes(cam.get("zones", {}), f"{where} zones", make_zone)))
        check_names(cameras[-1].lines, cameras[-1].zones, where)
    clock = data.get("clock")
    out: dict[str, Any] = {k: data[k] for k in ("anchor", "hysteresis_px", "bucket") if k in data}
    out["cameras"] = tuple(cameras)
    out["clock"] = Clock(str(clock["pattern"]), str(clock.get("timezone", "UTC"))) \
        if isinstance(clock, dict) and "pattern" in clock else None
    return out


def merge_classes(given: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c.strip() for c in given if c.strip()))


def spec_from_file(path: Path) -> CountSpec:
    """A count described by a TOML file alone (e.g. the lines and zones `vidtrack report` is given)."""
    data = load_toml(path)
    bucket = data.get("bucket")
    return CountSpec(cameras=data["cameras"], clock=data["clock"], anchor=str(data.get("anchor", "bottom_center")),
                     hysteresis_px=float(data.get("hysteresis_px", HYSTERESIS_PX)),
                     bucket_s=parse_bucket(str(bucket)) if bucket else None)
