"""Plots (matplotlib, imported lazily, drawn off-screen with the Agg canvas)."""
