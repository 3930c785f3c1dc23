"""What the app remembers per Teams app, in the `upgraderwatch` table:

app/<appId>           newest published version seen, and the run started for it
active/<appId>        the run upgrading the app now (one at a time)
subscription/<appId>  the Graph subscription to the app's installations, and the scopes it covers
registry/<appId>      how far the installation registry can be trusted, per scope (seeding scan, invalidations)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.domain.targets import counter
from shared.domain.versions import version_key
from shared.foundation.settings import SCOPES


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SeenVersion:
    version: str
    etag: str
    run_id: str | None
    seen_at: datetime | None


@dataclass(frozen=True)
class Subscription:
    id: str
    expires_at: datetime
    started_at: datetime
    scopes: tuple[str, ...] = ("chat",)
    client_state: str = ""  # a fingerprint of the clientState it was created with (never the secret itself)


@dataclass(frozen=True)
class Seed:
    """The full scan that filled one scope of the registry."""

    run_id: str | None = None
    started_at: datetime | None = None
    invalidated_at: datetime | None = None  # since when the registry may miss installations


@dataclass(frozen=True)
class RegistryState:
    seeds: dict[str, Seed] = field(default_factory=dict)  # scope -> seed
    events: int = 0
    undecodable: int = 0

    def seed(self, scope: str) -> Seed:
        return self.seeds.get(scope, Seed())


@dataclass(frozen=True)
class AppState:
    seen: dict = field(default_factory=dict)  # the app row: version, displayName, seenAt, runId
    subscription: Subscription | None = None
    registry: RegistryState = field(default_factory=RegistryState)


def _subscription(row: dict | None) -> Subscription | None:
    if row is None or not row.get("subscriptionId"):
        return None
    scopes = tuple(s for s in row.get("scopes", "chat").split(",") if s)
    return Subscription(row["subscriptionId"], row["expiresAt"], row["startedAt"], scopes, row.get("clientState", ""))


def _registry(row: dict | None) -> RegistryState:
    row = row or {}
    seeds = {
        scope: Seed(
            row.get(counter(scope, "seedRunId")) or None,
            row.get(counter(scope, "seedStartedAt")),
            row.get(counter(scope, "invalidatedAt")),
        )
        for scope in SCOPES
    }
    return RegistryState(seeds, int(row.get("events", 0)), int(row.get("undecodable", 0)))


class AppStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def _get(self, kind: str, app_id: str) -> dict | None:
        try:
            return self._table.get_entity(kind, app_id)
        except ResourceNotFoundError:
            return None

    def _put(self, entity: dict, etag: str | None, mode: UpdateMode = UpdateMode.MERGE) -> bool:
        """Creates the row (`etag` None) or updates it if unchanged since read; False if someone was first."""
        try:
            if etag is None:
                self._table.create_entity(entity)
            else:
                self._table.update_entity(entity, mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    # ---- versions ---------------------------------------------------------------------------------

    def seen(self, app_id: str) -> SeenVersion | None:
        row = self._get("app", app_id)
        if row is None:
            return None
        return SeenVersion(row["version"], row.metadata["etag"], row.get("runId") or None, row.get("seenAt"))

    def first_sight(self, app_id: str, version: str, name: str) -> bool:
        """Records the version an app has when first seen; False if someone recorded one first."""
        try:
            self._table.create_entity(
                {"PartitionKey": "app", "RowKey": app_id, "version": version, "displayName": name, "seenAt": utcnow()}
            )
        except ResourceExistsError:
            return False
        return True

    def advance(self, app_id: str, version: str, run_id: str, *, etag: str | None = None) -> bool:
        """Moves the seen version forward to `version`, with the run started for it.

        With `etag` only if nobody moved it since that read; without, only if `version` is newer
        than what is recorded. Returns whether this call moved it.
        """
        entity = {"PartitionKey": "app", "RowKey": app_id, "version": version, "runId": run_id, "seenAt": utcnow()}
        if etag is not None:
            return self._put(entity, etag)
        while True:
            current = self.seen(app_id)
            if current is not None and version_key(current.version) >= version_key(version):
                return False
            if self._put(entity, current.etag if current else None):
                return True

    def running_run(self, app_id: str) -> str | None:
        """The run that last became the app's upgrading run (it may be over since)."""
        return (self._get("active", app_id) or {}).get("runId") or None

    def begin_run(self, app_id: str, run_id: str, is_running) -> str | None:
        """Makes `run_id` the app's upgrading run, unless another is still running (`is_running(id)`);
        returns that other run's id. Two runs upgrading the same chats at once could both find a
        chat outdated and both POST."""
        while True:
            row = self._get("active", app_id)
            holder = (row or {}).get("runId")
            if holder and holder != run_id and is_running(holder):
                return holder
            entity = {"PartitionKey": "active", "RowKey": app_id, "runId": run_id, "since": utcnow()}
            if self._put(entity, row.metadata["etag"] if row else None, UpdateMode.REPLACE):
                return None

    def apps(self) -> dict[str, AppState]:
        """Every app something is known about (a seen version, a subscription, a registry), by id, in one query."""
        rows: dict[str, dict[str, dict]] = {}  # app id -> kind -> row
        for row in self._table.query_entities(
            "PartitionKey eq 'app' or PartitionKey eq 'subscription' or PartitionKey eq 'registry'"
        ):
            rows.setdefault(row["RowKey"], {})[row["PartitionKey"]] = row
        return {
            app_id: AppState(kinds.get("app", {}), _subscription(kinds.get("subscription")), _registry(kinds.get("registry")))
            for app_id, kinds in rows.items()
        }

    # ---- subscriptions ----------------------------------------------------------------------------

    def subscription(self, app_id: str) -> Subscription | None:
        return _subscription(self._get("subscription", app_id))

    def set_subscription(self, app_id: str, subscription: Subscription) -> None:
        self._table.upsert_entity(
            {
                "PartitionKey": "subscription",
                "RowKey": app_id,
                "subscriptionId": subscription.id,
                "expiresAt": subscription.expires_at,
                "startedAt": subscription.started_at,
                "scopes": ",".join(subscription.scopes),
                "clientState": subscription.client_state,
            },
            mode=UpdateMode.REPLACE,
        )

    def app_of_subscription(self, subscription_id: str) -> str | None:
        rows = self._table.query_entities(
            "PartitionKey eq 'subscription' and subscriptionId eq @id", parameters={"id": subscription_id}, select=["RowKey"]
        )
        return next((row["RowKey"] for row in rows), None)

    def drop_subscription(self, app_id: str) -> None:
        try:
            self._table.delete_entity("subscription", app_id)
        except ResourceNotFoundError:
            pass

    # ---- registry trust ---------------------------------------------------------------------------

    def registry(self, app_id: str) -> RegistryState:
        return _registry(self._get("registry", app_id))

    def begin_seed(self, app_id: str, run_id: str, scopes: tuple[str, ...]) -> None:
        """A full scan of these scopes starts: once it is through, the registry holds what it found."""
        now = utcnow()
        entity = {"PartitionKey": "registry", "RowKey": app_id}
        for scope in scopes:
            entity |= {counter(scope, "seedRunId"): run_id, counter(scope, "seedStartedAt"): now}
        self._table.upsert_entity(entity, mode=UpdateMode.MERGE)

    def invalidate_registry(self, app_id: str, scopes: tuple[str, ...] = SCOPES, *, undecodable: int = 0) -> None:
        """The registry may have missed installations (an id we could not read, a lost subscription)."""
        now = utcnow()
        self._add_to_registry_row(app_id, "undecodable", undecodable, **{counter(s, "invalidatedAt"): now for s in scopes})

    def count_events(self, app_id: str, events: int) -> None:
        self._add_to_registry_row(app_id, "events", events)

    def _add_to_registry_row(self, app_id: str, name: str, delta: int, **fields) -> None:
        """Adds to a counter of the registry row, exactly, whatever else updates it meanwhile."""
        while True:
            row = self._get("registry", app_id)
            value = int((row or {}).get(name, 0)) + delta
            entity = {"PartitionKey": "registry", "RowKey": app_id, name: value, **fields}
            if self._put(entity, row.metadata["etag"] if row else None):
                return
