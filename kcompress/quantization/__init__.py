"""Quantization."""

__all__: list[str] = []
