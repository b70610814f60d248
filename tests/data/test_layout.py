"""Who imports whom: the TFDS builders import the loaders' modules (each dataset's columns and raw
reader), never the other way round, and only they import tensorflow_datasets (import cycles are ruled
out for all of mtl by tests/test_layering.py)."""

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


def test_builders_import_the_loaders_modules_and_loaders_never_import_builders():
    for path in DATA.glob("*.py"):
        imported = _imports(path, top_level_only=False)
        assert not any(m.startswith(("mtl.data.builders", "tensorflow")) for m in imported), path
    for name in ("aliexpress", "ali_ccp", "census_income_kdd"):
        path = DATA / "builders" / name / f"{name}_dataset_builder.py"
        assert "mtl.data" in _imports(path, top_level_only=True), path


def test_the_data_layer_stays_within_3000_lines():
    """Issue 17's size target for mtl/data, TFDS builders included (``wc -l`` of its ``.py`` files)."""
    lines = sum(len(path.read_text().splitlines()) for path in DATA.rglob("*.py"))
    assert lines <= 3000, f"mtl/data has {lines} lines, over the 3,000 of its target"
