"""Who is acting: an authenticated principal, never a name the caller typed.

The CLI acts as the OS user of the effective uid; the server acts as the holder of an
API token (inventory/tokens.py). The operator's config maps OS users to groups and
says which OS users may act for which named principals (``--actor``): such a call is
recorded "on behalf of" that name, every policy rule that matches either name applies
(deny wins), and it never approves anything.

Names are normalised (NFC) and compared case-folded; they are validated (printable,
no spaces, control, bidi or invisible characters, bounded length) before anything runs.
Two different names that look alike (``alice``, and ``alice`` with a Cyrillic a; see
inventory/lookalikes.py) are refused wherever names are given: a new token's name, the
config's ``principals``, the policy's groups, approvers and actors; and an approver who
looks like the requester may not approve their call.

Group members in the policy may be globs (``agent-*``, ``bot-?``), matched case-folded;
other pattern characters (``[``, ``]``) are refused when the policy loads.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inventory.errors import PolicyDenied, UsageError
from inventory.lookalikes import invisible_character, skeleton

MAX_NAME_LENGTH = 64
# principals.admins when the config names none: members of the group admins.
DEFAULT_ADMINS = ("group:admins",)


class PrincipalKind(str, Enum):
    OS_USER = "os-user"
    TOKEN = "token"

    def __str__(self) -> str:
        return self.value


class PrincipalSettings(BaseModel):
    """``principals:`` of the policy (in force once applied: inventory/policy/applied.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # OS user -> groups (the policy's ``groups:`` add to these).
    users: dict[str, list[str]] = Field(default_factory=dict)
    # OS user -> principal names it may act for with --actor (an agent runner's account).
    act_for: dict[str, list[str]] = Field(default_factory=dict)
    # Who may create and revoke API tokens: principal names or group:NAME (groups from users: above,
    # the policy's groups: or a token's groups).
    admins: list[str] = Field(default_factory=lambda: list(DEFAULT_ADMINS))

    def names(self) -> list[str]:
        """Every principal name given here: OS users, and whom they may act for."""
        acted_for = [name for names in self.act_for.values() for name in names]
        return [*self.users, *self.act_for, *acted_for]

    @model_validator(mode="after")
    def _names_are_plain_and_distinct(self) -> PrincipalSettings:
        """Every name here is a name, not a pattern (a glob would silently match nobody), and no two look alike."""
        named: list[tuple[str, str]] = []
        for table in ("users", "act_for"):
            for user, values in getattr(self, table).items():
                named.append((user, table))
                if table == "act_for":
                    named += [(value, f"act_for.{user}") for value in values]
        for name, where in named:
            try:
                normalise_name(name, what=f"{where}: name")
            except UsageError as exc:
                raise ValueError(str(exc)) from None
            if any(ch in name for ch in PATTERN_CHARACTERS):
                raise ValueError(f"{where}: {name!r} is a pattern; only plain names are accepted here")
        for first, second in confusable_pairs(name for name, _where in named):
            raise ValueError(confusable_message(first, second))
        return self


def normalise_name(raw: str, *, what: str = "principal name") -> str:
    """NFC, stripped; refused (UsageError, exit 2) unless printable, without spaces, and at most 64 characters."""
    if not isinstance(raw, str):
        raise UsageError(f"{what} must be text")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} {raw.encode('utf-8', 'backslashreplace').decode()!r} is not valid text") from None
    name = unicodedata.normalize("NFC", raw.strip())
    if not name:
        raise UsageError(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"{what} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    bad = next((ch for ch in name if not ch.isprintable() or ch.isspace()), None) or invisible_character(name)
    if bad is not None:
        raise UsageError(
            f"{what} {name.encode('unicode_escape').decode()!r} holds {unicodedata.name(bad, repr(bad))}; "
            "only printable characters without spaces (and none that shows as nothing) are allowed"
        )
    return name


# Glob characters a policy group member may use, and every pattern character (refused where names are plain).
MEMBER_GLOB_CHARACTERS = "*?"
PATTERN_CHARACTERS = "*?[]"


def member_matches(member: str, name: str) -> bool:
    """Whether a group member (a name, or a glob with * and ?) names ``name``; compared as principals."""
    return fnmatchcase(name_key(name), name_key(member))


def confusable_pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of different names (by ``name_key``) that look alike (equal ``lookalikes.skeleton``)."""
    seen: dict[str, str] = {}
    pairs = []
    for name in names:
        other = seen.setdefault(skeleton(name), name)
        if name_key(other) != name_key(name):
            pairs.append((other, name))
    return pairs


def confusable_message(first: str, second: str) -> str:
    shown = [n.encode("ascii", "backslashreplace").decode() for n in (first, second)]
    return f"'{shown[0]}' and '{shown[1]}' are different names that look alike; rename one"


def lookalike_among(name: str, others: Iterable[str]) -> str | None:
    """The first of ``others`` that is a different name looking like ``name``, if any."""
    shape, key = skeleton(name), name_key(name)
    return next((other for other in others if name_key(other) != key and skeleton(other) == shape), None)


def refuse_lookalike(name: str, existing: Iterable[str], *, what: str = "principal name") -> None:
    """UsageError if ``name`` looks like one of ``existing`` without being it."""
    other = lookalike_among(name, existing)
    if other is not None:
        raise UsageError(f"{what}: {confusable_message(other, name)}")


def name_key(name: str) -> str:
    """How two names are compared: NFC, then case-folded (``Alice`` and ``alice`` are one principal)."""
    return unicodedata.normalize("NFC", name).casefold()


@dataclass(frozen=True)
class Principal:
    name: str
    kind: PrincipalKind = PrincipalKind.OS_USER
    groups: frozenset[str] = field(default_factory=frozenset)
    # The named principal this call acts for (--actor); never an approver.
    on_behalf_of: str | None = None

    @property
    def key(self) -> str:
        return name_key(self.name)

    def names(self) -> tuple[str, ...]:
        """Every name the policy's rules are matched against: the principal and whom it acts for."""
        return (self.name,) if self.on_behalf_of is None else (self.name, self.on_behalf_of)

    def same_as(self, other: Principal | str) -> bool:
        other_name = other.name if isinstance(other, Principal) else other
        return self.key == name_key(other_name)

    @property
    def label(self) -> str:
        """As recorded in the audit log and approvals."""
        return self.name if self.on_behalf_of is None else f"{self.name} (on behalf of {self.on_behalf_of})"

    @classmethod
    def of(cls, name: str, groups: Iterable[str] = (), **kw: object) -> Principal:
        return cls(normalise_name(name), groups=frozenset(groups), **kw)  # type: ignore[arg-type]


def named_by(entries: Iterable[str], principal: Principal, groups: Iterable[str] = ()) -> bool:
    """Whether a list of principal names (globs with * and ?) and ``group:NAME`` entries names the principal (by
    its groups and ``groups``).

    A principal acting for someone else (--actor) is never named: it approves nothing and administers nothing.
    """
    if principal.on_behalf_of is not None:
        return False
    held = {name_key(g) for g in (*principal.groups, *groups)}
    return any(
        name_key(entry[len("group:") :]) in held
        if entry.startswith("group:")
        else member_matches(entry, principal.name)
        for entry in entries
    )


def require_admin(principal: Principal, admins: Iterable[str], doing: str) -> None:
    """PolicyDenied (exit code 3) unless ``principals.admins`` names the principal."""
    admins = list(admins)
    if not named_by(admins, principal):
        raise PolicyDenied(
            f"{principal.label} may not {doing}: only admins may (principals.admins of the applied policy names them: "
            f"{', '.join(admins) or 'no one'})"
        )


def os_user_name(uid: int | None = None) -> str:
    """The OS user of ``uid``, by default the effective uid (not $USER, which the caller sets)."""
    uid = os.geteuid() if uid is None else uid
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # no passwd entry: a container running under an arbitrary uid
        return f"uid-{uid}"


def configured_for(table: Mapping[str, list[str]], name: str) -> list[str]:
    """The values a config table (users, act_for) lists for ``name``, its keys compared as principals."""
    key = name_key(name)
    return [value for entry, values in table.items() if name_key(entry) == key for value in values]


def cli_principal(settings: PrincipalSettings, actor: str | None = None, *, user: str | None = None) -> Principal:
    """The principal of a CLI call: the OS user, acting for ``actor`` when the config allows it."""
    name = normalise_name(user or os_user_name(), what="OS user name")
    groups = frozenset(configured_for(settings.users, name))
    return acting_for(settings, Principal(name, PrincipalKind.OS_USER, groups), actor)


def local_principal(settings: PrincipalSettings, uid: int, actor: str | None = None) -> Principal:
    """The OS user a connection to the server's Unix socket comes from (its uid, told by the kernel), as the CLI
    would see them: the groups ``principals.users`` gives them, acting for ``actor`` where allowed."""
    return cli_principal(settings, actor, user=os_user_name(uid))


def acting_for(settings: PrincipalSettings, principal: Principal, actor: str | None) -> Principal:
    """``principal`` acting for ``actor`` (--actor), only where ``principals.act_for`` allows it (else UsageError)."""
    if actor is None:
        return principal
    name = principal.name
    wanted = normalise_name(actor, what="--actor")
    if name_key(wanted) == name_key(name):
        return principal
    allowed = configured_for(settings.act_for, name)
    if not any(name_key(a) == name_key(wanted) for a in allowed):
        raise UsageError(
            f"--actor {wanted}: OS user {name} may not act for {wanted} "
            f"(principals.act_for of the applied policy names whom each OS user may act for)"
        )
    return Principal(
        name,
        principal.kind,
        principal.groups | frozenset(configured_for(settings.users, wanted)),
        on_behalf_of=wanted,
    )


def system_principal() -> Principal:
    """The process itself (sync runs): its OS user, without --actor."""
    try:
        return Principal(normalise_name(os_user_name(), what="OS user name"))
    except UsageError:  # an OS account name we would refuse from a person still names this process
        return Principal(f"uid-{os.geteuid()}")


__all__ = [
    "DEFAULT_ADMINS",
    "MAX_NAME_LENGTH",
    "Principal",
    "PrincipalKind",
    "PrincipalSettings",
    "acting_for",
    "cli_principal",
    "configured_for",
    "confusable_pairs",
    "local_principal",
    "lookalike_among",
    "member_matches",
    "name_key",
    "named_by",
    "normalise_name",
    "os_user_name",
    "refuse_lookalike",
    "require_admin",
    "system_principal",
]
