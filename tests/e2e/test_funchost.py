"""The local host follows the Functions host's rules: bindings, encoding, retries, poison, concurrency, timers."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from azure.storage.queue import QueueServiceClient

from devtools.funchost import LocalHost, worker_env
from tests.support import NEVER, unreachable_storage, wait_for

SAMPLE = Path(__file__).parent / "hostapp" / "sample_app.py"
HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "http": {"routePrefix": "api"},
        "queues": {
            "batchSize": 4,
            "newBatchThreshold": 2,
            "maxDequeueCount": 3,
            "visibilityTimeout": "00:00:01",
            "maxPollingInterval": "00:00:00.200",
        },
    },
}


@pytest.fixture
def sample(tmp_path, monkeypatch, azurite):
    """Starts the sample app under the local host with a given host.json; yields (host, module, queues)."""
    started: list[LocalHost] = []
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("OutputStorage", azurite.connection_string)
    monkeypatch.setenv("TICK_SCHEDULE", NEVER)  # unless a test says otherwise
    azurite.clear()

    def start(
        encoding: str = "base64", function_key: str | None = None, *, polling: str | None = None, workers: int = 0
    ) -> tuple[LocalHost, object, QueueServiceClient]:
        config = json.loads(json.dumps(HOST_JSON))
        config["extensions"]["queues"]["messageEncoding"] = encoding
        if polling:
            config["extensions"]["queues"]["maxPollingInterval"] = polling
        (tmp_path / "host.json").write_text(json.dumps(config))
        shutil.copy(SAMPLE, tmp_path / "sample_app.py")
        host = LocalHost(tmp_path / "sample_app.py", http_port=0, function_key=function_key, queue_workers=workers).start()
        started.append(host)
        return host, sys.modules["sample_app"], QueueServiceClient.from_connection_string(azurite.connection_string)

    yield start
    for host in started:
        host.stop()


def test_http_output_binding_writes_base64_messages_that_the_trigger_reads(sample):
    host, module, queues = sample()
    response = requests.post(f"{host.base_url}/api/items/apple?count=3", timeout=30)
    assert response.status_code == 202 and response.json() == {"queued": 3}
    assert response.headers["Content-Type"] == "application/json"
    done = wait_for(lambda: sorted(c["body"] for c in module.CALLS if c["fn"] == "work") if len(module.CALLS) >= 3 else None)
    assert done == ["apple-0", "apple-1", "apple-2"]
    wait_for(lambda: queues.get_queue_client("work").get_queue_properties().approximate_message_count == 0)


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-process"])
def test_a_message_written_by_an_output_binding_is_taken_at_once_not_at_the_next_poll(sample, workers):
    host, _module, queues = sample(polling="00:00:20", workers=workers)
    work = queues.get_queue_client("work")
    # precondition, not synchronisation: an idle listener polls after 0.1, 0.2, 0.4 ... 3.2 s, so by
    # now its next poll is at least 3 s away
    time.sleep(3.5)
    began = time.monotonic()
    assert requests.post(f"{host.base_url}/api/items/quick", timeout=30).status_code == 202
    wait_for(lambda: work.get_queue_properties().approximate_message_count == 0, timeout=20)
    assert time.monotonic() - began < 1.5  # the shared queue watcher woke the listener


def test_failing_message_is_retried_after_the_visibility_timeout_then_poisoned(sample):
    _host, module, queues = sample()
    queues.get_queue_client("work").send_message("ZmFpbC1vbmNl")  # base64 of "fail-once"
    poisoned = wait_for(lambda: [c for c in module.CALLS if c["fn"] == "poisoned"])
    attempts = [c for c in module.CALLS if c["fn"] == "work"]
    assert [a["dequeue"] for a in attempts] == [1, 2, 3]  # maxDequeueCount
    assert len({a["id"] for a in attempts}) == 1
    assert poisoned[0]["body"] == "fail-once"
    assert not list(queues.get_queue_client("work").peek_messages())


def test_a_queue_output_is_written_to_the_connection_it_names(sample):
    _host, module, queues = sample()
    queues.create_queue("relayed")  # so that it can be watched before the output creates it
    queues.get_queue_client("relay").send_message("cmVsYXk=")  # base64 of "relay"

    relayed = wait_for(lambda: list(queues.get_queue_client("relayed").peek_messages()))
    assert [base64.b64decode(m.content).decode() for m in relayed] == ["relay"]
    assert [c["dequeue"] for c in module.CALLS if c["fn"] == "relay"] == [1]


def test_a_queue_output_that_cannot_be_written_fails_the_invocation_so_the_message_is_retried(sample, monkeypatch, caplog):
    monkeypatch.setenv("OutputStorage", unreachable_storage())
    _host, module, queues = sample()
    queues.get_queue_client("relay").send_message("cmVsYXk=")  # base64 of "relay"

    wait_for(lambda: list(queues.get_queue_client("relay-poison").peek_messages()), timeout=60)
    attempts = [c for c in module.CALLS if c["fn"] == "relay"]
    assert [a["dequeue"] for a in attempts] == [1, 2, 3]  # each attempt ran, then failed on its output
    assert len({a["id"] for a in attempts}) == 1
    assert not list(queues.get_queue_client("relay").peek_messages())
    assert "output bindings could not be written" in caplog.text


def test_a_message_that_is_not_base64_ends_in_the_poison_queue(sample):
    _host, module, queues = sample()
    queues.get_queue_client("work").send_message("plain text, not base64!")
    wait_for(lambda: list(queues.get_queue_client("work-poison").peek_messages()), timeout=20)
    assert not [c for c in module.CALLS if c["fn"] == "work"]


def test_message_encoding_none_reads_plain_text(sample):
    _host, module, queues = sample(encoding="none")
    queues.get_queue_client("work").send_message("plain text")
    wait_for(lambda: [c for c in module.CALLS if c["fn"] == "work"])
    assert module.CALLS[0]["body"] == "plain text"


def test_concurrency_is_bounded_by_batch_size_and_new_batch_threshold(sample, azurite, monkeypatch):
    # the messages wait in the queue before the host starts, so its first poll takes a full batch
    # (written one by one by an output binding, which wakes the listener, they would come one by one)
    monkeypatch.setenv("SAMPLE_GATE", "closed")
    work = QueueServiceClient.from_connection_string(azurite.connection_string).get_queue_client("work")
    work.create_queue()
    for i in range(12):
        work.send_message(base64.b64encode(f"hold{i}".encode()).decode())
    _host, module, _queues = sample()
    try:
        wait_for(lambda: module.RUNNING["now"] >= 4)
        time.sleep(0.5)  # give the host the chance to over-fetch, which it must not take
        assert 4 <= module.RUNNING["max"] <= 4 + 2
    finally:
        module.GATE.set()
    wait_for(lambda: len([c for c in module.CALLS if c["fn"] == "work"]) == 12)


def test_function_key_is_enforced_when_configured(sample):
    host, _module, _queues = sample(function_key="s3cret")
    assert requests.post(f"{host.base_url}/api/items/x", timeout=30).status_code == 401
    assert requests.post(f"{host.base_url}/api/items/x?code=wrong", timeout=30).status_code == 401
    assert requests.post(f"{host.base_url}/api/items/x?code=s3cret", timeout=30).status_code == 202
    assert requests.post(f"{host.base_url}/api/items/x", headers={"x-functions-key": "s3cret"}, timeout=30).status_code == 202
    assert requests.get(f"{host.base_url}/api/anonymous", timeout=30).text == "hello"
    assert requests.get(f"{host.base_url}/api/nothing-here", timeout=30).status_code == 404
    assert requests.get(f"{host.base_url}/api/items/x", params={"code": "s3cret"}, timeout=30).status_code == 404  # POST only


def test_timer_fires_on_its_ncrontab_schedule(sample, monkeypatch):
    monkeypatch.setenv("TICK_SCHEDULE", "* * * * * *")  # every second
    _host, module, _queues = sample()
    ticks = wait_for(lambda: [c for c in module.CALLS if c["fn"] == "tick"][:2] if len(module.CALLS) >= 2 else None, timeout=10)
    assert all(t["past_due"] is False for t in ticks)


def _clocks_of_a_worker_process(clock_shift: float) -> tuple[float, float, float]:
    """time.time(), time.time_ns() and time.monotonic() as a worker process with this environment reads them."""
    script = "import time; print(time.time(), time.time_ns() / 1e9, time.monotonic())"
    out = subprocess.run([sys.executable, "-c", script], env=worker_env(clock_shift), capture_output=True, text=True, check=True)
    wall, wall_ns, monotonic = (float(x) for x in out.stdout.split())
    return wall, wall_ns, monotonic


def test_a_worker_can_run_with_its_wall_clock_shifted_and_its_monotonic_clock_untouched():
    for shift in (0.75, -0.75, 0.0):
        before, before_monotonic = time.time(), time.monotonic()
        wall, wall_ns, monotonic = _clocks_of_a_worker_process(shift)
        after, after_monotonic = time.time(), time.monotonic()
        assert before + shift <= wall <= after + shift, shift
        assert abs(wall_ns - wall) < 0.05, shift
        assert before_monotonic <= monotonic <= after_monotonic, shift  # one monotonic clock for the whole machine
