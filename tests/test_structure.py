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


# -- size and naming targets (issue 18), on jobs/ and tracking/ ------------------------------

SIZED = ("tracking", "jobs")
MAX_FUNCTION_LINES, MAX_CLASS_LINES, MAX_MODULE_LINES = 50, 150, 400
MAX_MODULES_PER_PREFIX = 2  # a third `prefix_*.py` beside two others means a package is waiting


def _sized_modules() -> list[Path]:
    return [p for pkg in SIZED for p in sorted((REPO / pkg).rglob("*.py"))]


def _definitions(path: Path) -> list[tuple[str, str, int]]:
    """(kind, qualified name, lines from its `def`/`class` line to its last) of every function,
    method and class in the module, nested ones included."""
    out: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                name = f"{prefix}{child.name}"
                out.append((kind, name, (child.end_lineno or child.lineno) - child.lineno + 1))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), str(path)), "")
    return out


def _too_long(kind: str, limit: int) -> list[str]:
    return [f"{p.relative_to(REPO)}:{name} {n} lines" for p in _sized_modules()
            for k, name, n in _definitions(p) if k == kind and n > limit]


def test_no_function_over_50_lines() -> None:
    assert _too_long("function", MAX_FUNCTION_LINES) == []


def test_no_class_over_150_lines() -> None:
    assert _too_long("class", MAX_CLASS_LINES) == []


def test_no_module_over_400_lines() -> None:
    long = [f"{p.relative_to(REPO)} {n} lines" for p in _sized_modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert long == []


def test_no_folder_of_modules_sharing_a_prefix() -> None:
    """`report_data.py`, `report_sheet.py`, `report_html.py` side by side are a `report/` package."""
    crowded = {}
    for pkg in SIZED:
        for folder in sorted({p.parent for p in (REPO / pkg).rglob("*.py")}):
            prefixes: dict[str, list[str]] = {}
            for p in sorted(folder.glob("*.py")):
                if "_" in p.stem.strip("_"):
                    prefixes.setdefault(p.stem.split("_")[0], []).append(p.name)
            crowded.update({f"{folder.relative_to(REPO)}/{k}_": v for k, v in prefixes.items()
                            if k and len(v) > MAX_MODULES_PER_PREFIX})
    assert crowded == {}


def test_the_size_checks_can_fail(tmp_path: Path) -> None:
    """The measures above, on a module made one line over each target."""
    lines = ["class Big:", "    def f(self) -> None:"]
    lines += [f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1)]  # f: 50 lines
    lines += ["    def g(self) -> None:"] + [f"        y{i} = {i}" for i in range(MAX_FUNCTION_LINES)]  # g: 51
    lines += [f"    z{i} = {i}" for i in range(MAX_CLASS_LINES - len(lines) + 1)]  # Big: 151 lines
    src = tmp_path / "big.py"
    src.write_text("\n".join(lines) + "\n")
    found = {name: n for _, name, n in _definitions(src)}
    assert (found["Big.f"], found["Big.g"], found["Big"]) == (MAX_FUNCTION_LINES, MAX_FUNCTION_LINES + 1,
                                                             MAX_CLASS_LINES + 1)
