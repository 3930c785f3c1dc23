"""Who may call an operator route, and who did.

With `API_AUTH=key` (the default) the Functions host checks the function key, which names no one.
With `API_AUTH=entra` the routes are anonymous to the host and every call must carry an Entra ID
access token for this API with an app role: `Upgrades.Read` to read, `Upgrades.Run` to start,
cancel, retry and resume (and to read what it started).
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared.domain.steering import Caller
from shared.foundation.errors import RequestError
from shared.foundation.settings import ApiAuth
from shared.foundation.tokens import AuthorityUnavailable, InvalidToken, TokenValidator
from shared.http.responses import services_or_error
from shared.services import Services

READ, RUN = "Upgrades.Read", "Upgrades.Run"
GRANTS = {READ: {READ, RUN}, RUN: {RUN}}  # the roles that allow each need
FUNCTION_KEY = Caller(None, "function key")
CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

log = logging.getLogger(f"upgrader.{__name__}")


def operator_auth_level(env=os.environ) -> func.AuthLevel:
    """The host-level check of the operator routes: the function key, unless Entra ID tokens are
    checked in the app. Anything but `entra` keeps the key (a malformed API_AUTH then fails every
    call as a configuration error)."""
    entra = env.get("API_AUTH", "").strip().lower() == "entra"
    return func.AuthLevel.ANONYMOUS if entra else func.AuthLevel.FUNCTION


def signed_in(req: func.HttpRequest, services: Services | None, need: str) -> tuple[Services, Caller]:
    """The process's services and the caller, once the caller is allowed `need`."""
    services = services_or_error(services)
    return services, authorise(req, services.settings.api_auth, services.token_validator, need)


def authorise(req: func.HttpRequest, auth: ApiAuth, validator: TokenValidator | None, need: str) -> Caller:
    """The caller, once allowed `need`; otherwise a 401 (no or bad token) or 403 (no role)."""
    if auth.mode == "key":
        return FUNCTION_KEY
    if validator is None:  # never let a caller through unchecked
        raise RequestError("configurationError", "API_AUTH is entra but no token validator was set up.", status=500)
    scheme, _, token = (req.headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorised("unauthorized", "Send an Entra ID access token for this API: Authorization: Bearer <token>.")
    try:
        claims = validator.claims(token.strip())
    except InvalidToken as exc:
        log.warning("Refused a token: %s", exc)
        raise _unauthorised("invalidToken", str(exc)) from None
    except AuthorityUnavailable as exc:
        log.error("%s", exc)
        raise RequestError("authorityUnavailable", f"{exc} Try again.", status=503) from None
    roles = {r for r in claims.get("roles") or [] if isinstance(r, str)}
    if not roles & GRANTS[need]:
        held = ", ".join(sorted(roles)) or "none"
        raise RequestError("missingRole", f"This call needs the app role {need}; the token has: {held}.", status=403)
    return caller_of(claims)


def caller_of(claims: dict) -> Caller:
    """A person by name, an application (a pipeline's identity) by its client id."""
    name = claims.get("name") or claims.get("preferred_username") or claims.get("upn")
    if not name:
        name = f"app {claims.get('azp') or claims.get('appid') or 'unknown'}"
    return Caller(str(claims.get("oid") or claims.get("sub") or "") or None, str(name))


def _unauthorised(code: str, message: str) -> RequestError:
    error = RequestError(code, message, status=401)
    error.headers = CHALLENGE
    return error
