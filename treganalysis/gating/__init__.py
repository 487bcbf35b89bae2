"""Gating: gate primitives (numpy in, boolean masks out), thresholds from densities, and the
strategy engine that evaluates a hierarchy of gates on its parents' events."""
