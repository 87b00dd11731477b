"""Issue 13 item 12: a running ``serve`` (or ``worker``) rereads the policy file.

It used to read ``policy.toml`` once at start. Now the worker asks a
:class:`~connector.policy.reload.PolicyHolder` before each event (one ``stat``; the file is reread
when its inode, size or modification time changed), ``serve`` polls it every few seconds, and
SIGHUP rereads it at once. A new file that does not load keeps the rules read before, logs one
error naming the problem (not one per poll), and shows in ``/readyz`` and ``connector doctor``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from connector.config import Settings
from connector.doctor import run_checks
from connector.metrics import Metrics
from connector.policy.reload import PolicyHolder
from connector.store import open_store
from connector.webhook import WebhookConfig, create_app
from connector.worker import Worker, WorkerOptions
from tests.fixtures_connector import Connector
from tests.fixtures_pipeline import Harness

RULE = """
[[rule]]
bounce = "hard_bounce"
when = "always"
add_tags = ["{tag}"]
"""
BROKEN = '[[rule]]\nbounce = "hard_bounce"\nwhen = "sometimes"\n'


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


async def test_item12_a_changed_policy_file_is_used_for_the_next_event(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    write(path, RULE.format(tag="Rule A"))
    worker = Worker(harness.store, harness.client, PolicyHolder(path), Metrics(), WorkerOptions())
    first = harness.contact("first@example.com")
    await harness.event(first, "hard_bounce", "first@example.com")
    await worker.drain()
    assert "Rule A" in harness.tags_of(first)

    write(path, RULE.format(tag="Rule Bee"))  # another size: a new version whatever the mtime
    second = harness.contact("second@example.com")
    await harness.event(second, "hard_bounce", "second@example.com")
    await worker.drain()

    assert "Rule Bee" in harness.tags_of(second)
    assert "Rule A" not in harness.tags_of(second)


async def test_item12_a_broken_file_keeps_the_old_rules_logs_once_and_shows_in_readyz(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "policy.toml"
    write(path, RULE.format(tag="Rule A"))
    holder = PolicyHolder(path)
    write(path, BROKEN)

    with caplog.at_level(logging.INFO, logger="connector.policy"):
        for _ in range(5):  # five polls of the same broken version
            holder.check()
            policy = holder()

    assert [r.add_tags for r in policy.rules] == [("Rule A",)]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    assert "sometimes" in errors[0].getMessage()
    assert holder.problem is not None
    assert holder.problem.startswith("error: policy.toml: ")
    assert str(tmp_path) not in holder.problem, "the file's name, never its directory"

    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}", migrate=True)
    try:
        config = WebhookConfig(secret="s" * 20, dedupe_window=policy.settings.dedupe_window)
        app = create_app(config, store, Metrics(), policy=holder)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answer = await http.get("/readyz")
    finally:
        await store.close()
    assert answer.json()["policy"] == holder.problem
    assert str(tmp_path) not in answer.text

    checks = {c.name: c for c in await run_checks(Settings(connector_policy_file=path))}
    assert not checks["policy"].ok
    assert "sometimes" in checks["policy"].detail
    assert "a running `serve` keeps" in checks["policy"].fix

    write(path, RULE.format(tag="Rule Cee"))
    assert holder.check()
    assert holder.problem is None
    assert [r.add_tags for r in holder().rules] == [("Rule Cee",)]


@pytest.mark.slow
def test_item12_sighup_rereads_the_policy_of_a_running_serve(connector: Connector) -> None:
    path = connector.workdir / "policy.toml"
    write(path, RULE.format(tag="Rule A"))
    served = connector.serve("--no-worker")
    assert "policy" not in httpx.get(f"{served.url}/readyz", timeout=10).json()

    # Same size, inode and modification time: only SIGHUP can tell the file changed.
    before = path.stat()
    broken = BROKEN.ljust(before.st_size - 1) + "\n"
    assert len(broken) == before.st_size
    with path.open("r+", encoding="utf-8") as out:
        out.write(broken)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    served.process.send_signal(signal.SIGHUP)

    shown = None
    for _ in range(200):  # bounded polling on the state, not a sleep for it
        shown = httpx.get(f"{served.url}/readyz", timeout=10).json().get("policy")
        if shown:
            break
        time.sleep(0.05)
    assert shown is not None
    assert shown.startswith("error: policy.toml: ")
    assert served.process.poll() is None, "SIGHUP must not stop serve"
    served.stop()
    log = served.log.read_text()
    assert log.count("policy not reloaded") == 1, log
