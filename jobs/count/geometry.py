"""Lines and zones: parsing, validation, and the identity of a set of them.

Coordinates are pixels of the displayed frame, like the track records' boxes (x to the
right, y down). A line is the segment A=(x1, y1) -> B=(x2, y2); its orientation decides
which side is `in`: walking from A to B as drawn on the screen, `in` is the right-hand
side. A crossing from the left-hand side to the right-hand side is `in`, the reverse `out`
(a line drawn left to right: moving down the picture is `in`). A zone is a simple polygon
of at least 3 vertices.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class CountError(ValueError):
    """Bad input to `vidtrack count` (a line, a zone, a class, a pattern, a dataset): one line,
    naming what is wrong; the command exits 2 and writes nothing."""


@dataclass(frozen=True)
class Line:
    name: str
    ax: float
    ay: float
    bx: float
    by: float

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        return (self.ax, self.ay), (self.bx, self.by)

    def describe(self) -> str:
        return f"line {self.name!r} ({_num(self.ax)},{_num(self.ay)})-({_num(self.bx)},{_num(self.by)})"

    def in_normal(self) -> tuple[float, float]:
        """Unit vector pointing to the `in` side (the right-hand side of A->B on the screen)."""
        dx, dy = self.bx - self.ax, self.by - self.ay
        n = math.hypot(dx, dy)
        return -dy / n, dx / n


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[tuple[float, float], ...]

    def describe(self) -> str:
        return f"zone {self.name!r} " + "-".join(f"({_num(x)},{_num(y)})" for x, y in self.points)


Shape = Line | Zone


def _num(v: float) -> str:
    return f"{v:g}"


def _split(spec: str, what: str) -> tuple[str, list[float]]:
    name, sep, coords = spec.partition("=")
    name = name.strip()
    if not sep or not NAME_RE.match(name):
        raise CountError(f"{what} {spec!r}: expected NAME=X1,Y1,X2,Y2... with a name of letters, digits, '_', "
                         "'-' or '.'")
    try:
        values = [float(v) for v in coords.split(",")]
    except ValueError:
        raise CountError(f"{what} {name!r}: {coords!r} is not a list of numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise CountError(f"{what} {name!r}: coordinates must be finite numbers")
    return name, values


def parse_line(spec: str) -> Line:
    """`NAME=X1,Y1,X2,Y2` -> Line (a zero-length line is refused)."""
    name, v = _split(spec, "line")
    if len(v) != 4:
        raise CountError(f"line {name!r}: expected 4 numbers X1,Y1,X2,Y2, got {len(v)}")
    return make_line(name, v)


def make_line(name: str, v: Sequence[float]) -> Line:
    line = Line(name, *(float(x) for x in v))
    if math.hypot(line.bx - line.ax, line.by - line.ay) < 1.0:
        raise CountError(f"{line.describe()} has zero length: its two ends must be at least 1 pixel apart")
    return line


def parse_zone(spec: str) -> Zone:
    """`NAME=X1,Y1,X2,Y2,X3,Y3[,...]` -> Zone (fewer than 3 points or a self-crossing outline is refused)."""
    name, v = _split(spec, "zone")
    return make_zone(name, v)


def make_zone(name: str, v: Sequence[float]) -> Zone:
    if len(v) % 2:
        raise CountError(f"zone {name!r}: expected X,Y pairs, got an odd count of numbers ({len(v)})")
    pts = tuple((float(v[i]), float(v[i + 1])) for i in range(0, len(v), 2))
    if len(pts) > 1 and pts[0] == pts[-1]:  # a closed outline written with its first point repeated
        pts = pts[:-1]
    zone = Zone(name, pts)
    if len(pts) < 3:
        raise CountError(f"{zone.describe()}: a zone needs at least 3 points, got {len(pts)}")
    crossing = _self_crossing(pts)
    if crossing:
        raise CountError(f"{zone.describe()} crosses itself (edges {crossing[0] + 1} and {crossing[1] + 1}): "
                         "give its points in order around the outline")
    if abs(polygon_area(pts)) < 1.0:
        raise CountError(f"{zone.describe()} encloses no area (its points are on one line)")
    return zone


def polygon_area(pts: Sequence[tuple[float, float]]) -> float:
    return 0.5 * sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(pts, [*pts[1:], pts[0]], strict=True))


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _segments_intersect(p1: tuple[float, float], p2: tuple[float, float], q1: tuple[float, float],
                        q2: tuple[float, float]) -> bool:
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4):
        return True

    def on(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: float) -> bool:
        return d == 0 and min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def _self_crossing(pts: Sequence[tuple[float, float]]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that touch or cross, if any (edge i: pts[i] -> pts[i+1])."""
    n = len(pts)
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a vertex
            if _segments_intersect(*edges[i], *edges[j]):
                return i, j
    return None


def check_in_frame(shapes: Iterable[Shape], width: int, height: int, video: str) -> None:
    """Every point of every line and zone must lie in the frame [0, width] x [0, height]."""
    for s in shapes:
        for x, y in s.points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise CountError(f"{s.describe()} lies outside the {width}x{height} frame of video {video!r} "
                                 f"(point ({_num(x)},{_num(y)}))")


def check_names(lines: Sequence[Line], zones: Sequence[Zone], where: str) -> None:
    names = [li.name for li in lines] + [z.name for z in zones]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CountError(f"{where}: the name {dup[0]!r} is used twice (each line and zone needs its own name)")


def shape_dict(s: Shape) -> dict[str, object]:
    if isinstance(s, Line):
        return {"kind": "line", "name": s.name, "points": [list(p) for p in s.points]}
    return {"kind": "zone", "name": s.name, "points": [list(p) for p in s.points]}


def set_id(document: object) -> str:
    """A short, stable id of a count's definition (lines, zones and everything else that
    changes its events): the name of the folder its events go to."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
