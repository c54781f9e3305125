"""The layering holds: imports point down only (DESIGN.md, "Layout")."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("images", "datasets", "slim", "artifacts", "pipelines")


def imported_modules(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):          # any nesting level: imports inside functions count
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def offenders(folders, forbidden):
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for lineno, module in imported_modules(path):
                if module.split(".")[0] in forbidden:
                    found.append(f"{path.relative_to(ROOT)}:{lineno} imports {module}")
    return found


def test_libraries_never_import_the_doit_wiring():
    assert offenders(LIBRARIES, {"tasks", "dodo"}) == []


def test_the_foundation_imports_neither_doit_nor_the_layers_above_it():
    assert offenders(["zoobuild"], {"doit", "tasks", "dodo", *LIBRARIES}) == []


def test_the_scan_sees_an_import_nested_in_a_function(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from tasks.images import _plan\n")
    assert [m for _, m in imported_modules(probe)] == ["tasks.images"]


def test_model_packages_ship_the_foundation_and_no_doit_wiring():
    for spec in sorted((ROOT / "specs").glob("*_spec.yml")):
        text = spec.read_text()
        if "package:" not in text:
            continue
        assert "source: tasks" not in text, spec.name
        assert "{source: zoobuild, destination: zoobuild}" in text, spec.name
