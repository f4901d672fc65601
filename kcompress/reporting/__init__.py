"""Reporting: results as Markdown / CSV / JSON tables and PNG plots; studies run over seeds (``study``)."""

from kcompress.reporting import study
from kcompress.reporting.plots import pareto_front, plot_pareto, plot_sweep
from kcompress.reporting.tables import (
    DEFAULT_COLUMNS,
    add_ratios,
    to_csv,
    to_markdown,
    write_results,
)

__all__ = ["DEFAULT_COLUMNS", "add_ratios", "pareto_front", "plot_pareto", "plot_sweep", "study", "to_csv", "to_markdown", "write_results"]
