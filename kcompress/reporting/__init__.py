"""Reporting: results as Markdown / CSV / JSON tables."""

from kcompress.reporting.tables import DEFAULT_COLUMNS, add_ratios, to_csv, to_markdown, write_results

__all__ = ["DEFAULT_COLUMNS", "add_ratios", "to_csv", "to_markdown", "write_results"]
