"""What imports what in a jaxgen checkout, by layer: each `jaxgen/` subpackage (or top-level
module) and each of `experiments/`, `tools/`, `benchmarks/` is one node; an arrow A → B means
some module of A imports one of B (read from the source with `ast`, nothing is imported or run;
`tests/` is left out). Nodes are drawn on floors by the longest chain of arrows below them, so an
arrow that points up, or sideways, is a circle.

    python -m tools.import_layers [--repo DIR] [--out docs/figures/kit_layers.png]

Prints the floors, the arrows and any circles; `--out` writes the picture (matplotlib).
"""

import argparse
import ast
from collections import defaultdict
from pathlib import Path

TOP_LEVEL = ("experiments", "tools", "benchmarks")


def node_of(module: str, root: Path) -> str | None:
    """The node of a dotted module name (`jaxgen.methods.vapo` → `jaxgen/methods`,
    `jaxgen.moments` → `jaxgen/moments.py`), or None outside the project."""
    parts = module.split(".")
    if parts[0] in TOP_LEVEL:
        return parts[0]
    if parts[0] != "jaxgen" or len(parts) < 2:
        return None
    if (root / "jaxgen" / f"{parts[1]}.py").exists():
        return f"jaxgen/{parts[1]}.py"
    if (root / "jaxgen" / parts[1] / "__init__.py").exists():
        return f"jaxgen/{parts[1]}"
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of the modules `tree` imports (relative imports resolved)."""
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            names.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                pkg = module.split(".")
                pkg = pkg if is_package else pkg[:-1]
                pkg = pkg[: len(pkg) - (n.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in n.names)
    return names


def import_graph(root: Path) -> tuple[set[str], dict[str, set[str]]]:
    """`(nodes, arrows)`: every node with a Python file, and node → the nodes it imports."""
    nodes, arrows = set(), defaultdict(set)
    for top in ("jaxgen", *TOP_LEVEL):
        for path in sorted((root / top).rglob("*.py")):
            module = _module_name(path, root)
            src = node_of(module, root)
            if src is None:  # jaxgen/__init__.py
                continue
            nodes.add(src)
            tree = ast.parse(path.read_text(), filename=str(path))
            for name in _imported(tree, module, path.name == "__init__.py"):
                dst = node_of(name, root)
                if dst is not None and dst != src:
                    arrows[src].add(dst)
                    nodes.add(dst)
    return nodes, arrows


def module_circles(root: Path) -> list[list[str]]:
    """Import circles between single modules (e.g. two files of one package that import each
    other, which the node graph cannot show)."""
    modules = {}
    for top in ("jaxgen", *TOP_LEVEL):
        for path in sorted((root / top).rglob("*.py")):
            modules[_module_name(path, root)] = path
    arrows = defaultdict(set)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in _imported(tree, module, path.name == "__init__.py"):
            if name in modules and name != module and not module.startswith(name + "."):
                arrows[module].add(name)
    # a package's __init__ re-exporting its own modules is not a circle
    for module in list(arrows):
        arrows[module] = {m for m in arrows[module] if not (m + ".").startswith(module + ".")}
    return circles(set(modules), arrows)


def circles(nodes, arrows) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in arrows.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def floors(nodes, arrows) -> dict[str, int]:
    """Each node's floor: 0 for a node that imports nothing in the project, else one above the
    highest node it imports (members of a circle share the circle's floor)."""
    group_of = {v: tuple(g) for g in circles(nodes, arrows) for v in g}
    floor: dict[str, int] = {}

    def height(v, seen=()):
        if v in floor:
            return floor[v]
        below = [
            height(w, (*seen, v))
            for w in arrows.get(v, ())
            if w not in seen and group_of.get(w) != group_of.get(v, (v,))
        ]
        floor[v] = 1 + max(below) if below else 0
        return floor[v]

    for v in sorted(nodes):
        height(v)
    return floor


def draw(path: Path, nodes, arrows, floor, title: str, bad=frozenset()) -> None:
    """The floors as rows, arrows grey (down) or red (up or sideways: a circle); nodes in `bad`
    (in a circle, of nodes or of their modules) red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_floor = defaultdict(list)
    for v in sorted(nodes):
        by_floor[floor[v]].append(v)
    pos = {}
    for f, members in by_floor.items():
        for i, v in enumerate(members):
            lift = 0.18 * (i % 2) if len(members) > 6 else 0.0  # stagger a crowded floor
            pos[v] = ((i + 1) / (len(members) + 1), f + lift)
    height = max(by_floor) + 1
    fig, ax = plt.subplots(figsize=(15, 1.3 * height + 1))
    bad = set(bad) | {v for g in circles(nodes, arrows) for v in g}
    for v, targets in arrows.items():
        for w in targets:
            up = floor[w] >= floor[v]
            ax.annotate(
                "",
                xy=pos[w],
                xytext=pos[v],
                arrowprops=dict(
                    arrowstyle="-|>", color="red" if up else "0.6", lw=0.7, shrinkA=9, shrinkB=9
                ),
            )
    for v, (x, y) in pos.items():
        ax.text(
            x,
            y,
            v,
            ha="center",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="round", fc="#fdd" if v in bad else "#eef", ec="0.3"),
        )
    ax.set_ylim(-0.6, height - 0.4)
    ax.set_xlim(0, 1)
    ax.set_yticks(range(height))
    ax.set_ylabel("floor (longest import chain below)")
    ax.set_xticks([])
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=".", help="a jaxgen checkout (default: here)")
    ap.add_argument("--out", default="", help="write the picture here (PNG)")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    root = Path(args.repo).resolve()
    nodes, arrows = import_graph(root)
    floor = floors(nodes, arrows)
    groups = circles(nodes, arrows)
    n_arrows = sum(len(t) for t in arrows.values())
    print(f"{len(nodes)} nodes on {max(floor.values()) + 1} floors, {n_arrows} arrows")
    for f in sorted(set(floor.values()), reverse=True):
        print(f"floor {f}: {', '.join(sorted(v for v in nodes if floor[v] == f))}")
    for v in sorted(arrows):
        print(f"{v} -> {', '.join(sorted(arrows[v]))}")
    print(f"circles between nodes: {groups or 'none'}")
    print(f"circles between modules: {module_circles(root) or 'none'}")
    print("(red in the picture: a node in a circle, or holding modules in one)")
    if args.out:
        in_circle = {node_of(m, root) for g in module_circles(root) for m in g}
        draw(Path(args.out), nodes, arrows, floor, args.title or root.name, in_circle)
        print(f"picture: {args.out}")


if __name__ == "__main__":
    main()
