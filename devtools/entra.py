"""A loopback Entra ID authority for the operator API: OpenID configuration, a JWKS endpoint and
RS256 access tokens signed with its own keys, shaped like the tokens Entra ID issues (v1 and v2).

The app validates these exactly as it validates Entra's: it finds the keys through
`{authority}/{tenant}/v2.0/.well-known/openid-configuration`, so tests exercise the real discovery,
key cache, key rotation and claim checks.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devtools.loopback import reply, serve_calls, shutdown

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def new(cls) -> SigningKey:
        return cls(uuid.uuid4().hex, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict:
        public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "kty": "RSA"}


@dataclass
class LocalAuthority:
    """Serves `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/discovery/v2.0/keys`."""

    tenant_id: str = TENANT_ID
    api_client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    keys: list[SigningKey] = field(default_factory=lambda: [SigningKey.new()])
    requests: list[str] = field(default_factory=list)
    _server: object = None

    def start(self) -> LocalAuthority:
        self._server = serve_calls(self._on_request)
        return self

    def stop(self) -> None:
        shutdown(self._server)

    @property
    def url(self) -> str:
        """The value of API_AUTH_AUTHORITY."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def rotate(self) -> SigningKey:
        """Publishes a new signing key (the old one stays published, as Entra does while it rolls)."""
        key = SigningKey.new()
        self.keys.insert(0, key)
        return key

    def token(
        self,
        *,
        roles: tuple[str, ...] = ("Upgrades.Run", "Upgrades.Read"),
        name: str = "Ada Operator",
        object_id: str | None = None,
        version: str = "2.0",
        audience: str | None = None,
        issuer: str | None = None,
        lifetime: int = 3600,
        key: SigningKey | None = None,
        app_only: bool = False,
        **claims,
    ) -> str:
        """A signed access token for the API; every claim can be bent to test its check."""
        now = int(time.time())
        v2 = version == "2.0"
        body = {
            "aud": audience or (self.api_client_id if v2 else f"api://{self.api_client_id}"),
            "iss": issuer or (f"{self.url}/{self.tenant_id}/v2.0" if v2 else f"https://sts.windows.net/{self.tenant_id}/"),
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "ver": version,
            "tid": self.tenant_id,
            "oid": object_id or str(uuid.uuid4()),
            "roles": list(roles),
            ("azp" if v2 else "appid"): str(uuid.uuid4()),
        }
        if not app_only:
            body |= {"name": name, ("preferred_username" if v2 else "upn"): "ada@contoso.example"}
        body |= claims
        signer = key or self.keys[0]
        return jwt.encode(body, signer.private, algorithm="RS256", headers={"kid": signer.kid})

    def _on_request(self, handler: BaseHTTPRequestHandler, _body: bytes) -> None:
        self.requests.append(handler.path)
        if handler.path == f"/{self.tenant_id}/v2.0/.well-known/openid-configuration":
            document = {
                "issuer": f"{self.url}/{self.tenant_id}/v2.0",
                "jwks_uri": f"{self.url}/{self.tenant_id}/discovery/v2.0/keys",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
            return reply(handler, 200, json.dumps(document).encode(), {"Content-Type": "application/json"})
        if handler.path == f"/{self.tenant_id}/discovery/v2.0/keys":
            keys = {"keys": [k.jwk() for k in self.keys]}
            return reply(handler, 200, json.dumps(keys).encode(), {"Content-Type": "application/json"})
        body = {"error": "invalid_request", "error_description": f"AADSTS90002: no such endpoint {handler.path}"}
        reply(handler, 404, json.dumps(body).encode(), {"Content-Type": "application/json"})
