"""Plots the lectures draw, one module per topic (matplotlib; labelled axes with units)."""
