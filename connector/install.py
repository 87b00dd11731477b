"""The core of ``connector init`` (issue 18): the one install layout, the settings file, the store
and the policy of a new installation. The prompts and the output live in ``cli/init.py``.

The one layout (the README, the systemd units in ``scripts/``, the cron line and ``init``'s
defaults all use it):

- the code: a virtualenv at ``/opt/keap-bounce-connector`` (``bin/connector``);
- state and settings: ``/var/lib/keap-bounce-connector``, owned by the system user
  ``connector``: ``.env`` (mode 0600), ``connector.db``, ``policy.toml``; every command runs
  with this directory as its working directory, where the settings are read from ``.env``.

The settings file is written whole to a new file created with mode 0600 (never briefly readable
by others) and renamed over the old one; lines ``init`` does not set are kept as they were.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from connector.errors import ConfigError

APP_DIR = Path("/opt/keap-bounce-connector")
STATE_DIR = Path("/var/lib/keap-bounce-connector")
SERVICE_USER = "connector"
ENV_NAME = ".env"
DATABASE_NAME = "connector.db"
POLICY_NAME = "policy.toml"
REDIRECT_PATH = "/oauth/callback"
PRIVATE = 0o600

_NAME = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_SAFE = re.compile(r"^[A-Za-z0-9_./:@%+,=~-]*$")

Origin = Literal["given", "generated", "default"]


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def read_env(path: Path) -> dict[str, str]:
    """The settings a ``.env`` holds (empty values count as unset)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the settings file ({exc})") from None
    return {name.upper(): value for name, value in values.items() if name and value}


def _quoted(value: str) -> str:
    if _SAFE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def write_env(path: Path, values: Mapping[str, str], header: str = "") -> None:
    """Set ``values`` in the settings file at ``path``; other lines stay as they were.

    The new content goes to a sibling created with ``O_EXCL`` and mode 0600, then replaces the
    file in one rename: the file is never readable by another user, not even for a moment.
    """
    old = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if not old and header:
        old = header.splitlines()
    pending = dict(values)
    lines = []
    for line in old:
        match = _NAME.match(line)
        name = match.group(1).upper() if match else None
        if name in pending:
            lines.append(f"{name}={_quoted(pending.pop(name))}")
        else:
            lines.append(line)
    lines += [f"{name}={_quoted(value)}" for name, value in pending.items()]
    text = "\n".join(lines) + "\n"
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, PRIVATE)  # whatever the umask did
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def make_state_dir(path: Path) -> Path:
    """The state directory, created (mode 0700) when missing; a clear error when it cannot be."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {path}: {exc.strerror or exc}",
            hint=f"create it as root (install -d -o {SERVICE_USER} -g {SERVICE_USER} -m 0700 "
            f"{path}) and run init as {SERVICE_USER}, or pick another --dir",
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{path} is not writable by this user",
            hint=f"run init as the user that owns it (sudo -u {SERVICE_USER} ...)",
        )
    return path


@dataclass(frozen=True)
class Decision:
    """What ``init`` does with one setting: ``value`` is what the file will hold."""

    name: str
    value: str
    action: Literal["new", "kept", "kept, not replaced", "replaced", "same"]
    secret: bool = False

    def describe(self) -> str:
        shown = "(secret, not shown)" if self.secret else self.value
        hint = " (--force or a terminal replaces it)" if self.action == "kept, not replaced" else ""
        return f"{self.name} = {shown} [{self.action}]{hint}"


def make_private(path: Path) -> None:
    """A file of the installation readable by its owner only (doctor checks the store's)."""
    if path.exists():
        os.chmod(path, PRIVATE)
