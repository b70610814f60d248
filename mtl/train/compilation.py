"""Compilation: JAX's persistent compilation cache, and the time a run spends compiling.

``mtl-train`` and ``mtl-bench`` turn the persistent cache on by default
(:func:`enable_persistent_cache`, in ``$MTL_CACHE_DIR/jax`` or
``~/.cache/mtl/jax``; ``--nocompilation_cache`` turns it off; a
``JAX_COMPILATION_CACHE_DIR`` set in the environment wins), so a run resumed
after an interruption, or the next cell of a grid with the same shapes,
loads its programs instead of compiling them again.

:class:`CompileTimer` adds up the compile events JAX reports through
``jax.monitoring`` (tracing, lowering to MLIR, the backend compile or the
cache lookup that replaces it) while it is open.
"""

from __future__ import annotations

import os
import pathlib
import threading

import jax

#: The ``jax.monitoring`` duration events of one compilation (tracing, lowering, backend compile).
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
CACHE_EVENTS = {"/jax/compilation_cache/cache_hits": "cache_hits",
                "/jax/compilation_cache/cache_misses": "cache_misses"}


def default_cache_dir() -> pathlib.Path:
    """``$MTL_CACHE_DIR/jax``, else ``~/.cache/mtl/jax`` (beside the prepared-data caches)."""
    root = os.environ.get("MTL_CACHE_DIR") or pathlib.Path.home() / ".cache" / "mtl"
    return pathlib.Path(root).expanduser() / "jax"


def enable_persistent_cache(directory: str | os.PathLike | None = None) -> str:
    """Turns JAX's persistent compilation cache on and returns its folder.

    ``JAX_COMPILATION_CACHE_DIR`` in the environment wins (JAX reads it itself);
    else ``directory`` or :func:`default_cache_dir`. Every program is cached,
    however fast it compiled, so that a rerun compiles nothing new. Call it before
    the first compilation of the process (JAX sets its cache up once).
    """
    env = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    folder = pathlib.Path(env or directory or default_cache_dir()).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(folder)


class CompileTimer:
    """``with CompileTimer() as t: ...``: ``t.seconds`` spent compiling (tracing, lowering and
    the backend compile or cache lookup), ``t.cache_hits`` (programs loaded from the persistent
    cache) and ``t.cache_misses`` (programs compiled while the cache is on) inside the block,
    by any thread."""

    def __init__(self):
        self.seconds = 0.0
        self.cache_hits = self.cache_misses = 0
        self._lock = threading.Lock()

    def _on_duration(self, event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            with self._lock:
                self.seconds += float(duration)

    def _on_event(self, event: str, **kwargs) -> None:
        if event in CACHE_EVENTS:
            with self._lock:
                setattr(self, CACHE_EVENTS[event], getattr(self, CACHE_EVENTS[event]) + 1)

    def __enter__(self) -> CompileTimer:
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._on_duration)
        jax.monitoring.unregister_event_listener(self._on_event)
