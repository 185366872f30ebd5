"""Where an evaluation report goes: its JSON file and its plots, as `bertcli evaluate` writes them."""

from __future__ import annotations

import logging
from typing import Any

from bertcli.config import EvaluateConfig
from bertcli.io import write_json

log = logging.getLogger("bertcli")


def write_report(cfg: EvaluateConfig, report: dict[str, Any]) -> None:
    """The report as JSON (-o) and its plots (--plots, or beside the report when -o names a directory)."""
    from bertcli.reports.plots import report_plots

    output, plots = cfg.report_paths
    if output:
        write_json(output, report)
    if not plots:
        return
    written = report_plots(report, plots)
    for path in written:
        log.info("wrote %s", path)
    if not written:
        log.info("no plot for a %s report (plots: confusion matrix, F1 per type or label)", report.get("task"))
