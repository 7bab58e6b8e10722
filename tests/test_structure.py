"""House rules that reading the tree should confirm, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tracking", "jobs", "bench")
# modules not yet moved under the "vidtrack" logger hierarchy; only ever shrinks
NOT_YET_UNDER_VIDTRACK: set[str] = set()


def _logger_names(path: Path, module: str) -> list[str]:
    """The names of the module-level loggers (`log = logging.getLogger(...)` at top level;
    `__name__` is the module's name)."""
    names = []
    for stmt in ast.parse(path.read_text(), str(path)).body:
        node = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
                and node.args):
            names.append(_text(node.args[0], module, path))
    return names


def _text(node: ast.expr, module: str, path: Path) -> str:
    """A string literal, `__name__`, or a `+` of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id == "__name__":
        return module
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left, module, path) + _text(node.right, module, path)
    raise AssertionError(f"{path}:{node.lineno}: logger name {ast.unparse(node)!r} is not a literal or __name__")


def test_every_logger_is_under_vidtrack() -> None:
    """Configuring the "vidtrack" logger configures every module's: the convention is
    `logging.getLogger("vidtrack." + __name__)` (the CLI's own is "vidtrack")."""
    outside = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            bad = [n for n in _logger_names(path, module) if n != "vidtrack" and not n.startswith("vidtrack.")]
            if bad:
                outside[module] = bad
    assert set(outside) <= NOT_YET_UNDER_VIDTRACK, outside
    assert _logger_names(REPO / "tracking" / "pipeline.py", "tracking.pipeline") == ["vidtrack.tracking.pipeline"]
