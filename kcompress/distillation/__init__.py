"""Distillation."""

__all__: list[str] = []
