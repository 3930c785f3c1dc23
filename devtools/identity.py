"""A loopback App Service managed-identity endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER).

azure-identity's ManagedIdentityCredential talks to it exactly as it does on Azure. Tokens are
JWTs signed with a key shared with the Graph emulator, and carry the app roles granted here, so the
emulator can check both the bearer token and the permissions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from devtools.loopback import reply, serve_calls, shutdown

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
# what scripts/grant-graph-permissions grants for every scope and a discovery group (the least privileged)
DEFAULT_ROLES = (
    "TeamsAppInstallation.ReadWriteForChat.All",
    "Chat.ReadBasic.All",
    "User.Read.All",
    "GroupMember.ReadBasic.All",
    "AppCatalog.Read.All",
    "TeamsAppInstallation.ReadWriteForTeam.All",
    "TeamsAppInstallation.ReadWriteForUser.All",
    "Team.ReadBasic.All",
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Issues and verifies the loopback tokens."""

    def __init__(self, *, roles=DEFAULT_ROLES, lifetime: int = 3600) -> None:
        self.key = secrets.token_bytes(32)
        self.roles = list(roles)
        self.lifetime = lifetime
        self.client_id = str(uuid.uuid4())
        self.principal_id = str(uuid.uuid4())

    def issue(self, resource: str, client_id: str | None = None, roles: list[str] | None = None) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{TENANT_ID}/",
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.lifetime,
            "tid": TENANT_ID,
            "oid": self.principal_id,
            "appid": client_id or self.client_id,
            "roles": list(self.roles if roles is None else roles),
        }
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims).encode())
        signature = _b64(hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{signature}", claims["exp"]

    def verify(self, token: str, audience: str) -> dict | None:
        """The token's claims if it is ours, unexpired and for `audience`; else None."""
        try:
            head, body, signature = token.split(".")
            expected = _b64(hmac.new(self.key, f"{head}.{body}".encode(), hashlib.sha256).digest())
            if not hmac.compare_digest(signature, expected):
                return None
            claims = json.loads(_unb64(body))
        except (ValueError, json.JSONDecodeError):
            return None
        if claims.get("aud") != audience or claims.get("exp", 0) < time.time():
            return None
        return claims


class IdentityEndpoint:
    def __init__(self, authority: TokenAuthority | None = None, *, user_assigned_client_ids=()) -> None:
        self.authority = authority or TokenAuthority()
        self.header_secret = secrets.token_hex(16)
        self.user_assigned = set(user_assigned_client_ids)
        self.requests: list[dict] = []
        # resource -> a function minting its token, for resources another authority signs (the operator API)
        self.issuers: dict[str, Callable[[], str]] = {}
        self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/msi/token"

    def env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.header_secret}

    def start(self, port: int = 0) -> IdentityEndpoint:
        self._server = serve_calls(self._handle, port)
        return self

    def _handle(self, handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        def send(status: int, body: dict) -> None:
            reply(handler, status, json.dumps(body).encode(), {"Content-Type": "application/json"})

        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append(query)
        if handler.command != "GET" or url.path != "/msi/token":
            return send(404, {"statusCode": 404, "message": "Not found"})
        if not hmac.compare_digest(handler.headers.get("X-IDENTITY-HEADER", ""), self.header_secret):
            return send(401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER is missing or wrong."})
        resource = query.get("resource")
        if not resource or query.get("api-version") != "2019-08-01":
            return send(400, {"statusCode": 400, "message": "resource and api-version=2019-08-01 are required."})
        client_id = query.get("client_id")
        if client_id and client_id not in self.user_assigned:
            return send(400, {"statusCode": 400, "message": f"No user-assigned identity with client id {client_id}."})
        if resource in self.issuers:
            token, expires = self.issuers[resource](), int(time.time()) + 3600
        else:
            token, expires = self.authority.issue(resource, client_id)
        send(
            200,
            {
                "access_token": token,
                "expires_on": str(expires),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id or self.authority.client_id,
            },
        )

    def stop(self) -> None:
        shutdown(self._server)
        self._server = None
