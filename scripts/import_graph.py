"""The import graph of src/sparse_guidance: one line per module with the package modules it imports,
then any cycle and any function-local import of the package (there should be none).

    python scripts/import_graph.py            # exit 1 on a cycle or a function-local package import
    python scripts/import_graph.py --dot      # Graphviz DOT (| dot -Tpng -o imports.png)
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "sparse_guidance"


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = p.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imported(name: str, path: Path, known: set[str]) -> tuple[set[str], list[int]]:
    """(package modules ``name`` imports at module level, lines of package imports inside functions)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top, local = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        hits = {t for t in targets if t in known and t != name}
        if hits and node.col_offset > 0:
            local.append(node.lineno)
        elif hits:
            top |= hits
    return top, local


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(n, stack):
        state[n] = "open"
        for m in sorted(graph[n]):
            if state.get(m) == "open":
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    return found


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mods = modules()
    graph, local = {}, {}
    for name, path in mods.items():
        graph[name], local[name] = imported(name, path, set(mods))
    strip = lambda m: m.removeprefix(f"{PACKAGE}.") or PACKAGE  # noqa: E731
    if "--dot" in argv:
        print("digraph imports {")
        for n, deps in graph.items():
            for d in sorted(deps):
                print(f'  "{strip(n)}" -> "{strip(d)}";')
        print("}")
    else:
        for n, deps in graph.items():
            print(f"{strip(n):28s} -> {', '.join(sorted(map(strip, deps))) or '-'}")
    bad = cycles(graph)
    for c in bad:
        print("cycle:", " -> ".join(map(strip, c)), file=sys.stderr)
    for n, lines in local.items():
        for line in lines:
            print(f"function-local import of the package: {mods[n].relative_to(SRC.parent)}:{line}", file=sys.stderr)
    if not bad and not any(local.values()):
        print(f"{len(graph)} modules, no import cycle, no function-local import of the package", file=sys.stderr)
    return 1 if bad or any(local.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
