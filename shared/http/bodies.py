"""Validation of POST /api/publish bodies. Every rejection names the field and the rule."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from shared.domain.plan import Plan, PlanError, parse_canary, parse_rollout
from shared.domain.targets import Target
from shared.foundation.errors import RequestError
from shared.foundation.settings import GUID, SCOPES

MAX_BODY_BYTES = 1024 * 1024
MAX_IDS = 10_000  # chatIds, teamIds and userIds together
MAX_CHAT_ID_LENGTH = 512
FIELDS = ("teamsAppId", "externalId", "version", "scopes", "chatIds", "teamIds", "userIds", "dryRun", "canary", "rollout")
FIELDS += ("groupId",)
ID_LISTS = (("chatIds", "chat", "chat ids"), ("teamIds", "team", "team ids (GUIDs)"), ("userIds", "personal", "user ids (GUIDs)"))
VERSION = re.compile(r"^\d{1,9}(\.\d{1,9}){0,3}$")
CHAT_ID = re.compile(r"^19:[^@]+@[^@]+$")
PLAIN_CHAT_ID = re.compile(r"^19:[!-~]+@[!-~]+$")  # printable ASCII: the usual case, checked at C speed
FORBIDDEN_IN_CHAT_ID = frozenset("/?#%\\")


@dataclass(frozen=True, kw_only=True)
class PublishRequest:
    teams_app_id: str | None
    external_id: str | None
    version: str | None
    dry_run: bool
    scopes: tuple[str, ...] | None  # None: the deployment's UPGRADE_SCOPES
    targets: list[Target] | None  # explicit targets; None: discover
    plan: Plan | None = None  # the canary or rollout asked for
    group_id: str | None = None  # discover among this group's members only

    @property
    def run_scopes(self) -> tuple[str, ...] | None:
        """The scopes the run covers, when the request decides them."""
        if self.targets is not None:
            return tuple(s for s in SCOPES if any(t.scope == s for t in self.targets))
        return self.scopes


def _bad(code: str, message: str) -> RequestError:
    return RequestError(code, message)


def _check_chat_id(value: object, index: int) -> str:
    where = f"chatIds[{index}]"
    if not isinstance(value, str):
        raise _bad("invalidChatId", f"{where} must be a string.")
    if len(value) > MAX_CHAT_ID_LENGTH:
        raise _bad("invalidChatId", f"{where} is longer than {MAX_CHAT_ID_LENGTH} characters.")
    if PLAIN_CHAT_ID.match(value) and not FORBIDDEN_IN_CHAT_ID.intersection(value) and value.count("@") == 1:
        return value
    for ch in value:
        if ch in FORBIDDEN_IN_CHAT_ID or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise _bad("invalidChatId", f"{where} contains a character that is not allowed in a chat id: {ch!r}.")
    if not CHAT_ID.match(value):
        raise _bad("invalidChatId", f"{where} is not a chat id of the form 19:...@... ({value[:80]!r}).")
    return value


def _check_guid(value: object, index: int, field: str, code: str) -> str:
    if not isinstance(value, str) or not GUID.match(value):
        raise _bad(code, f"{field}[{index}] must be a GUID.")
    return value.lower()


def _id_list(data: dict, field: str, scope: str, what: str) -> list[Target] | None:
    values = data.get(field)
    if values is None:
        return None
    plural = f"invalid{field[0].upper()}{field[1:]}"  # invalidChatIds
    single = plural[:-1]  # invalidChatId
    if not isinstance(values, list):
        raise _bad(plural, f"{field} must be an array of {what}.")
    if not 1 <= len(values) <= MAX_IDS:
        raise _bad(plural, f"{field} must hold between 1 and {MAX_IDS} ids; it holds {len(values)}.")
    if scope == "chat":
        ids = [_check_chat_id(v, i) for i, v in enumerate(values)]
    else:
        ids = [_check_guid(v, i, field, single) for i, v in enumerate(values)]
    return [Target(scope, i) for i in dict.fromkeys(ids)]


def _scopes(data: dict, explicit: bool) -> tuple[str, ...] | None:
    scopes = data.get("scopes")
    if scopes is None:
        return None
    if explicit:
        raise _bad(
            "invalidScopes", "scopes must be absent when chatIds, teamIds or userIds are given: the run targets exactly them."
        )
    if (
        not isinstance(scopes, list)
        or not scopes
        or not all(isinstance(s, str) and s in SCOPES for s in scopes)
        or len(set(scopes)) != len(scopes)
    ):
        raise _bad("invalidScopes", f"scopes must be a non-empty array of distinct values from {', '.join(SCOPES)}.")
    return tuple(s for s in SCOPES if s in scopes)


def _plan(data: dict, dry_run: bool) -> Plan | None:
    """The canary or the rollout asked for (not both, not with a dry run)."""
    canary, rollout = data.get("canary"), data.get("rollout")
    if canary is not None and rollout is not None:
        raise _bad("rolloutWithCanary", "rollout and canary exclude each other: a canary is the one-step rollout.")
    if canary is not None:
        if dry_run:
            raise _bad("canaryWithDryRun", "canary and dryRun exclude each other: a dry run upgrades nothing.")
        try:
            return parse_canary(canary)
        except PlanError as exc:
            raise _bad("invalidCanary", str(exc)) from None
    if rollout is not None:
        if dry_run:
            raise _bad("rolloutWithDryRun", "rollout and dryRun exclude each other: a dry run upgrades nothing.")
        try:
            return parse_rollout(rollout)
        except PlanError as exc:
            raise _bad("invalidRollout", f"{exc}.") from None
    return None


def _group(data: dict, explicit: bool) -> str | None:
    group = data.get("groupId")
    if group is None:
        return None
    if not isinstance(group, str) or not GUID.match(group):
        raise _bad("invalidGroupId", "groupId must be a GUID, the object id of an Entra ID group.")
    if explicit:
        raise _bad("groupWithIds", "groupId and chatIds, teamIds or userIds exclude each other: ids are the targets.")
    return group.lower()


def check_enabled(request: PublishRequest, enabled: tuple[str, ...]) -> None:
    """A scope the deployment does not upgrade (UPGRADE_SCOPES) lacks its Graph permissions."""
    missing = [s for s in request.run_scopes or () if s not in enabled]
    if missing:
        raise _bad(
            "scopeNotEnabled",
            f"This deployment does not upgrade the {', '.join(missing)} scope (UPGRADE_SCOPES is {','.join(enabled)}).",
        )


def parse_publish(body: bytes) -> PublishRequest:
    if len(body) > MAX_BODY_BYTES:
        raise RequestError("payloadTooLarge", f"The body is larger than {MAX_BODY_BYTES} bytes.", status=413)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _bad("invalidJson", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _bad("invalidBody", "The body must be a JSON object.")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise _bad("unknownField", f"Unknown field(s): {', '.join(unknown)}. Allowed: {', '.join(FIELDS)}.")

    app_id, external_id = data.get("teamsAppId"), data.get("externalId")
    if (app_id is None) == (external_id is None):
        raise _bad("invalidAppId", "Give exactly one of teamsAppId (catalog id) and externalId (manifest id).")
    if app_id is not None:
        if not isinstance(app_id, str) or not GUID.match(app_id):
            raise _bad("invalidTeamsAppId", "teamsAppId must be a GUID, the app's id in the tenant app catalog.")
        app_id = app_id.lower()
    if external_id is not None:
        if not isinstance(external_id, str) or not external_id.strip() or len(external_id) > 256:
            raise _bad("invalidExternalId", "externalId must be a non-empty string of at most 256 characters.")
        if any(unicodedata.category(ch).startswith("C") for ch in external_id):
            raise _bad("invalidExternalId", "externalId contains a control character.")

    version = data.get("version")
    if version is not None and (not isinstance(version, str) or not VERSION.match(version)):
        raise _bad("invalidVersion", "version must be a version string such as 1.4.0.")

    dry_run = data.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise _bad("invalidDryRun", "dryRun must be true or false.")

    lists = [targets for field, scope, what in ID_LISTS if (targets := _id_list(data, field, scope, what)) is not None]
    explicit = [t for targets in lists for t in targets] if lists else None
    if explicit is not None and len(explicit) > MAX_IDS:
        raise _bad("tooManyIds", f"chatIds, teamIds and userIds hold {len(explicit)} ids together; at most {MAX_IDS}.")
    scopes = _scopes(data, explicit is not None)
    return PublishRequest(
        teams_app_id=app_id,
        external_id=external_id,
        version=version,
        dry_run=dry_run,
        scopes=scopes,
        targets=explicit,
        plan=_plan(data, dry_run),
        group_id=_group(data, explicit is not None),
    )
