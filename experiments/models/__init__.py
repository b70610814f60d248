"""Example user models: Flax modules that are not part of ``mtl``, plugged in by import path."""
