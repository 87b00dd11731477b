"""``connector demo``: the whole flow on one machine, with no Keap account, in well under a minute.

The demo runs the connector exactly as a user would: ``connector db migrate``, ``connector serve``
and ``connector sync`` are real subprocesses with settings in their environment, and Keap is the
built-in simulator, started in this process so its state can be read afterwards. Every number in
the closing summary is read back from the store and from the simulator, never counted by the demo
itself, so the summary shows what the connector really did.

Time is compressed in one declared way: the default policy ignores a repeat of the same bounce
within 10 minutes, so the demo's policy file is the default with a 3-second window, and hard-bounce
strikes are posted in rounds more than 3 seconds apart. Everything else is the default policy.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import quote, urlencode

import httpx

from connector import policy
from connector.bounces import BounceType
from connector.errors import ConnectorError
from connector.pipeline import outcome
from connector.sandbox import RunningSandbox, SandboxOptions, start_sandbox
from connector.sandbox.state import MARKETABLE, SandboxState
from connector.store import AuditEntry, Event, EventStatus, open_store

# 2,000 contacts with 4% bounced addresses is a small Keap account: big enough for a real
# backlog (about 100 bounced addresses), small enough that the sync scan takes seconds.
DEMO_SANDBOX = SandboxOptions(
    contacts=2000, bounced_fraction=0.04, seed=7, requests_per_second=500.0
)
# The connector's own ceiling stays under the simulator's throttle, so no call is refused.
CLIENT_REQUESTS_PER_SECOND = 200
DEDUPE_SECONDS = 3
# Strikes of one contact are posted this far apart, so each falls outside the dedupe window.
STRIKE_GAP_SECONDS = DEDUPE_SECONDS + 0.5
SETTLE_TIMEOUT_SECONDS = 60.0
HEALTH_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
SUMMARY_FILE = "demo-summary.json"
REPORT = "bounces.html"
MARKER_FILE = ".connector-demo"
_OWN_FILES = ("policy.toml", "serve.log", SUMMARY_FILE)
_NOTE_MARKER = "[bounce-connector event"
_METRIC = re.compile(
    r'^connector_events_received_total\{bounce_type="([^"]+)",status="([^"]+)"\} ([0-9.e+]+)$'
)

_B = BounceType
_SOFT_RUN = (
    (_B.SOFT_BOUNCE_GENERAL, _B.SOFT_BOUNCE_MAILBOX_FULL),
    (_B.SOFT_BOUNCE_DNS_FAILURE, _B.GENERAL_BOUNCE),
    (_B.TRANSIENT_BOUNCE,),
)


class DemoError(ConnectorError):
    """The demo could not complete; the message says which step and where its log is."""


@dataclass(frozen=True)
class Story:
    """What happens to some contacts over the three rounds of callbacks."""

    contacts: int
    rounds: tuple[tuple[BounceType, ...], ...]
    duplicate: bool = False  # every callback is sent twice, as Keap sometimes does


# Sequences that need repeats: three and two hard-bounce strikes, and five soft bounces.
STORIES = (
    Story(3, ((_B.HARD_BOUNCE,), (_B.HARD_BOUNCE,), (_B.HARD_BOUNCE,)), duplicate=True),
    Story(2, ((_B.HARD_BOUNCE,), (_B.HARD_BOUNCE,), ()), duplicate=True),
    Story(2, _SOFT_RUN),
)
# One bounce each, in a random round: every bounce type appears, in a campaign-like mix.
ONE_OFFS: dict[BounceType, int] = {
    _B.HARD_BOUNCE: 5,
    _B.GENERAL_BOUNCE: 3,
    _B.TRANSIENT_BOUNCE: 2,
    _B.NO_EMAIL_ADDRESS: 1,
    _B.SOFT_BOUNCE_GENERAL: 4,
    _B.SOFT_BOUNCE_MAILBOX_FULL: 5,
    _B.SOFT_BOUNCE_MESSAGE_TOO_LARGE: 2,
    _B.SOFT_BOUNCE_DNS_FAILURE: 2,
    _B.AUTO_REPLY: 8,
    _B.SUBSCRIBE_REQUEST: 1,
    _B.UNSUBSCRIBE_REQUEST: 3,
    _B.CHALLENGE_RESPONSE: 2,
    _B.MAIL_BLOCK_GENERAL: 2,
    _B.MAIL_BLOCK_KNOWN_SPAMMER: 1,
    _B.MAIL_BLOCK_RELAY_DENIED: 1,
    _B.MAIL_BLOCK_SPAM_DETECTED: 2,
    _B.MAIL_BLOCK_ATTACHMENT_DETECTED: 1,
    _B.UNDETERMINED: 2,
}
# The first one-off of these types is sent twice.
DUPLICATED_ONE_OFFS = (_B.AUTO_REPLY, _B.UNSUBSCRIBE_REQUEST, _B.MAIL_BLOCK_SPAM_DETECTED)
ROUNDS = 3


@dataclass(frozen=True)
class Post:
    """One HTTP Post as Keap sends it, and the answer the connector must give."""

    bounce_type: BounceType
    contact_id: int
    email: str
    via_path: bool  # the type in the URL path, else in a bounce_type field (Keap's label)
    expect: str  # "queued" or "duplicate"

    def request(self) -> tuple[str, str]:
        body = urlencode({"contactId": str(self.contact_id), "Email": self.email})
        if self.via_path:
            return f"/keap/bounce/{quote(self.bounce_type.value)}", body
        return "/keap/bounce", f"{body}&{urlencode({'bounce_type': self.bounce_type.label})}"

    def again(self) -> Post:
        """The same bounce sent once more, spelled the other way: still the same event."""
        return Post(self.bounce_type, self.contact_id, self.email, not self.via_path, "duplicate")


@dataclass
class DemoSummary:
    """What the demo did, read from the store and the simulator; also written as JSON."""

    workdir: str
    database_url: str
    seconds: float = 0.0
    callbacks_posted: int = 0
    duplicates_sent: int = 0
    answered: dict[str, int] = field(default_factory=dict)  # serve's /metrics, by status
    events: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> type -> count
    event_statuses: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)  # audit steps done, by kind
    outcomes: dict[str, int] = field(default_factory=dict)  # every step: "kind outcome (reason)"
    tags_added: dict[str, int] = field(default_factory=dict)  # audit tag_add steps, by tag
    keap: dict[str, int] = field(default_factory=dict)  # changes in the simulator's state
    keap_tags: dict[str, int] = field(default_factory=dict)  # policy tags' contacts in Keap
    api_calls: dict[str, int] = field(default_factory=dict)  # phase -> simulator calls
    throttled: int = 0
    spec_violations: int = 0
    sync_report: list[str] = field(default_factory=list)
    serve_pid: int = 0
    serve_port: int = 0
    sandbox_port: int = 0
    report_page: str = ""  # the weekly report's HTML page, written by `connector report`

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")


# --- the working directory ---------------------------------------------------------------------


def prepare_workdir(workdir: Path) -> Path:
    """A clean demo directory; refuses a non-empty one the demo did not create, to lose nothing."""
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    marker = workdir / MARKER_FILE
    if any(workdir.iterdir()) and not marker.exists():
        raise DemoError(
            f"{workdir} is not empty and was not made by `connector demo`",
            hint="choose a new or empty --workdir",
        )
    for old in [*workdir.glob("connector.db*"), *(workdir / name for name in _OWN_FILES)]:
        old.unlink(missing_ok=True)
    marker.write_text("made by `connector demo`; it may replace the files here\n")
    return workdir


def remove_workdir(workdir: Path) -> bool:
    """Delete a demo directory (``--no-keep``); never one the demo did not make."""
    workdir = workdir.resolve()
    if not (workdir / MARKER_FILE).is_file():
        return False
    shutil.rmtree(workdir)
    return True


def connector_env(sandbox: RunningSandbox, workdir: Path, secret: str) -> dict[str, str]:
    """Settings for the subprocesses: the simulator, a fresh store, the demo's policy file.

    The user's own KEAP_/CONNECTOR_ variables are dropped so the demo can never touch a real
    account or store; the working directory has no ``.env`` for the same reason.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("KEAP_", "CONNECTOR_"))}
    return {
        **inherited,
        **sandbox.env(),
        "CONNECTOR_DATABASE_URL": database_url(workdir),
        "CONNECTOR_POLICY_FILE": str(workdir / "policy.toml"),
        "CONNECTOR_WEBHOOK_SECRET": secret,
        "CONNECTOR_LOG_FORMAT": "text",
        "KEAP_REQUESTS_PER_SECOND": str(CLIENT_REQUESTS_PER_SECOND),
        "KEAP_MAX_RETRY_SECONDS": "5",
    }


def database_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'connector.db'}"


def write_policy(path: Path) -> None:
    """The default policy with a 3-second dedupe window, checked like any user's policy."""
    old = 'dedupe_window = "10m"'
    if old not in policy.DEFAULT_POLICY_TEXT:
        raise DemoError('the default policy no longer sets dedupe_window = "10m"')
    text = policy.DEFAULT_POLICY_TEXT.replace(old, f'dedupe_window = "{DEDUPE_SECONDS}s"')
    header = (
        "# Written by `connector demo`: the default policy, except that dedupe_window is\n"
        f"# {DEDUPE_SECONDS}s instead of 10m so three hard-bounce strikes fit in a few seconds.\n"
    )
    path.write_text(header + text, encoding="utf-8")
    problems = policy.check_policy_file(path)
    if problems:
        raise DemoError(f"the demo policy is invalid: {problems[0]}")


def connector_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "connector", *args]


def run_connector(env: dict[str, str], workdir: Path, *args: str) -> str:
    """Run one ``connector`` command to completion; its stdout and stderr, or a DemoError."""
    done = subprocess.run(  # noqa: S603 (our own interpreter and fixed arguments)
        connector_command(*args),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise DemoError(f"`connector {' '.join(args)}` failed: {done.stderr.strip()[-500:]}")
    return (done.stdout + done.stderr).strip()


# --- connector serve -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Serve:
    """``connector serve`` as a child process, and a client that talks to it like Keap does."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    secret: str
    client: httpx.Client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, item: Post) -> str:
        path, body = item.request()
        reply = self.client.post(
            f"{self.url}{path}",
            params={"key": self.secret},
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        if reply.status_code != 202:
            raise DemoError(f"serve answered {reply.status_code} to a callback: {reply.text}")
        return str(reply.json()["status"])

    def answered(self) -> dict[str, int]:
        """Callbacks answered, by status, as serve's own /metrics counts them."""
        text = self.client.get(f"{self.url}/metrics").text
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            found = _METRIC.match(line)
            if found:
                counts[found.group(2)] += int(float(found.group(3)))
        return dict(counts)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"connector serve exited early; see {self.log}")
            try:
                if self.client.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise DemoError(f"connector serve did not become healthy; see {self.log}")

    def stop(self) -> None:
        """SIGTERM lets the worker finish its events; SIGKILL only if it hangs."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def serving(env: dict[str, str], workdir: Path) -> Iterator[Serve]:
    """Start serve, wait for /healthz, and always stop it, also on Ctrl-C or an error."""
    port = free_port()
    log = workdir / "serve.log"
    client = httpx.Client(timeout=30)
    with log.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter, fixed arguments)
            connector_command("serve", "--port", str(port)),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    served = Serve(process, port, log, env["CONNECTOR_WEBHOOK_SECRET"], client)
    try:
        served.wait_healthy()
        yield served
    finally:
        served.stop()


# --- the stream of callbacks ----------------------------------------------------------------------


def candidate_contacts(state: SandboxState, rng: random.Random) -> list[tuple[int, str]]:
    """Seeded contacts whose every address is marketable and their own, in a random order.

    Those are the ones a campaign reaches and that the sync backlog does not already hold, so
    the webhook's effects and the sync's stay apart in the summary.
    """
    found = []
    with state.lock:
        for cid in state.contact_ids:
            emails = [email for _, email in state.contacts[cid].emails]
            if emails and all(_fresh(state, cid, email) for email in emails):
                found.append((cid, emails[0]))
    rng.shuffle(found)
    return found


def _fresh(state: SandboxState, contact_id: int, email: str) -> bool:
    address = state.address(email)
    return (
        address is not None
        and address.status in MARKETABLE
        and state.contacts_with(email) == (contact_id,)
    )


def build_stream(state: SandboxState, seed: int = DEMO_SANDBOX.seed) -> list[list[Post]]:
    """Three rounds of callbacks: the strike stories in order, one-offs spread at random."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible stream, not security)
    contacts = iter(candidate_contacts(state, rng))
    rounds: list[list[Post]] = [[] for _ in range(ROUNDS)]
    for story in STORIES:
        for _ in range(story.contacts):
            _tell(story, next(contacts), rounds, rng)
    for bounce_type, count in ONE_OFFS.items():
        for index in range(count):
            twice = index == 0 and bounce_type in DUPLICATED_ONE_OFFS
            story = Story(1, ((bounce_type,),), duplicate=twice)
            _tell(story, next(contacts), [rng.choice(rounds)], rng)
    for posts in rounds:
        _shuffle_keeping_duplicates_after(posts, rng)
    return rounds


def _tell(
    story: Story, contact: tuple[int, str], rounds: list[list[Post]], rng: random.Random
) -> None:
    cid, email = contact
    for posts, types in zip(rounds, story.rounds, strict=False):
        for bounce_type in types:
            first = Post(bounce_type, cid, email, rng.random() < 0.5, "queued")
            posts.append(first)
            if story.duplicate:
                posts.append(first.again())


def _shuffle_keeping_duplicates_after(posts: list[Post], rng: random.Random) -> None:
    """Interleave contacts like a real stream; a duplicate stays right after its original."""
    groups: list[list[Post]] = []
    for item in posts:
        if item.expect == "duplicate":
            groups[-1].append(item)
        else:
            groups.append([item])
    rng.shuffle(groups)
    posts[:] = [item for group in groups for item in group]


# --- waiting on the store -------------------------------------------------------------------------


async def _read_store(url: str) -> tuple[list[Event], list[AuditEntry]]:
    store = await open_store(url)
    try:
        return await store.list_events(limit=1_000_000), await store.list_audit(limit=1_000_000)
    finally:
        await store.close()


def read_store(url: str) -> tuple[list[Event], list[AuditEntry]]:
    return asyncio.run(_read_store(url))


async def _settle(url: str, expected: int, limit: float, served: Serve) -> None:
    store = await open_store(url)
    try:
        deadline = time.monotonic() + limit
        while True:
            events = await store.list_events(limit=1_000_000)
            open_ = [e for e in events if e.status not in (EventStatus.DONE, EventStatus.DEAD)]
            if len(events) >= expected and not open_:
                return
            if served.process.poll() is not None:
                raise DemoError(f"connector serve exited early; see {served.log}")
            if time.monotonic() > deadline:
                raise DemoError(
                    f"{len(open_)} of {len(events)} event(s) still open after {limit:.0f}s",
                    hint="see serve.log in the working directory",
                )
            await asyncio.sleep(0.2)
    finally:
        await store.close()


def wait_settled(url: str, expected: int, served: Serve) -> None:
    """Until the store holds ``expected`` events and serve's worker has finished every one."""
    asyncio.run(_settle(url, expected, SETTLE_TIMEOUT_SECONDS, served))


# --- the run --------------------------------------------------------------------------------------


class Narrator:
    """Numbered progress lines, so a newcomer can follow which step is running."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.step = 0

    def __call__(self, text: str) -> None:
        self.step += 1
        self.line(f"{self.step}. {text}")

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _calls(sandbox: RunningSandbox) -> int:
    return sum(sandbox.stats()["calls"].values())


def post_stream(
    served: Serve, rounds: Sequence[Sequence[Post]], url: str, say: Narrator
) -> tuple[int, int]:
    """Post every round, let the worker finish it, keep strikes apart; (posted, duplicates)."""
    posted = duplicates = queued = 0
    for number, posts in enumerate(rounds, start=1):
        for item in posts:
            answer = served.post(item)
            if answer != item.expect:
                raise DemoError(f"a {item.expect} callback was answered {answer!r}")
        sent_at = time.monotonic()
        posted += len(posts)
        duplicates += sum(item.expect == "duplicate" for item in posts)
        queued += sum(item.expect == "queued" for item in posts)
        wait_settled(url, queued, served)
        say.line(f"   round {number}: {len(posts)} callbacks posted, all processed")
        if number < len(rounds):
            time.sleep(max(0.0, sent_at + STRIKE_GAP_SECONDS - time.monotonic()))
    return posted, duplicates


def run_demo(workdir: Path, out: TextIO, *, keep: bool = True) -> DemoSummary:
    """Run the whole flow and print its summary; nothing is left running when this returns.

    ``keep`` only changes the closing advice: the caller deletes ``workdir`` when it is False.
    """
    started = time.monotonic()
    workdir = prepare_workdir(workdir)
    say = Narrator(out)
    say.line("keap-bounce-connector demo: the whole flow against the built-in Keap simulator")
    say.line(f"working directory: {workdir}\n")
    with start_sandbox(DEMO_SANDBOX) as sandbox:
        summary = _run(sandbox, workdir, say)
    summary.seconds = round(time.monotonic() - started, 1)
    summary.write(workdir / SUMMARY_FILE)
    say.line(render_summary(summary, keep))
    return summary


def _run(sandbox: RunningSandbox, workdir: Path, say: Narrator) -> DemoSummary:
    state = sandbox.state
    say(
        f"Keap simulator at {sandbox.root_url}: {len(state.contacts)} contacts, "
        f"{DEMO_SANDBOX.bounced_fraction:.0%} with a bounced address (seed {DEMO_SANDBOX.seed}); "
        f"throttle {DEMO_SANDBOX.requests_per_second:.0f} calls/s so the demo is quick "
        "(real Keap allows 25/s)"
    )
    secret = secrets.token_urlsafe(24)
    env = connector_env(sandbox, workdir, secret)
    url = env["CONNECTOR_DATABASE_URL"]
    say(f"store {url}: {run_connector(env, workdir, 'db', 'migrate')}")
    write_policy(workdir / "policy.toml")
    say(
        f'policy.toml: the default policy with dedupe_window = "{DEDUPE_SECONDS}s" (default 10m). '
        "Real strikes come days apart; here they come in rounds "
        f"{STRIKE_GAP_SECONDS:g}s apart, and a repeat within {DEDUPE_SECONDS}s is a duplicate"
    )
    before = keap_counts(state)
    summary = DemoSummary(workdir=str(workdir), database_url=url, sandbox_port=sandbox.port)
    with serving(env, workdir) as served:
        _webhook_phase(served, sandbox, summary, say, secret)
        _sync_phase(env, workdir, sandbox, summary, say)
        summary.answered = served.answered()
    say(f"stopped connector serve (exit status {served.process.returncode}); nothing left running")
    _fill_from_store(summary, read_store(url))
    _fill_from_keap(summary, sandbox, before)
    run_connector(env, workdir, "report", "--since", "1d", "--format", "html", "--output", REPORT)
    summary.report_page = str(workdir / REPORT)
    return summary


def _webhook_phase(
    served: Serve, sandbox: RunningSandbox, summary: DemoSummary, say: Narrator, secret: str
) -> None:
    summary.serve_pid, summary.serve_port = served.process.pid, served.port
    say(
        f"connector serve on {served.url} (pid {served.process.pid}, log serve.log), webhook "
        f"secret {secret[:4]}... (masked; generated for this run, only in serve's environment)"
    )
    rounds = build_stream(sandbox.state)
    total = sum(len(r) for r in rounds)
    say(
        f'posting {total} Keap "When an email bounces" callbacks in {len(rounds)} rounds: every '
        "bounce type, type in the URL path or in a bounce_type field, three-strike hard bounces, "
        'five soft bounces in a row, and repeats that must be answered "duplicate"'
    )
    calls_before = _calls(sandbox)
    url = summary.database_url
    summary.callbacks_posted, summary.duplicates_sent = post_stream(served, rounds, url, say)
    summary.api_calls["webhook"] = _calls(sandbox) - calls_before


def _sync_phase(
    env: dict[str, str],
    workdir: Path,
    sandbox: RunningSandbox,
    summary: DemoSummary,
    say: Narrator,
) -> None:
    say("connector sync: scanning every contact for addresses Keap already marks as bounced")
    calls_before = _calls(sandbox)
    report = run_connector(env, workdir, "sync")
    summary.api_calls["sync"] = _calls(sandbox) - calls_before
    summary.sync_report = report.splitlines()[-5:]
    for line in summary.sync_report:
        say.line(f"   | {line}")
    say.line("   (serve kept running, as in production; its worker may take some of these events)")


# --- reading the results back ---------------------------------------------------------------------


def keap_counts(state: SandboxState) -> dict[str, int]:
    """What the connector can change in Keap, counted in the simulator's state."""
    with state.lock:
        return {
            "opted_out": sum(a.status == "MANUAL" for a in state.addresses.values()),
            "notes": sum(_NOTE_MARKER in n.text for n in state.notes.values()),
            "tasks": len(state.tasks),
        }


def policy_tags() -> list[str]:
    """The tags the default policy writes, in rule order: the ones worth counting in Keap."""
    rules = policy.default_policy().rules
    return list(dict.fromkeys(tag for rule in rules for tag in rule.add_tags))


def _fill_from_keap(summary: DemoSummary, sandbox: RunningSandbox, before: dict[str, int]) -> None:
    after = keap_counts(sandbox.state)
    summary.keap = {name: after[name] - before[name] for name in after}
    with sandbox.state.lock:
        by_name = {t.name: len(t.contacts) for t in sandbox.state.tags.values()}
    summary.keap_tags = {name: by_name.get(name, 0) for name in policy_tags()}
    stats = sandbox.stats()
    summary.api_calls["total"] = sum(stats["calls"].values())
    summary.throttled = int(stats["throttled"])
    summary.spec_violations = int(stats["spec_violations"])


def _fill_from_store(summary: DemoSummary, read: tuple[list[Event], list[AuditEntry]]) -> None:
    events, audit = read
    by_source: dict[str, Counter[str]] = {}
    for event in events:
        by_source.setdefault(event.source, Counter())[event.bounce_type] += 1
    summary.events = {source: dict(counts) for source, counts in sorted(by_source.items())}
    summary.event_statuses = dict(Counter(e.status.value for e in events))
    steps = outcome.records(a for a in audit if not a.dry_run)
    done = [s for s in steps if s.outcome is outcome.Outcome.DONE]
    summary.actions = dict(Counter(s.kind.value for s in done))
    summary.outcomes = outcome.tally(steps)
    tags = Counter(s.subject for s in done if s.kind is outcome.StepKind.TAG_ADD)
    summary.tags_added = dict(tags)


# --- the closing summary --------------------------------------------------------------------------


def render_summary(summary: DemoSummary, keep: bool) -> str:
    return "\n".join(
        [
            "",
            f"Summary (read from the store and the Keap simulator; {summary.seconds:.1f}s in all)",
            *_events_lines(summary),
            *_actions_lines(summary),
            *_calls_lines(summary),
            *_next_lines(summary, keep),
        ]
    )


def _events_lines(summary: DemoSummary) -> list[str]:
    webhook = summary.events.get("webhook", {})
    sync = summary.events.get("sync", {})
    lines = ["", "Events received by bounce type            webhook    sync"]
    for bounce_type in BounceType:
        hook, found = webhook.get(bounce_type.value, 0), sync.get(bounce_type.value, 0)
        if hook or found:
            lines.append(f"  {bounce_type.label:<38}{hook:>7}{found:>8}")
    lines.append(f"  {'total':<38}{sum(webhook.values()):>7}{sum(sync.values()):>8}")
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(summary.event_statuses.items()))
    lines.append(f"  event status: {statuses}")
    answered = summary.answered
    lines.append(
        f"  callbacks answered (serve's /metrics): {answered.get('queued', 0)} queued, "
        f"{answered.get('duplicate', 0)} duplicate; {summary.duplicates_sent} repeats were sent "
        f"on purpose, of {summary.callbacks_posted} posts"
    )
    return lines


def _actions_lines(summary: DemoSummary) -> list[str]:
    done = summary.actions
    tags = ", ".join(f"{name} {n}" for name, n in summary.tags_added.items()) or "none"
    now = ", ".join(f"{name} {n}" for name, n in summary.keap_tags.items())
    keap = summary.keap
    return [
        "",
        "Actions taken (audit log, `connector audit`)",
        f"  opt-outs {done.get('opt_out', 0)}, tags added {done.get('tag_add', 0)}, "
        f"tags removed {done.get('tag_remove', 0)}, notes {done.get('note', 0)}, "
        f"tasks {done.get('task', 0)}, addresses blanked {done.get('blank_email', 0)}",
        f"  tags written: {tags}",
        *(f"  {name}: {n}" for name, n in summary.outcomes.items() if " done" not in name),
        "In Keap now (the simulator's state)",
        f"  contacts per tag: {now}",
        f"  addresses newly opted out (MANUAL) {keap.get('opted_out', 0)}, notes "
        f"{keap.get('notes', 0)}, tasks {keap.get('tasks', 0)}; opting out an address that "
        "already has a bounce status keeps that status in Keap",
    ]


def _calls_lines(summary: DemoSummary) -> list[str]:
    calls = summary.api_calls
    return [
        "",
        f"Keap API calls (the simulator's count): {calls.get('webhook', 0)} for the callbacks, "
        f"{calls.get('sync', 0)} for the sync, {calls.get('total', 0)} in all; "
        f"{summary.throttled} throttled, {summary.spec_violations} off Keap's OpenAPI spec",
    ]


def _connector_exe() -> str:
    beside = Path(sys.executable).parent / "connector"
    if beside.exists():
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m connector"


def _mail_lines(exe: str) -> list[str]:
    """How to send the page, when the user's own settings name an SMTP server."""
    configured = os.environ.get("CONNECTOR_SMTP_HOST") or _env_file_has("CONNECTOR_SMTP_HOST")
    if not configured:
        return ["  (set CONNECTOR_SMTP_HOST and CONNECTOR_MAIL_FROM to have it emailed weekly)"]
    return [f"  send it: {exe} report --since 7d --email you@example.com"]


def _env_file_has(name: str) -> bool:
    env = Path(".env")
    try:
        return env.is_file() and any(
            line.strip().startswith(f"{name}=") for line in env.read_text().splitlines()
        )
    except (OSError, UnicodeDecodeError):
        return False


def _next_lines(summary: DemoSummary, keep: bool) -> list[str]:
    if not keep:
        return [
            "",
            "The working directory was removed (--no-keep); run without it to look around after.",
        ]
    exe = _connector_exe()
    return [
        "",
        f"The report page for the person who cleans the list: {summary.report_page}",
        *_mail_lines(exe),
        "",
        "Where to look next (the simulator has stopped; these read the demo's store):",
        f"  export CONNECTOR_DATABASE_URL={shlex.quote(summary.database_url)}",
        f"  {exe} report --since 1d        # who bounced, how often, what was done",
        f"  {exe} report --since 1d --format html --output bounces.html",
        f"  {exe} audit --limit 30         # every change, with its action id",
        f"  {exe} events list --limit 30   # the stored events",
        f"Logs and settings: {summary.workdir}/serve.log, policy.toml, {SUMMARY_FILE}",
    ]
