"""The remediation policy (DESIGN.md section 7, a contract), as a package.

- :mod:`~connector.policy.model`: the types (rules, settings, the event and contact ``decide``
  sees, the plan it returns);
- :mod:`~connector.policy.schema` and :mod:`~connector.policy.load`: TOML -> model, every
  problem named; the built-in default policy;
- :mod:`~connector.policy.engine`: :func:`decide`, pure (no I/O, no clock);
- :mod:`~connector.policy.show`: what ``policy show`` / ``policy check`` print.

Everything callers used from the former ``connector/policy.py`` is re-exported here, so
``from connector.policy import decide`` and ``policy.load_policy(...)`` keep working.
"""

from __future__ import annotations

from connector.durations import MAX_DURATION, format_duration, parse_duration
from connector.policy.engine import count_strikes, decide, last_engagement, render_template
from connector.policy.load import (
    DEFAULT_POLICY_TEXT,
    check_policy_file,
    default_policy,
    load_policy,
    parse_policy,
    write_default_policy,
)
from connector.policy.model import (
    DEFAULT_SOURCE,
    DEFAULT_STATUS_MAP,
    Action,
    BounceEvent,
    ContactView,
    Plan,
    Policy,
    PolicySettings,
    Rule,
    RuleMatch,
    Strike,
    When,
)
from connector.policy.schema import MAX_COUNT, WHEN_FORMS, parse_when
from connector.policy.show import RULE_COLUMNS, effective_rules, policy_summary

__all__ = [
    "DEFAULT_POLICY_TEXT",
    "DEFAULT_SOURCE",
    "DEFAULT_STATUS_MAP",
    "MAX_COUNT",
    "MAX_DURATION",
    "RULE_COLUMNS",
    "WHEN_FORMS",
    "Action",
    "BounceEvent",
    "ContactView",
    "Plan",
    "Policy",
    "PolicySettings",
    "Rule",
    "RuleMatch",
    "Strike",
    "When",
    "check_policy_file",
    "count_strikes",
    "decide",
    "default_policy",
    "effective_rules",
    "format_duration",
    "last_engagement",
    "load_policy",
    "parse_duration",
    "parse_policy",
    "parse_when",
    "policy_summary",
    "render_template",
    "write_default_policy",
]
