"""A tiny function app for testing the local host's semantics."""

import json
import os
import threading
import typing

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
CALLS: list[dict] = []
GATE = threading.Event()  # messages starting with "hold" wait for it
if os.environ.get("SAMPLE_GATE") != "closed":
    GATE.set()
_lock = threading.Lock()
RUNNING = {"now": 0, "max": 0}


@app.route(route="items/{name}", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="work", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[typing.List[str]]) -> func.HttpResponse:  # noqa: UP006
    count = int(req.params.get("count", "1"))
    out.set([f"{req.route_params['name']}-{i}" for i in range(count)])
    return func.HttpResponse(json.dumps({"queued": count}), status_code=202, mimetype="application/json")


@app.route(route="anonymous", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def anonymous(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")


@app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    with _lock:
        RUNNING["now"] += 1
        RUNNING["max"] = max(RUNNING["max"], RUNNING["now"])
    try:
        CALLS.append({"fn": "work", "id": msg.id, "body": body, "dequeue": msg.dequeue_count})
        if body.startswith("hold"):
            GATE.wait(30)
        if body.startswith("fail"):
            raise RuntimeError("asked to fail")
    finally:
        with _lock:
            RUNNING["now"] -= 1


@app.queue_trigger(arg_name="msg", queue_name="work-poison", connection="AzureWebJobsStorage")
def poisoned(msg: func.QueueMessage) -> None:
    CALLS.append({"fn": "poisoned", "body": msg.get_body().decode(), "dequeue": msg.dequeue_count})


@app.queue_trigger(arg_name="msg", queue_name="relay", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="relayed", connection="OutputStorage")
def relay(msg: func.QueueMessage, out: func.Out[typing.List[str]]) -> None:  # noqa: UP006
    CALLS.append({"fn": "relay", "id": msg.id, "dequeue": msg.dequeue_count})
    out.set([msg.get_body().decode()])


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    CALLS.append({"fn": "tick", "past_due": timer.past_due})
