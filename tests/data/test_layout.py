"""Who imports whom: the TFDS builders (and tensorflow_datasets) only when a loader is asked for them
(import cycles are ruled out for all of mtl by tests/test_layering.py)."""

import ast
import pathlib

import mtl.data

DATA = pathlib.Path(mtl.data.__file__).parent


def _imports(path: pathlib.Path, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body if top_level_only else list(ast.walk(tree)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_loaders_import_builders_only_when_asked_for_tfds():
    for name in ("aliexpress", "ali_ccp", "census_income"):
        path = DATA / f"{name}.py"
        assert not any(m.startswith("mtl.data.builders") for m in _imports(path, top_level_only=True)), path
        assert any(m.startswith("mtl.data.builders") for m in _imports(path, top_level_only=False)), path
    for path in DATA.glob("*.py"):  # tensorflow_datasets is imported by the builders alone
        assert not any(m.startswith("tensorflow") for m in _imports(path, top_level_only=False)), path
