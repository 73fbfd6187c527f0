"""The layering of docs/results.md "The kit's structure", held against the code: no import
circles (between packages or between modules), the library never imports the layers above it,
`methods/` imports neither `metrics/` nor `train/`, and tests import no benchmark."""

import re
from pathlib import Path

from tools.import_layers import circles, floors, import_graph, module_circles

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_circles():
    nodes, arrows = import_graph(ROOT)
    assert circles(nodes, arrows) == []
    assert module_circles(ROOT) == []


def test_library_layers():
    nodes, arrows = import_graph(ROOT)
    for node, targets in arrows.items():
        if node.startswith("jaxgen/"):
            above = {t for t in targets if not t.startswith("jaxgen/")}
            assert not above, f"{node} imports {sorted(above)}"
    assert not arrows["jaxgen/methods"] & {"jaxgen/metrics", "jaxgen/train"}
    floor = floors(nodes, arrows)
    assert floor["benchmarks"] > floor["tools"] > floor["experiments"] > floor["jaxgen/methods"]


def test_tests_import_no_benchmark():
    pattern = re.compile(r"^\s*(from|import) benchmarks\b", re.M)
    offenders = [p.name for p in (ROOT / "tests").glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_the_graph_sees_a_planted_circle(tmp_path):
    """The reader finds what it is meant to: two modules of one package that import each other,
    and a library package importing the experiments."""
    pkg = tmp_path / "jaxgen" / "metrics"
    pkg.mkdir(parents=True)
    (tmp_path / "jaxgen" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from jaxgen.metrics import b\n")
    (pkg / "b.py").write_text("def f():\n    from jaxgen.metrics.a import g\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "run.py").write_text("import jaxgen.metrics.a\n")
    (pkg / "c.py").write_text("from experiments import run\n")
    nodes, arrows = import_graph(tmp_path)
    assert module_circles(tmp_path) == [["jaxgen.metrics.a", "jaxgen.metrics.b"]]
    assert circles(nodes, arrows) == [["experiments", "jaxgen/metrics"]]
