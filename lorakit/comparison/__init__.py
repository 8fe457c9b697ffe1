"""Comparing runs: the table (compare()), the charts and the HTML/CSV report.
"""
from lorakit.common.public import lazy_names

_NAMES = {  # public name -> the module of this room that defines it
    "compare": "table",
    "styled": "table",
    "loss_figure": "figures",
    "memory_figure": "figures",
    "timeline_figure": "timeline_figure",
    "timeline_bars": "timeline_figure",
    "pareto_figure": "figures",
    "pareto_front": "figures",
    "export_csv": "report",
    "export_html": "report",
    "samples_html": "report",
    "tables_html": "report",
    "SHORT_COLUMNS": "table",
    "COLUMNS": "table",
    "column_names": "table",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_names(__name__, _NAMES)
