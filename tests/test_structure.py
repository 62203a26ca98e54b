"""The package's shape: no import circle (type-only imports included), and functions short enough to read whole."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "sb3_xinet"
MAX_LINES = 60
# constructors that take every SAC/TQC argument and pass each on by name, as SB3 and sb3-contrib write them
LONG_BY_DESIGN = {("xinet_sac", "__init__"), ("xinet_tqc", "__init__")}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("sb3_xinet", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        found[name] = ast.parse(path.read_text())
    return found


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules that ``tree`` imports, anywhere in it (``if TYPE_CHECKING:`` blocks included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found & known


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    trees = modules()
    graph = {name: imports(tree, set(trees)) - {name} for name, tree in trees.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for other in graph[name]:
            assert other not in path, "import circle: " + " -> ".join([*path[path.index(other) :], other])
            if other not in done:
                visit(other, [*path, other])
        done.add(name)

    for name in graph:
        visit(name, [name])


def test_every_function_is_short():
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_LINES
        and (name.split(".")[-1], node.name) not in LONG_BY_DESIGN
    ]
    assert not long, long
