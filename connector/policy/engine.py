"""The remediation policy (DESIGN.md section 7, a contract): loading, validation and ``decide``.

The policy is the only place where the connector's behaviour is a user's choice, so it is
validated hard at load time (every problem, each naming the rule, its bounce type and the field)
and applied by :func:`decide`, a pure function of its arguments. Purity is what lets the worker
re-plan a retried event, ``sync --dry-run`` preview, and the tests enumerate behaviour without a
clock or a Keap account.

Rule numbers are 1-based positions of ``[[rule]]`` tables in the file ("rule 1" is the first),
because that is what a person editing the file counts; ``Rule.index``, ``Plan.rule`` and
``RuleMatch.rule`` all use them.

Tag conflicts: a tag that one rule adds and another removes is an error at load time when the two
rules can match the same event. That is decidable when both rules count strikes the same way
(same bounce types, ``within`` and ``reset_on_engagement``), or when one count can never exceed
the other; otherwise the policy is accepted and, at decide time, **adding wins**: the tag is
applied and not removed, because a tag that is wrongly present is visible and easy to remove,
while a wrongly removed tag loses information.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainValidator, ValidationError
from pydantic_core import ErrorDetails

from connector.bounces import VALID_TYPES_TEXT, BounceType, parse_bounce_type
from connector.errors import BounceTypeError, PolicyError

DEFAULT_SOURCE = "built-in default policy"
MAX_COUNT = 1_000_000
MAX_DURATION = timedelta(days=3650)

# ---------------------------------------------------------------------------------------------
# Values


class Action(StrEnum):
    """What happens to the bounced address; severity orders them so the strictest rule wins."""

    NONE = "none"
    OPT_OUT = "opt_out"
    BLANK_EMAIL = "blank_email"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.NONE: 0, Action.OPT_OUT: 1, Action.BLANK_EMAIL: 2}


@dataclass(frozen=True)
class When:
    """A count condition, held as the closed range of counts it accepts (``high`` None: no end).

    A range rather than the parsed words makes overlap checks between rules simple arithmetic.
    """

    text: str
    low: int
    high: int | None

    def matches(self, count: int) -> bool:
        return self.low <= count and (self.high is None or count <= self.high)

    def overlaps(self, other: When) -> bool:
        return _le(self.low, other.high) and _le(other.low, self.high)

    def __str__(self) -> str:
        return self.text


def _le(low: int, high: int | None) -> bool:
    return high is None or low <= high


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]`` table, validated and normalised."""

    index: int
    bounce_types: tuple[BounceType, ...]
    when: When
    action: Action = Action.NONE
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    note: bool = False
    within: timedelta | None = None
    reset_on_engagement: bool = False
    tasks: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"rule {self.index} ({'/'.join(self.bounce_types)})"

    @property
    def counts_all_time(self) -> bool:
        """Only an unrestricted count is comparable with Keap's own all-time count."""
        return self.within is None and not self.reset_on_engagement


@dataclass(frozen=True)
class PolicySettings:
    dedupe_window: timedelta = timedelta(minutes=10)
    note_title: str = "Bounce remediation"


DEFAULT_STATUS_MAP: Mapping[str, BounceType] = {
    "HARD_BOUNCE": BounceType.HARD_BOUNCE,
    "BOUNCE": BounceType.GENERAL_BOUNCE,
}


@dataclass(frozen=True)
class Policy:
    """A loaded policy; ``source`` names the file (or the built-in default) for messages."""

    rules: tuple[Rule, ...]
    settings: PolicySettings
    status_map: Mapping[str, BounceType]
    source: str = DEFAULT_SOURCE

    def bounce_type_for_status(self, status: str) -> BounceType | None:
        """The bounce type ``sync`` records for a Keap email status; None for unmapped or unknown
        statuses, since Keap may add enum values at any time (keap-api.md section 3)."""
        return self.status_map.get(status.strip().upper())


@dataclass(frozen=True)
class BounceEvent:
    """The bounce being decided; ``email`` is the address that bounced, already resolved."""

    contact_id: str
    email: str
    bounce_type: BounceType
    occurred_at: datetime
    keap_count: int | None = None


@dataclass(frozen=True)
class ContactView:
    """What ``decide`` may know about the contact; open/click times are of the bounced address."""

    contact_id: str
    email_field: str | None
    fields: Mapping[str, str]
    last_open_time: datetime | None
    last_click_time: datetime | None


@dataclass(frozen=True)
class Strike:
    """A bounce counted earlier for the same contact and address (any type)."""

    bounce_type: BounceType
    occurred_at: datetime


@dataclass(frozen=True)
class RuleMatch:
    """A rule that matched the event, with the count it matched on."""

    rule: int
    count: int


@dataclass(frozen=True)
class Plan:
    """What to do for one event; the executor carries it out, the audit records it."""

    action: Action
    rule: int | None
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    note: str | None
    note_title: str
    tasks: tuple[str, ...]
    matched: tuple[RuleMatch, ...]
    reason: str

    @property
    def does_nothing(self) -> bool:
        return (
            self.action is Action.NONE
            and not (self.add_tags or self.remove_tags or self.tasks)
            and self.note is None
        )


# ---------------------------------------------------------------------------------------------
# Parsing values of the file

_WHEN = re.compile(r"\s*(always|exactly|at\s+least|more\s+than)\s*([0-9]*)\s*", re.I | re.A)
_DURATION = re.compile(r"\s*([0-9]{1,7})\s*([smhdw])\s*", re.A)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
WHEN_FORMS = "'always', 'exactly N', 'at least N' or 'more than N'"


def parse_when(text: str) -> When:
    """Parse a count condition; raises ``ValueError`` with a message fit for a policy error."""
    found = _WHEN.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a count condition; use {WHEN_FORMS}")
    word = " ".join(found.group(1).lower().split())
    digits = found.group(2)
    if word == "always":
        if digits:
            raise ValueError(f"{text!r}: 'always' takes no number")
        return When("always", 1, None)
    if not digits:
        raise ValueError(f"{text!r}: {word!r} needs a number, e.g. '{word} 2'")
    number = int(digits)
    if number > MAX_COUNT:
        raise ValueError(f"{text!r}: the number must be at most {MAX_COUNT}")
    return _when_range(word, number, text)


def _when_range(word: str, number: int, text: str) -> When:
    canonical = f"{word} {number}"
    if word == "more than":
        return When(canonical, number + 1, None)
    if number < 1:
        raise ValueError(f"{text!r} can never match: the bounce being decided always counts as 1")
    if word == "exactly":
        return When(canonical, number, number)
    return When(canonical, number, None)


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """Parse "45s", "10m", "12h", "30d" or "2w"; raises ``ValueError`` naming the accepted forms."""
    found = _DURATION.fullmatch(text)
    if found is None:
        raise ValueError(
            f"{text!r} is not a duration; use a whole number and a unit: "
            "s, m, h, d or w (e.g. '10m', '30d', '2w')"
        )
    value = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    if value > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than the 3650-day limit")
    if not value and not allow_zero:
        raise ValueError(f"{text!r} is empty: a window must be longer than zero")
    return value


def format_duration(value: timedelta) -> str:
    """The shortest policy-file spelling of a duration, so ``policy show`` reads like the file."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _string(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what} as a string, got {_toml_type(value)}")
    return value


def _strings(value: object, what: str) -> list[str]:
    """A string or an array of strings: a single value need not be wrapped in brackets."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected {what} as a string or an array of strings")
    return [_string(item, what) for item in items]


def _toml_type(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", list: "an array"}
    return names.get(type(value), "a table" if isinstance(value, dict) else "a date or time")


def _v_bounce(value: object) -> tuple[BounceType, ...]:
    found: list[BounceType] = []
    unknown: list[str] = []
    for item in _strings(value, "bounce types"):
        try:
            found.append(parse_bounce_type(item))
        except BounceTypeError:
            unknown.append(repr(item))
    if unknown:
        raise ValueError(f"unknown bounce type {', '.join(unknown)}; use one of {VALID_TYPES_TEXT}")
    if not found:
        raise ValueError("name at least one bounce type")
    return tuple(dict.fromkeys(found))


def _v_tags(value: object) -> tuple[str, ...]:
    tags = [tag.strip() for tag in _strings(value, "tag names")]
    if not all(tags):
        raise ValueError("a tag name cannot be empty")
    return tuple(dict.fromkeys(tags))


def _v_tasks(value: object) -> tuple[str, ...]:
    tasks = [task.strip() for task in _strings(value, "task titles")]
    if not all(tasks):
        raise ValueError("a task title cannot be empty")
    return tuple(dict.fromkeys(tasks))


def _v_action(value: object) -> Action:
    text = _string(value, "the action")
    try:
        return Action(text.strip().lower())
    except ValueError:
        choices = ", ".join(repr(action.value) for action in Action)
        raise ValueError(f"unknown action {text!r}; use one of {choices}") from None


def _v_when(value: object) -> When:
    return parse_when(_string(value, "a count condition"))


def _v_within(value: object) -> timedelta:
    return parse_duration(_string(value, "a duration"))


def _v_dedupe(value: object) -> timedelta:
    return parse_duration(_string(value, "a duration"), allow_zero=True)


def _v_title(value: object) -> str:
    title = _string(value, "the note title").strip()
    if not title:
        raise ValueError("the note title cannot be empty")
    return title


# Statuses that mean the address is fine; mapping one to a bounce would act on healthy contacts.
_MARKETABLE = frozenset({"UNENGAGED_MARKETABLE", "SINGLE_OPT_IN", "DOUBLE_OPT_IN", "CONFIRMED"})
_UNMARKETABLE = frozenset(
    {
        "UNENGAGED_NON_MARKETABLE",
        "NON_MARKETABLE",
        "LOCKDOWN",
        "BOUNCE",
        "HARD_BOUNCE",
        "MANUAL",
        "ADMIN",
        "SYSTEM",
        "LIST_UNSUBSCRIBE",
        "FEEDBACK",
        "SPAM",
        "INVALID",
        "DEACTIVATED",
    }
)


def _v_status(value: object) -> str:
    key = _string(value, "a Keap email status").strip().upper()
    if key in _MARKETABLE:
        raise ValueError("a marketable status; mapping it would act on healthy addresses")
    if key not in _UNMARKETABLE:
        raise ValueError(f"not a Keap email status; use one of {', '.join(sorted(_UNMARKETABLE))}")
    return key


def _v_one_bounce(value: object) -> BounceType:
    return _v_bounce(_string(value, "a bounce type"))[0]


_StatusMap = dict[
    Annotated[str, PlainValidator(_v_status)],
    Annotated[BounceType, PlainValidator(_v_one_bounce)],
]


# ---------------------------------------------------------------------------------------------
# The file's shape


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _RuleIn(_Strict):
    bounce: Annotated[tuple[BounceType, ...], PlainValidator(_v_bounce)]
    when: Annotated[When, PlainValidator(_v_when)] = When("always", 1, None)
    action: Annotated[Action, PlainValidator(_v_action)] = Action.NONE
    add_tags: Annotated[tuple[str, ...], PlainValidator(_v_tags)] = ()
    remove_tags: Annotated[tuple[str, ...], PlainValidator(_v_tags)] = ()
    note: bool = False
    within: Annotated[timedelta | None, PlainValidator(_v_within)] = None
    reset_on_engagement: bool = False
    task: Annotated[tuple[str, ...], PlainValidator(_v_tasks)] = ()


class _SettingsIn(_Strict):
    dedupe_window: Annotated[timedelta, PlainValidator(_v_dedupe)] = PolicySettings.dedupe_window
    note_title: Annotated[str, PlainValidator(_v_title)] = PolicySettings.note_title


class _SyncIn(_Strict):
    status_map: _StatusMap = dict(DEFAULT_STATUS_MAP)


class _FileIn(_Strict):
    settings: _SettingsIn = _SettingsIn()
    rule: list[dict[str, Any]] = []
    sync: _SyncIn = _SyncIn()


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
        shape = _FileIn.model_validate(data)
    except ValidationError as exc:
        return None, [f"{source}: {problem}" for problem in _file_problems(exc, data)]
    rules, problems = _rules(shape.rule)
    problems += _conflicts(rules)
    policy = Policy(
        rules=tuple(rules),
        settings=PolicySettings(shape.settings.dedupe_window, shape.settings.note_title),
        status_map=MappingProxyType(shape.sync.status_map),
        source=source,
    )
    return policy, [f"{source}: {problem}" for problem in problems]


def _file_problems(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    """The problems outside the rules; rules are checked one by one so all of them report."""
    problems = [
        _describe(error, _FileIn)
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
            shape = _RuleIn.model_validate(raw)
        except ValidationError as exc:
            problems += [f"{where}: {_describe(error, _RuleIn)}" for error in exc.errors()]
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


def _rule(position: int, shape: _RuleIn) -> Rule:
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
    )


def _own_problems(rule: Rule) -> list[str]:
    problems = [
        f"remove_tags: {tag!r} is also in add_tags"
        for tag in rule.remove_tags
        if tag in rule.add_tags
    ]
    acts = rule.action is not Action.NONE or rule.note
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
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


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
        return _le(one.when.low, other.when.high)
    if _never_more(other, one):
        return _le(other.when.low, one.when.high)
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
# Deciding


@dataclass(frozen=True)
class _Match:
    rule: Rule
    count: int
    keap_count_used: bool


def decide(
    policy: Policy, event: BounceEvent, contact: ContactView, history: Sequence[Strike]
) -> Plan:
    """Plan the remediation of one bounce. Pure: no I/O, and time comes only from the arguments.

    A rule applies when the event's bounce type is one of its types and its count matches its
    ``when``. Every applying rule contributes its tags, tasks and note; the action is the most
    severe among them, decided by the first (lowest-numbered) rule with that severity. See
    :func:`count_strikes` for how a rule counts.
    """
    engaged = last_engagement(contact)
    matches: list[_Match] = []
    for rule in policy.rules:
        if event.bounce_type in rule.bounce_types:
            count, used_keap = _count(rule, event, history, engaged)
            if rule.when.matches(count):
                matches.append(_Match(rule, count, used_keap))
    return _plan(policy, event, contact, matches)


def count_strikes(
    rule: Rule, event: BounceEvent, history: Iterable[Strike], engaged: datetime | None
) -> int:
    """The count ``rule`` compares with its ``when`` for ``event``.

    The current event always counts 1. A history strike counts too when all of these hold:

    - its bounce type is one of the rule's types;
    - it did not happen after the event (replaying events out of order must not let a later
      bounce count toward an earlier one);
    - with ``within``: ``event.occurred_at - strike.occurred_at <= within`` (the edge is inside);
    - with ``reset_on_engagement``: it happened strictly after ``engaged``, the later of the
      address's last open and last click. Each open or click resets the count to zero, so only
      the last one matters: if the address was engaged after the most recent counted bounce the
      count starts again at 1, and strikes after the engagement keep counting. A strike at the
      very instant of the engagement is treated as before it (the person read mail after it).

    Naive datetimes are taken as UTC so mixed inputs compare instead of raising.

    Keap's own count (``event.keap_count``) replaces ours when it is larger, but only for rules
    counting all time (no ``within``, no ``reset_on_engagement``): Keap may have counted bounces
    before the connector was installed or while it was down, and those are real strikes, but
    Keap's number says nothing about when they happened or whether mail was opened in between.
    """
    return _count(rule, event, history, engaged)[0]


def last_engagement(contact: ContactView) -> datetime | None:
    times = [
        _aware(moment)
        for moment in (contact.last_open_time, contact.last_click_time)
        if moment is not None
    ]
    return max(times, default=None)


def _count(
    rule: Rule, event: BounceEvent, history: Iterable[Strike], engaged: datetime | None
) -> tuple[int, bool]:
    now = _aware(event.occurred_at)
    engaged = None if engaged is None or not rule.reset_on_engagement else _aware(engaged)
    ours = 1
    for strike in history:
        if strike.bounce_type in rule.bounce_types and _counts(rule, strike, now, engaged):
            ours += 1
    keap = event.keap_count
    if keap is not None and rule.counts_all_time and keap > ours:
        return keap, True
    return ours, False


def _counts(rule: Rule, strike: Strike, now: datetime, engaged: datetime | None) -> bool:
    moment = _aware(strike.occurred_at)
    if moment > now or (engaged is not None and moment <= engaged):
        return False
    return rule.within is None or now - moment <= rule.within


def _aware(moment: datetime) -> datetime:
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def _plan(
    policy: Policy, event: BounceEvent, contact: ContactView, matches: Sequence[_Match]
) -> Plan:
    decider = max(matches, key=lambda match: match.rule.action.severity, default=None)
    add_tags = _unique(tag for match in matches for tag in match.rule.add_tags)
    remove_tags = _unique(
        tag for match in matches for tag in match.rule.remove_tags if tag not in add_tags
    )
    values = _template_values(event, contact)
    tasks = _unique(_task_title(task, values) for match in matches for task in match.rule.tasks)
    plan = Plan(
        action=Action.NONE if decider is None else decider.rule.action,
        rule=None if decider is None else decider.rule.index,
        add_tags=add_tags,
        remove_tags=remove_tags,
        note=None,
        note_title=policy.settings.note_title,
        tasks=tasks,
        matched=tuple(RuleMatch(match.rule.index, match.count) for match in matches),
        reason=_reason(event, decider),
    )
    if any(match.rule.note for match in matches):
        return _with_note(plan, event, matches)
    return plan


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _reason(event: BounceEvent, decider: _Match | None) -> str:
    """Short enough for Keap's opt-out reason, and names what a support person would ask."""
    label = event.bounce_type.label
    if decider is None:
        return f"{label}: no bounce policy rule matched"
    return f"{label} (count {decider.count}) - bounce policy rule {decider.rule.index}"


def _with_note(plan: Plan, event: BounceEvent, matches: Sequence[_Match]) -> Plan:
    return replace(plan, note=_note_text(plan, event, matches))


_DONE = {
    Action.NONE: "No change to the address {email}.",
    Action.OPT_OUT: "Opted out the address {email} (rule {rule}).",
    Action.BLANK_EMAIL: "Removed the address {email} from the contact (rule {rule}).",
}


def _note_text(plan: Plan, event: BounceEvent, matches: Sequence[_Match]) -> str:
    """A note a Keap user can read cold: what bounced, what was done, why, and the old value."""
    lines = [
        f"{event.bounce_type.label} ({event.bounce_type.value}) for {event.email}.",
        _DONE[plan.action].format(email=event.email, rule=plan.rule),
    ]
    if plan.action is not Action.NONE:
        lines.append(f"Old address: {event.email}")
    if plan.add_tags:
        lines.append("Tags added: " + ", ".join(plan.add_tags))
    if plan.remove_tags:
        lines.append("Tags removed: " + ", ".join(plan.remove_tags))
    if plan.tasks:
        lines.append("Tasks: " + "; ".join(plan.tasks))
    lines.append("Matched: " + "; ".join(_match_text(match) for match in matches))
    return "\n".join(lines)


def _match_text(match: _Match) -> str:
    keap = " (Keap's own count, larger than ours)" if match.keap_count_used else ""
    return f"rule {match.rule.index} ({match.rule.when}): count {match.count}{keap}"


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders; unknown names render empty and nothing here can raise.

    Not ``str.format``: policy templates must not reach attributes (``{x.__class__}``), and a
    stray brace in a task title must not crash the worker. ``{{`` and ``}}`` are literal braces.
    """

    def fill(found: re.Match[str]) -> str:
        token = found.group(0)
        if found.group(1) is None:
            return token[0]
        name = found.group(1).strip()
        value = values.get(name)
        if value is None:
            value = values.get(name.lower())
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(fill, template)


def _task_title(template: str, values: Mapping[str, str]) -> str:
    """A one-line title: empty fields must not leave doubled or trailing spaces behind."""
    return " ".join(render_template(template, values).split())


def _template_values(event: BounceEvent, contact: ContactView) -> dict[str, str]:
    """Contact fields, plus the event's own facts under names contact fields never use."""
    values = {
        "contact_id": event.contact_id,
        "bounced_email": event.email,
        "bounce_type": event.bounce_type.value,
        "bounce_label": event.bounce_type.label,
    }
    values.update(contact.fields)
    return values


# ---------------------------------------------------------------------------------------------
# Default policy and display

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


RULE_COLUMNS = (
    "rule",
    "bounce",
    "when",
    "within",
    "reset on engagement",
    "action",
    "add tags",
    "remove tags",
    "note",
    "tasks",
)


def effective_rules(policy: Policy) -> list[dict[str, str]]:
    """The rules as display rows keyed by ``RULE_COLUMNS``, for ``connector policy show``."""
    return [
        dict(
            zip(
                RULE_COLUMNS,
                (
                    str(rule.index),
                    ", ".join(rule.bounce_types),
                    str(rule.when),
                    "" if rule.within is None else format_duration(rule.within),
                    "yes" if rule.reset_on_engagement else "",
                    rule.action.value,
                    ", ".join(rule.add_tags),
                    ", ".join(rule.remove_tags),
                    "yes" if rule.note else "",
                    "; ".join(rule.tasks),
                ),
                strict=True,
            )
        )
        for rule in policy.rules
    ]


def policy_summary(policy: Policy) -> str:
    """A few lines that answer "what will this policy do to my contacts?" at a glance."""
    settings = policy.settings
    lines = [
        f"{policy.source}: {len(policy.rules)} rule(s); dedupe window "
        f"{format_duration(settings.dedupe_window)}; note title {settings.note_title!r}",
    ]
    for action in (Action.OPT_OUT, Action.BLANK_EMAIL):
        acting = [rule.name for rule in policy.rules if rule.action is action]
        lines.append(f"{action.value}: {', '.join(acting) if acting else 'never'}")
    covered = {bounce for rule in policy.rules for bounce in rule.bounce_types}
    idle = [bounce.value for bounce in BounceType if bounce not in covered]
    lines.append(f"no rule (nothing is done): {', '.join(idle) if idle else 'none'}")
    mapping = ", ".join(f"{status} -> {slug}" for status, slug in policy.status_map.items())
    lines.append(f"sync status map: {mapping or 'empty (sync finds nothing)'}")
    return "\n".join(lines)
