"""The remediation policy (DESIGN.md section 7), becoming a package: model, load, engine."""

from connector.policy.engine import *  # noqa: F403
