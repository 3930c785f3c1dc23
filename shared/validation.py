"""Validation of POST /api/publish bodies. Every rejection names the field and the rule."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass

from shared.errors import RequestError
from shared.settings import GUID

MAX_BODY_BYTES = 1024 * 1024
MAX_CHAT_IDS = 10_000
MAX_CHAT_ID_LENGTH = 512
FIELDS = ("teamsAppId", "externalId", "version", "chatIds", "dryRun")
VERSION = re.compile(r"^\d{1,9}(\.\d{1,9}){0,3}$")
CHAT_ID = re.compile(r"^19:[^@]+@[^@]+$")
PLAIN_CHAT_ID = re.compile(r"^19:[!-~]+@[!-~]+$")  # printable ASCII: the usual case, checked at C speed
FORBIDDEN_IN_CHAT_ID = set("/?#%\\")


@dataclass(frozen=True, kw_only=True)
class PublishRequest:
    teams_app_id: str | None
    external_id: str | None
    version: str | None
    chat_ids: list[str] | None
    dry_run: bool


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

    chat_ids = data.get("chatIds")
    if chat_ids is not None:
        if not isinstance(chat_ids, list):
            raise _bad("invalidChatIds", "chatIds must be an array of chat ids.")
        if not 1 <= len(chat_ids) <= MAX_CHAT_IDS:
            raise _bad("invalidChatIds", f"chatIds must hold between 1 and {MAX_CHAT_IDS} chat ids; it holds {len(chat_ids)}.")
        chat_ids = list(dict.fromkeys(_check_chat_id(c, i) for i, c in enumerate(chat_ids)))

    return PublishRequest(teams_app_id=app_id, external_id=external_id, version=version, chat_ids=chat_ids, dry_run=dry_run)
