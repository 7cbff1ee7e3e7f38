"""Top-activating dataset patches: `scan` a folder (a job), `merge_scans` of shards."""

from app.engine.analyses.patches.dataset_scan import (
    ScanError,
    ScanReport,
    default_layers,
    merge_scans,
    scan,
)

__all__ = ["ScanError", "ScanReport", "default_layers", "merge_scans", "scan"]
