"""Adapters: one module per outside system, each implementing a Protocol its user declares."""
