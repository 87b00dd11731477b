"""TOML -> :class:`~connector.policy.model.Policy`: parsing and validation (DESIGN.md 7).

The policy is the only place where the connector's behaviour is a user's choice, so it is
validated hard at load time: every problem is reported at once, each naming the rule, its
bounce type and the field. Durations use :mod:`connector.durations`, the grammar ``--since``
shares. The built-in default policy (``connector/default_policy.toml``) is loaded here too.

Tag conflicts: a tag that one rule adds and another removes is an error at load time when the two
rules can match the same event. That is decidable when both rules count strikes the same way
(same bounce types, ``within`` and ``reset_on_engagement``), or when one count can never exceed
the other; otherwise the policy is accepted and, at decide time, **adding wins**: the tag is
applied and not removed, because a tag that is wrongly present is visible and easy to remove,
while a wrongly removed tag loses information.

What each key may hold is in :mod:`connector.policy.schema`; this module reads files, checks
across rules and words every problem.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from connector.errors import PolicyError
from connector.policy.model import (
    DEFAULT_SOURCE,
    Action,
    Incidents,
    Policy,
    PolicySettings,
    Rule,
    at_most,
)
from connector.policy.schema import FileShape, RuleShape

# ---------------------------------------------------------------------------------------------
# Validation


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate a policy; raises ``PolicyError`` carrying every problem found."""
    policy, problems = _validate(text, source)
    if policy is None or problems:
        raise PolicyError("invalid policy: " + "; ".join(problems))
    return policy


def check_policy_file(path: Path) -> list[str]:
    """Every problem in a policy file, one line each; empty when the file is valid.

    Unlike ``load_policy`` a missing file is a problem here: checking a file that is not there
    is almost always a typo in the path.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}: cannot read the policy file: {_os_reason(exc)}"]
    return _validate(text, str(path))[1]


def load_policy(path: Path) -> Policy:
    """The policy in ``path``, or the built-in default when no file is there (DESIGN.md 4)."""
    if not path.exists():
        return default_policy()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {_os_reason(exc)}") from None
    return parse_policy(text, str(path))


def _os_reason(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    return exc.strerror or type(exc).__name__


def _validate(text: str, source: str) -> tuple[Policy | None, list[str]]:
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        return None, [f"{source}: not valid TOML: {exc}"]
    try:
        shape = FileShape.model_validate(data)
    except ValidationError as exc:
        return None, [f"{source}: {problem}" for problem in _file_problems(exc, data)]
    rules, problems = _rules(shape.rule)
    problems += _conflicts(rules)
    policy = Policy(
        rules=tuple(rules),
        settings=PolicySettings(
            shape.settings.dedupe_window,
            shape.settings.note_title,
            shape.settings.protect_tags,
        ),
        status_map=MappingProxyType(shape.sync.status_map),
        source=source,
        incidents=None
        if shape.incidents is None
        else Incidents(shape.incidents.bounce, shape.incidents.threshold, shape.incidents.within),
    )
    return policy, [f"{source}: {problem}" for problem in problems]


def _file_problems(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    """The problems outside the rules; rules are checked one by one so all of them report."""
    problems = [
        _describe(error, FileShape)
        for error in exc.errors(include_url=False)
        if error["loc"][:1] != ("rule",) or len(error["loc"]) == 1
    ]
    raw_rules = data.get("rule")
    if isinstance(raw_rules, list):
        problems += _rules(raw_rules)[1]
    return problems


def _rules(raw_rules: Sequence[object]) -> tuple[list[Rule], list[str]]:
    rules: list[Rule] = []
    problems: list[str] = []
    for position, raw in enumerate(raw_rules, start=1):
        where = f"rule {position} ({_raw_bounce(raw)})"
        try:
            shape = RuleShape.model_validate(raw)
        except ValidationError as exc:
            problems += [f"{where}: {_describe(error, RuleShape)}" for error in exc.errors()]
            continue
        rule = _rule(position, shape)
        own = _own_problems(rule)
        problems += [f"{where}: {problem}" for problem in own]
        if not own:
            rules.append(rule)
    return rules, problems


def _raw_bounce(raw: object) -> str:
    value = raw.get("bounce") if isinstance(raw, dict) else None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return "/".join(value)
    return "no bounce type"


def _rule(position: int, shape: RuleShape) -> Rule:
    return Rule(
        index=position,
        bounce_types=shape.bounce,
        when=shape.when,
        action=shape.action,
        add_tags=shape.add_tags,
        remove_tags=shape.remove_tags,
        note=shape.note,
        within=shape.within,
        reset_on_engagement=shape.reset_on_engagement,
        tasks=shape.task,
        domains=shape.domains,
        exclude_domains=shape.exclude_domains,
        notify=shape.notify,
        expire=shape.expire,
    )


def _own_problems(rule: Rule) -> list[str]:
    problems = [
        f"remove_tags: {tag!r} is also in add_tags"
        for tag in rule.remove_tags
        if tag in rule.add_tags
    ]
    if rule.expire is not None and rule.action not in (Action.OPT_OUT, Action.PROMOTE):
        problems.append(
            f"expire: only an opt_out or promote rule can expire (this rule's action is "
            f"{rule.action.value!r}); allowed actions with expire: 'opt_out', 'promote'"
        )
    acts = rule.action is not Action.NONE or rule.note or rule.notify
    if not (acts or rule.add_tags or rule.remove_tags or rule.tasks):
        problems.append(
            "action: the rule does nothing; give it an action other than 'none', "
            "add_tags, remove_tags, note = true or a task (or delete it)"
        )
    return problems


_MESSAGES = {
    "bool_type": "expected true or false",
    "list_type": "expected an array of tables ([[rule]])",
    "model_type": "expected a table",
    "dict_type": "expected a table",
    "model_attributes_type": "expected a table",
}


def _describe(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One problem as "field: message", in words a policy author can act on."""
    field = ".".join(str(part) for part in error["loc"] if part != "[key]")
    kind = error["type"]
    if not field:
        return _MESSAGES.get(kind, error["msg"])
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed(model, error["loc"]))
        return f"{field}: unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return f"{field}: required but missing"
    message = _MESSAGES.get(kind, error["msg"].removeprefix("Value error, "))
    return f"{field}: {message}"


def _allowed(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    for part in loc[:-1]:
        if str(part) not in model.model_fields:
            break
        annotation = model.model_fields[str(part)].annotation
        # ``[incidents]`` is optional: its annotation is ``IncidentsShape | None``.
        found = [a for a in (annotation, *get_args(annotation)) if _is_model(a)]
        if not found:
            break
        model = found[0]
    return list(model.model_fields)


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _conflicts(rules: Sequence[Rule]) -> list[str]:
    """Tags one rule adds and another removes, where both rules can match the same event."""
    problems: list[str] = []
    for remover in rules:
        for adder in rules:
            clash = [tag for tag in remover.remove_tags if tag in adder.add_tags]
            if adder is remover or not clash or not _can_match_together(adder, remover):
                continue
            problems += [
                f"rule {remover.index} ({'/'.join(remover.bounce_types)}): remove_tags: "
                f"{tag!r} is added by {adder.name} and both can match the same event "
                f"({adder.when} and {remover.when})"
                for tag in clash
            ]
    return problems


def _can_match_together(one: Rule, other: Rule) -> bool:
    """Whether some event and history make both rules match; True when it cannot be ruled out."""
    if not set(one.bounce_types) & set(other.bounce_types):
        return False
    if _never_more(one, other) and _never_more(other, one):
        return one.when.overlaps(other.when)
    if _never_more(one, other):
        return at_most(one.when.low, other.when.high)
    if _never_more(other, one):
        return at_most(other.when.low, one.when.high)
    return True


def _never_more(small: Rule, large: Rule) -> bool:
    """``small`` counts a subset of what ``large`` counts, so its count is never larger."""
    window_inside = large.within is None or (
        small.within is not None and small.within <= large.within
    )
    return (
        set(small.bounce_types) <= set(large.bounce_types)
        and window_inside
        and (small.reset_on_engagement or not large.reset_on_engagement)
    )


# ---------------------------------------------------------------------------------------------
# The built-in default

DEFAULT_POLICY_TEXT = (
    resources.files("connector").joinpath("default_policy.toml").read_text(encoding="utf-8")
)


@cache
def default_policy() -> Policy:
    return parse_policy(DEFAULT_POLICY_TEXT, DEFAULT_SOURCE)


def write_default_policy(path: Path, force: bool = False) -> Path:
    """Write the commented default policy; an existing file is someone's edits, so keep it."""
    if path.exists() and not force:
        raise PolicyError(f"{path} already exists", hint="pass --force to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEFAULT_POLICY_TEXT, encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            f"{path}: cannot write the policy file: {_os_reason(exc)}", hint=""
        ) from None
    return path
