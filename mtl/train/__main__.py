"""``python -m mtl.train --config=... --workdir=...`` (same as ``mtl-train``)."""

from mtl.cli import run

if __name__ == "__main__":
    run()
