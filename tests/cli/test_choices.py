"""The CLI repeats a few core choices so ``--help`` need not import the core; they must agree."""

from __future__ import annotations

from connector.cli.events import StatusChoice
from connector.cli.report import ReportChoice
from connector.cli.sandbox import SANDBOX_PORT
from connector.report import ReportFormat
from connector.sandbox.options import DEFAULT_PORT
from connector.store import EventStatus


def test_event_statuses_agree() -> None:
    assert [s.value for s in StatusChoice] == [s.value for s in EventStatus]


def test_report_formats_agree() -> None:
    assert [f.value for f in ReportChoice] == [f.value for f in ReportFormat]


def test_sandbox_port_agrees() -> None:
    assert SANDBOX_PORT == DEFAULT_PORT
