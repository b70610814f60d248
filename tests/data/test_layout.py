"""Who imports whom: formats are shared, loaders and builders never import each other at import time."""

import ast
import pathlib

import mtl.data

DATA = pathlib.Path(mtl.data.__file__).parent
LOADERS = {"mtl.data.aliexpress", "mtl.data.ali_ccp", "mtl.data.census_income", "mtl.data.tabular"}


def _imports(path: pathlib.Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_builders_and_formats_never_import_loaders():
    modules = list((DATA / "builders").rglob("*.py")) + list((DATA / "formats").rglob("*.py"))
    assert len(modules) >= 10
    for path in modules:
        assert not _imports(path, top_level_only=False) & LOADERS, path


def test_loaders_import_builders_only_when_asked_for_tfds():
    for name in ("aliexpress", "ali_ccp", "census_income"):
        path = DATA / f"{name}.py"
        top = _imports(path, top_level_only=True)
        assert not any(m.startswith("mtl.data.builders") for m in top), path
        assert f"mtl.data.formats.{name}" in top  # the format module both share
        assert any(m.startswith("mtl.data.builders") for m in _imports(path, top_level_only=False))
