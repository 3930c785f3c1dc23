"""Queue and table clients for the app's storage account, from `AzureWebJobsStorage` settings."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.foundation.connections import storage_transport
from shared.foundation.settings import StorageSettings
from shared.foundation.shared_clock import SharedClock

CONTROL_QUEUE = "upgrader-control"
TARGETS_QUEUE = "upgrader-targets"
NOTIFICATIONS_QUEUE = "upgrader-notifications"
POISON_SUFFIX = "-poison"
RUNS_TABLE = "upgraderruns"
PACING_TABLE = "upgraderpacing"
WATCH_TABLE = "upgraderwatch"
REGISTRY_TABLE = "upgraderregistry"
PARTITION_READERS = 8  # partitions of one table read at once (a run's counters, a large registry)
log = logging.getLogger(f"upgrader.{__name__}")


def storage_credential(settings: StorageSettings):
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if (settings.credential or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=settings.client_id) if settings.client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=settings.client_id)


def queue_service_client(settings: StorageSettings, *, credential=None, **options) -> QueueServiceClient:
    """The queue service of a storage connection: its connection string, or its URI and identity;
    over a pool of connections sized for a worker's concurrency unless `transport` is given."""
    options.setdefault("transport", storage_transport())
    if settings.connection_string:
        return QueueServiceClient.from_connection_string(settings.connection_string, **options)
    return QueueServiceClient(settings.queue_service_uri, credential=credential or storage_credential(settings), **options)


class Storage:
    """Creates queues and tables on first use; clients are cached and thread-safe. `readers` reads
    several partitions of a table at once. `clock` is the service's time, as every response tells it."""

    def __init__(self, settings: StorageSettings, *, credential=None, clock: SharedClock | None = None) -> None:
        self._settings = settings
        self.readers = ThreadPoolExecutor(PARTITION_READERS, thread_name_prefix="partition-reader")
        self.clock = clock or SharedClock()
        self._lock = threading.Lock()
        self._queues: dict[str, QueueClient] = {}
        self._tables: dict[str, TableClient] = {}
        # one pool of connections for the account's tables and queues, each response timing the clock
        transport = storage_transport(self.clock.observe)
        if settings.connection_string:
            self._table_service = TableServiceClient.from_connection_string(settings.connection_string, transport=transport)
        else:
            credential = credential or storage_credential(settings)
            self._table_service = TableServiceClient(settings.table_service_uri, credential=credential, transport=transport)
        self._queue_service = queue_service_client(settings, credential=credential, transport=transport)

    def queue(self, name: str) -> QueueClient:
        """A client that base64-encodes, as the Functions queue trigger expects by default."""
        with self._lock:
            client = self._queues.get(name)
            if client is None:
                client = self._queue_service.get_queue_client(
                    name,
                    message_encode_policy=TextBase64EncodePolicy(),
                    message_decode_policy=TextBase64DecodePolicy(),
                )
                try:
                    client.create_queue()
                except ResourceExistsError:
                    pass
                self._queues[name] = client
            return client

    def table(self, name: str) -> TableClient:
        with self._lock:
            client = self._tables.get(name)
            if client is None:
                self._table_service.create_table_if_not_exists(name)
                client = self._table_service.get_table_client(name)
                self._tables[name] = client
            return client

    def time_clock(self) -> None:
        """One write, whose answer times the service's clock to within its round trip (a written entity's
        ETag is the time of the write): so the first request a process paces is on that clock already,
        not on its own until the Date headers have ticked over. Without it, the clock is timed by the
        requests that follow."""
        try:
            self.table(PACING_TABLE).upsert_entity({"PartitionKey": "clock", "RowKey": "timing"})
        except AzureError as exc:
            log.warning("Could not time the storage service's clock: %s", exc)
