"""The upgrader's HTTP API, as the CLI calls it."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import requests

RENEW_BEFORE = 300  # seconds before expiry a cached token is renewed


class CliError(Exception):
    """One line for the user; exit code 2."""


class EntraTokens:
    """Access tokens for the API (scope `api://<client id>/.default`) from the caller's own sign-in:
    `az login`, a pipeline's federated identity, environment credentials or a managed identity."""

    def __init__(self, api_client_id: str) -> None:
        self.scope = f"api://{api_client_id}/.default"
        self._token = None

    def __call__(self) -> str:
        if self._token is None or self._token.expires_on - RENEW_BEFORE < time.time():
            from azure.core.exceptions import ClientAuthenticationError
            from azure.identity import DefaultAzureCredential

            try:
                self._token = DefaultAzureCredential(exclude_interactive_browser_credential=True).get_token(self.scope)
            except ClientAuthenticationError:
                raise CliError(f"no Entra ID token for {self.scope}: sign in with az login (or set up a credential)") from None
        return self._token.token


class Client:
    def __init__(self, url: str, key: str | None, *, tokens: EntraTokens | None = None, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"--url must be an http(s) URL such as https://myapp.azurewebsites.net, got {url!r}")
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if key:
            self.session.headers["x-functions-key"] = key
        self.tokens = tokens
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs) -> dict:
        target = f"{self.url}{path}"
        if self.tokens is not None:  # never printed: it goes in the header only
            kwargs["headers"] = {"Authorization": f"Bearer {self.tokens()}"}
        try:
            response = self.session.request(method, target, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise CliError(f"cannot reach {self.url}: is the URL right and the app running?") from None
        except requests.Timeout:
            raise CliError(f"{self.url} did not answer within {self.timeout:.0f} s") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code in (401, 403) and self.tokens is None:
            raise CliError(f"the function key was rejected ({response.status_code}): pass --key or set UPGRADER_FUNCTION_KEY")
        if response.status_code >= 400:
            error = (body or {}).get("error") if isinstance(body, dict) else None
            if isinstance(error, dict):
                raise CliError(f"{error.get('code')}: {error.get('message')}")
            if response.status_code == 404:
                raise CliError(f"no upgrader API at {self.url} (404 for {path})")
            raise CliError(f"{method} {path} answered {response.status_code}")
        if not isinstance(body, dict):
            raise CliError(f"{method} {path} did not answer with JSON: is {self.url} the upgrader?")
        return body

    def publish(self, body: dict) -> dict:
        return self._call("POST", "/api/publish", json=body)

    def status(self, run_id: str) -> dict:
        return self._call("GET", f"/api/runs/{run_id}")

    def runs(self, params: dict) -> dict:
        return self._call("GET", "/api/runs", params={k: v for k, v in params.items() if v is not None})

    def page(self, next_link: str) -> dict:
        if not next_link.startswith(self.url + "/"):
            raise CliError(f"the API gave a nextLink outside {self.url}")
        return self._call("GET", next_link[len(self.url) :])

    def act(self, run_id: str, action: str) -> dict:
        """POST /api/runs/{runId}/cancel, /resume or /retry."""
        return self._call("POST", f"/api/runs/{run_id}/{action}")
