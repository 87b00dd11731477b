"""The policy of a long-running process (``serve``, ``worker``), reread when its file changes.

A :class:`PolicyHolder` keeps the policy in force and the file's identity when it was read
(inode, size, modification time: one ``stat``, cheap enough for every event). :meth:`check`
rereads the file when that identity changed; :meth:`reload` rereads it regardless (SIGHUP).

A new file that does not load leaves the policy in force untouched: the error is logged once for
that version of the file (not once per check) and kept in :attr:`problem`, which ``/readyz``
shows, until a version that loads replaces it. ``problem`` names the file by its name only,
never its directory. A file removed while running is a problem too, not a switch to the built-in
default: an editor that replaces a file may remove it for a moment, and a moment of other rules
would be applied to real contacts.

The holder is the worker's policy source: the worker calls it for each event it plans, so the
next event after a change is planned with the new rules.
"""

from __future__ import annotations

import logging
from pathlib import Path

from connector.errors import PolicyError
from connector.policy.load import load_policy, parse_policy
from connector.policy.model import Policy

log = logging.getLogger("connector.policy")

# How often ``serve`` and ``worker`` look at the file when nothing else asks (seconds).
POLL_SECONDS = 2.0

Signature = tuple[int, int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class PolicyHolder:
    """The policy in force and how it was read; ``holder()`` is the policy after a check."""

    def __init__(self, path: Path, policy: Policy | None = None) -> None:
        self.path = path
        self._signature = _signature(path)
        self._policy = load_policy(path) if policy is None else policy
        self._problem: str | None = None
        self._reported: tuple[Signature, str] | None = None

    def __call__(self) -> Policy:
        """The policy to plan with now: the file is checked first (one ``stat``)."""
        self.check()
        return self._policy

    @property
    def current(self) -> Policy:
        """The policy in force, without looking at the file."""
        return self._policy

    @property
    def problem(self) -> str | None:
        """``"error: policy.toml: ..."`` while the file on disk does not load, else None."""
        return self._problem

    def check(self) -> bool:
        """Reread the file if it changed since it was read; True when a new policy is in force."""
        if _signature(self.path) == self._signature:
            return False
        return self.reload()

    def reload(self) -> bool:
        """Reread the file now (SIGHUP); True when a new policy is in force."""
        signature = _signature(self.path)
        self._signature = signature
        try:
            policy = self._read(signature)
        except PolicyError as exc:
            self._fail(signature, exc.message)
            return False
        self._policy, self._problem, self._reported = policy, None, None
        log.info("policy reloaded from %s: %d rule(s)", self.path.name, len(policy.rules))
        return True

    def _read(self, signature: Signature) -> Policy:
        name = self.path.name
        if signature is None:
            raise PolicyError(f"{name}: the file is gone; the policy read before stays in force")
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"{name}: cannot read the policy file: not UTF-8 text") from None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PolicyError(f"{name}: cannot read the policy file: {reason}") from None
        return parse_policy(text, name)

    def _fail(self, signature: Signature, message: str) -> None:
        problem = message.removeprefix("invalid policy: ")
        self._problem = f"error: {problem}"
        if self._reported != (signature, problem):
            self._reported = (signature, problem)
            log.error(
                "policy not reloaded, the rules read before stay in force: %s "
                "(fix it and save again, or `connector policy check %s`)",
                problem,
                self.path,
            )
