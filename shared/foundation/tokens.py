"""Validates Entra ID access tokens for the operator API, in the app: the signature against the
tenant's published keys, issuer, audience, tenant and lifetime.

The keys come from the authority's OpenID configuration (its `jwks_uri`) and are cached; a token
signed with a key id not in the cache refreshes them (Entra rolls its keys), at most
`MAX_REFRESHES` times a minute so that tokens naming made-up key ids cannot make us hammer the
authority.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import jwt
import requests

from shared.foundation.settings import ApiAuth

CLOCK_SKEW = 300  # seconds of leeway on exp/nbf, as Microsoft's own validators allow
MAX_REFRESHES = 10  # key refreshes in any minute
TIMEOUT = 10


class InvalidToken(Exception):
    """The token is not one this API accepts; the message says why (never the token)."""


class AuthorityUnavailable(Exception):
    """The signing keys could not be read from the authority."""


class TokenValidator:
    def __init__(self, auth: ApiAuth, *, session: requests.Session | None = None) -> None:
        self._auth = auth
        self._session = session or requests.Session()
        self._keys: dict[str, object] = {}
        self._jwks_uri: str | None = None
        self._refreshes: deque[float] = deque()
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict:
        """The token's claims once it is proven to be an access token for this API."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise InvalidToken("The bearer token is not a JWT.") from None
        if header.get("alg") != "RS256":
            raise InvalidToken("The token must be signed with RS256.")
        version = str(unverified.get("ver") or "1.0")
        issuer = self._auth.issuers.get(version)
        if issuer is None:
            raise InvalidToken(f"Unknown token version {version!r}.")
        key = self._key(str(header.get("kid") or ""))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=list(self._auth.audiences),
                issuer=issuer,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken(f"The token is not for this API (audience must be {self._auth.client_id}).") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(f"The token was not issued by tenant {self._auth.tenant_id}.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("The token's signature does not verify.") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The token is not valid: {exc}.") from None
        if str(claims.get("tid", "")).lower() != self._auth.tenant_id:
            raise InvalidToken(f"The token was not issued by tenant {self._auth.tenant_id}.")
        return claims

    def _key(self, kid: str):
        with self._lock:
            if kid not in self._keys and self._may_refresh():
                self._keys = self._fetch_keys()
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("The token is signed with a key the tenant does not publish.")
        return key

    def _may_refresh(self) -> bool:
        now = time.monotonic()
        while self._refreshes and now - self._refreshes[0] > 60:
            self._refreshes.popleft()
        if len(self._refreshes) >= MAX_REFRESHES:
            return False
        self._refreshes.append(now)
        return True

    def _fetch_keys(self) -> dict[str, object]:
        try:
            if self._jwks_uri is None:
                self._jwks_uri = self._get(self._auth.metadata_url)["jwks_uri"]
            published = self._get(self._jwks_uri).get("keys", [])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            raise AuthorityUnavailable(f"The signing keys of {self._auth.authority} could not be read.") from None
        keys = {}
        for jwk in published:
            if jwk.get("kty") == "RSA" and jwk.get("kid") and jwk.get("use", "sig") == "sig":
                try:
                    keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
                except jwt.PyJWTError:
                    continue  # a key we cannot use signs no token we accept
        return keys

    def _get(self, url: str) -> dict:
        response = self._session.get(url, timeout=TIMEOUT)
        response.raise_for_status()
        return response.json()
