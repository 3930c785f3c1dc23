"""App settings, read once per process from the environment (Function App settings)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

SCOPES = ("chat", "team", "personal")  # where an app can be installed: chats, teams, users' personal scope
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
STORAGE_CONNECTION = "AzureWebJobsStorage"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting."""


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    """Either a connection string, or identity-based service URIs (`AzureWebJobsStorage__*`)."""

    connection_string: str | None = None
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    credential: str | None = None  # "managedidentity" or unset (default credential chain)
    client_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str = STORAGE_CONNECTION) -> StorageSettings:
        connection_string = env.get(name, "").strip()
        if connection_string:
            return cls(connection_string=connection_string)
        prefix = f"{name}__"
        values = {k[len(prefix) :].lower(): v.strip() for k, v in env.items() if k.startswith(prefix) and v.strip()}
        account = values.get("accountname")
        queue_uri = values.get("queueserviceuri") or (account and f"https://{account}.queue.core.windows.net")
        table_uri = values.get("tableserviceuri") or (account and f"https://{account}.table.core.windows.net")
        if not queue_uri or not table_uri:
            raise ConfigError(
                f"Storage is not configured: set {name} to a connection string, or {name}__queueServiceUri and "
                f"{name}__tableServiceUri (or {name}__accountName) for an identity-based connection."
            )
        return cls(
            queue_service_uri=queue_uri.rstrip("/"),
            table_service_uri=table_uri.rstrip("/"),
            credential=values.get("credential"),
            client_id=values.get("clientid"),
        )


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _guids(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    values = [v for v in re.split(r"[,;\s]+", env.get(name, "")) if v]
    bad = [v for v in values if not GUID.match(v)]
    if bad:
        raise ConfigError(f"{name} must list app ids (GUIDs) separated by commas; not a GUID: {bad[0]!r}")
    return tuple(dict.fromkeys(v.lower() for v in values))


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _notification_url(env: Mapping[str, str]) -> str | None:
    """NOTIFICATION_URL as given, or built from NOTIFICATION_FUNCTION_KEY on Azure (WEBSITE_HOSTNAME)."""
    raw = env.get("NOTIFICATION_URL", "").strip()
    if raw:
        if not re.match(r"^https?://[^/\s]+/\S*$", raw):
            raise ConfigError("NOTIFICATION_URL must be an absolute http(s) URL")  # never echo it: it holds a key
        return raw
    key, host = env.get("NOTIFICATION_FUNCTION_KEY", "").strip(), env.get("WEBSITE_HOSTNAME", "").strip()
    if key and host:
        return f"https://{host}/api/notifications?code={quote(key, safe='')}"
    return None


def _client_state(env: Mapping[str, str], notifications: bool) -> str | None:
    raw = env.get("NOTIFICATION_CLIENT_STATE", "").strip()
    if len(raw) > 255:
        raise ConfigError("NOTIFICATION_CLIENT_STATE must be at most 255 characters")
    if notifications and len(raw) < 16:
        raise ConfigError("NOTIFICATION_CLIENT_STATE must be a secret of at least 16 characters when notifications are on")
    return raw or None


def _targets_per_message(env: Mapping[str, str]) -> int:
    value = int(_float(env, "UPGRADE_TARGETS_PER_MESSAGE", 20, minimum=1))
    if value > 50:  # a batch is claimed in one table transaction (100 operations) and fits a queue message
        raise ConfigError(f"UPGRADE_TARGETS_PER_MESSAGE must be at most 50, got {value}")
    return value


def _scopes(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("UPGRADE_SCOPES", "").strip() or "chat"
    given = [v.strip().lower() for v in raw.split(",")]
    bad = [v for v in given if v not in SCOPES]
    if bad:
        raise ConfigError(f"UPGRADE_SCOPES must list scopes from {', '.join(SCOPES)} separated by commas; got {raw!r}")
    return tuple(s for s in SCOPES if s in given)


def _guid(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if raw and not GUID.match(raw):
        raise ConfigError(f"{name} must be a GUID, got {raw!r}")
    return raw.lower() or None


# the settings this app reads; none may be an unresolved Key Vault reference
OWN_SETTINGS = frozenset(
    {
        "API_AUTH", "API_AUTH_AUTHORITY", "API_AUTH_CLIENT_ID", "API_AUTH_TENANT_ID", "AZURE_CLIENT_ID",
        "DISCOVERY_GROUP_ID", "DISCOVERY_MODE", "DISCOVERY_USERS_PER_STEP", "GRAPH_BASE_URL",
        "GRAPH_INLINE_RETRY_SECONDS", "GRAPH_MAX_RPS", "NOTIFICATION_CLIENT_STATE", "NOTIFICATION_FUNCTION_KEY",
        "NOTIFICATION_URL", "UPGRADE_MAX_ATTEMPTS", "UPGRADE_SCOPES", "UPGRADE_TARGETS_PER_MESSAGE",
        "WATCHED_APP_IDS", "WATCH_ORG_APPS",
        "ROLLOUT", "CATALOG_WAIT", "RUN_RETENTION", "PAUSED_ALERT_AFTER",
    }
)  # fmt: skip
API_AUTH_MODES = ("key", "entra")
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
KEY_VAULT_REFERENCE = "@microsoft.keyvault("


@dataclass(frozen=True, kw_only=True)
class ApiAuth:
    """How the operator routes authenticate callers: function keys, or Entra ID access tokens."""

    mode: str = "key"
    tenant_id: str | None = None
    client_id: str | None = None  # the API's app registration: a token's audience
    authority: str = DEFAULT_AUTHORITY

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiAuth:
        mode = _choice(env, "API_AUTH", API_AUTH_MODES, "key")
        if mode == "key":
            return cls()
        authority = env.get("API_AUTH_AUTHORITY", "").strip() or DEFAULT_AUTHORITY
        if not re.match(r"^https?://[^/\s]+/?$", authority):
            raise ConfigError(f"API_AUTH_AUTHORITY must be an http(s) URL with no path, got {authority!r}")
        tenant_id, client_id = _guid(env, "API_AUTH_TENANT_ID"), _guid(env, "API_AUTH_CLIENT_ID")
        for name, value in (("API_AUTH_TENANT_ID", tenant_id), ("API_AUTH_CLIENT_ID", client_id)):
            if value is None:
                raise ConfigError(f"{name} must be set (a GUID) when API_AUTH is entra")
        return cls(mode=mode, tenant_id=tenant_id, client_id=client_id, authority=authority.rstrip("/"))

    @property
    def issuers(self) -> dict[str, str]:
        """The issuer a token of each version must carry."""
        return {"2.0": f"{self.authority}/{self.tenant_id}/v2.0", "1.0": f"https://sts.windows.net/{self.tenant_id}/"}

    @property
    def audiences(self) -> tuple[str, ...]:
        return (self.client_id, f"api://{self.client_id}")

    @property
    def metadata_url(self) -> str:
        return f"{self.authority}/{self.tenant_id}/v2.0/.well-known/openid-configuration"


def _no_unresolved_references(env: Mapping[str, str]) -> None:
    """App Service hands an app the literal `@Microsoft.KeyVault(...)` when it cannot resolve a
    reference (the identity's role not granted yet, a wrong secret URI): such a value must never be
    used as a secret."""
    for name in sorted(env):
        if name in OWN_SETTINGS and env[name].strip().lower().startswith(KEY_VAULT_REFERENCE):
            raise ConfigError(
                f"{name} is an unresolved Key Vault reference: the app's identity cannot read the secret "
                "(it needs the Key Vault Secrets User role on the vault, and the reference a valid secret URI); "
                "restart the app once the role is granted"
            )


@dataclass(frozen=True, kw_only=True)
class Settings:
    storage: StorageSettings = field(default_factory=StorageSettings)
    graph_base_url: str = DEFAULT_GRAPH_BASE_URL
    azure_client_id: str | None = None
    discovery_group_id: str | None = None
    graph_max_rps: float = 25.0
    upgrade_scopes: tuple[str, ...] = ("chat",)  # the scopes whose Graph permissions the deployment granted
    # Advanced tuning; the defaults suit Graph's documented limits.
    targets_per_message: int = 20
    users_per_step: int = 10
    inline_retry_seconds: float = 5.0
    max_attempts: int = 8
    # Automatic runs (catalog watcher, installation registry)
    watched_app_ids: tuple[str, ...] = ()
    watch_org_apps: bool = False
    discovery_mode: str = "auto"  # scan | registry | auto
    notification_url: str | None = field(default=None, repr=False)  # holds a function key
    notification_client_state: str | None = field(default=None, repr=False)
    api_auth: ApiAuth = field(default_factory=ApiAuth)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        _no_unresolved_references(env)
        base_url = env.get("GRAPH_BASE_URL", "").strip() or DEFAULT_GRAPH_BASE_URL
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise ConfigError(f"GRAPH_BASE_URL must be an http(s) URL, got {base_url!r}")
        notification_url = _notification_url(env)
        return cls(
            storage=StorageSettings.from_env(env),
            graph_base_url=base_url.rstrip("/"),
            azure_client_id=env.get("AZURE_CLIENT_ID", "").strip() or None,
            discovery_group_id=_guid(env, "DISCOVERY_GROUP_ID"),
            graph_max_rps=_float(env, "GRAPH_MAX_RPS", 25.0, minimum=0.1),
            upgrade_scopes=_scopes(env),
            targets_per_message=_targets_per_message(env),
            users_per_step=int(_float(env, "DISCOVERY_USERS_PER_STEP", 10, minimum=1)),
            inline_retry_seconds=_float(env, "GRAPH_INLINE_RETRY_SECONDS", 5.0, minimum=0),
            max_attempts=int(_float(env, "UPGRADE_MAX_ATTEMPTS", 8, minimum=1)),
            watched_app_ids=_guids(env, "WATCHED_APP_IDS"),
            watch_org_apps=_bool(env, "WATCH_ORG_APPS"),
            discovery_mode=_choice(env, "DISCOVERY_MODE", ("scan", "registry", "auto"), "auto"),
            notification_url=notification_url,
            notification_client_state=_client_state(env, notification_url is not None),
            api_auth=ApiAuth.from_env(env),
        )

    @property
    def watching(self) -> bool:
        return bool(self.watched_app_ids) or self.watch_org_apps
