"""The storage simulation's counting proxy: it counts what goes through it, and sends a queue named
to it to another emulator (the simulation keeps the queue of batches apart from the others)."""

from __future__ import annotations

from azure.storage.queue import QueueServiceClient

from bench.storage_meter import StorageMeter
from devtools.azurite import Azurite


def test_a_named_queue_goes_to_its_own_emulator_and_every_message_is_counted(azurite):
    with Azurite() as other:
        meter = StorageMeter(azurite.queue_url, azurite.table_url, queue_urls={"batches": other.queue_url})
        try:
            through_meter = QueueServiceClient.from_connection_string(meter.connection_string)
            for name in ("batches", "control"):
                queue = through_meter.get_queue_client(name)
                queue.create_queue()
                queue.send_message(f"to {name}")

            def held(emulator: Azurite, name: str) -> list[str]:
                service = QueueServiceClient.from_connection_string(emulator.connection_string)
                if name not in [q.name for q in service.list_queues()]:
                    return []
                return [m.content for m in service.get_queue_client(name).peek_messages(max_messages=32)]

            assert held(other, "batches") == ["to batches"] and held(other, "control") == []
            assert held(azurite, "control") == ["to control"] and held(azurite, "batches") == []
            assert meter.usage.operations["queueSend"] == 2
            assert [queue for _, queue in meter.usage.messages_sent] == ["batches", "control"]
        finally:
            meter.close()
            through_meter.get_queue_client("control").delete_queue()
