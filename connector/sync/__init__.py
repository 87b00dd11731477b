"""``connector sync``: find the addresses Keap already marks as bounced and remediate them.

- :mod:`connector.sync.model`: options, summary, plan rows, the progress callback (stdlib only)
- :mod:`connector.sync.scan`: the contacts scan, the address scan, the paging guard
- :mod:`connector.sync.strategy`: the probes and the choice between the scans
- :mod:`connector.sync.run`: the run (lock, checkpoint, signals, queuing findings, draining)

Showing a run (progress bar, the dry run's table or CSV) is the CLI's:
``connector/cli/sync_view.py``.

The names below are imported lazily, so ``import connector.sync.model`` (what the CLI needs to
declare its options) does not load the store, the Keap client or the worker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.sync.model import (
        PLAN_COLUMNS,
        PlanRow,
        ProgressSnapshot,
        Strategy,
        SyncOptions,
        SyncProgress,
        SyncSummary,
        exit_code,
    )
    from connector.sync.run import SYNC_NAME, Checkpoint, SyncRun, run_sync
    from connector.sync.scan import Finding, PagingStalledError, episode_key, keap_time

_WHERE = {
    "PLAN_COLUMNS": "model",
    "PlanRow": "model",
    "ProgressSnapshot": "model",
    "Strategy": "model",
    "SyncOptions": "model",
    "SyncProgress": "model",
    "SyncSummary": "model",
    "exit_code": "model",
    "SYNC_NAME": "run",
    "Checkpoint": "run",
    "SyncRun": "run",
    "run_sync": "run",
    "Finding": "scan",
    "PagingStalledError": "scan",
    "episode_key": "scan",
    "keap_time": "scan",
}

__all__ = [
    "PLAN_COLUMNS",
    "SYNC_NAME",
    "Checkpoint",
    "Finding",
    "PagingStalledError",
    "PlanRow",
    "ProgressSnapshot",
    "Strategy",
    "SyncOptions",
    "SyncProgress",
    "SyncRun",
    "SyncSummary",
    "episode_key",
    "exit_code",
    "keap_time",
    "run_sync",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'connector.sync' has no attribute {name!r}")
    return getattr(importlib.import_module(f"connector.sync.{module}"), name)
