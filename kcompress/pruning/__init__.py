"""Pruning."""

__all__: list[str] = []
