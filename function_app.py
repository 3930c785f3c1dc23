"""Azure Functions entry point: triggers and bindings only; the work happens in `shared`."""

import typing

import azure.functions as func

from shared import api, notifications, worker
from shared.storage import CHATS_QUEUE, CONTROL_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX

STORAGE = "AzureWebJobsStorage"
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="publish", methods=["POST"])
@app.queue_output(arg_name="control", queue_name=CONTROL_QUEUE, connection=STORAGE)
def publish(req: func.HttpRequest, control: func.Out[typing.List[str]]) -> func.HttpResponse:  # the worker rejects list[str]
    return api.publish(req, control)


@app.route(route="runs/{runId}", methods=["GET"])
def run_status(req: func.HttpRequest) -> func.HttpResponse:
    return api.run_status(req)


@app.route(route="apps", methods=["GET"])
def apps_status(req: func.HttpRequest) -> func.HttpResponse:
    return api.apps_status(req)


@app.queue_trigger(arg_name="msg", queue_name=CONTROL_QUEUE, connection=STORAGE)
def control_step(msg: func.QueueMessage) -> None:
    worker.handle_control(msg)


@app.queue_trigger(arg_name="msg", queue_name=CHATS_QUEUE, connection=STORAGE)
def upgrade_chats(msg: func.QueueMessage) -> None:
    worker.handle_chats(msg)


@app.queue_trigger(arg_name="msg", queue_name=CONTROL_QUEUE + POISON_SUFFIX, connection=STORAGE)
def control_poison(msg: func.QueueMessage) -> None:
    worker.handle_control_poison(msg)


@app.queue_trigger(arg_name="msg", queue_name=CHATS_QUEUE + POISON_SUFFIX, connection=STORAGE)
def upgrade_poison(msg: func.QueueMessage) -> None:
    worker.handle_chats_poison(msg)


@app.timer_trigger(arg_name="timer", schedule="%CATALOG_WATCH_SCHEDULE%")
def catalog_watcher(timer: func.TimerRequest) -> None:
    worker.check_catalog()


@app.route(route="notifications", methods=["POST"])
@app.queue_output(arg_name="events", queue_name=NOTIFICATIONS_QUEUE, connection=STORAGE)
def graph_notifications(req: func.HttpRequest, events: func.Out[typing.List[str]]) -> func.HttpResponse:
    return notifications.receive(req, events)


@app.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE, connection=STORAGE)
def installation_events(msg: func.QueueMessage) -> None:
    worker.handle_notifications(msg)


@app.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE + POISON_SUFFIX, connection=STORAGE)
def installation_events_poison(msg: func.QueueMessage) -> None:
    worker.handle_notifications_poison(msg)


@app.timer_trigger(arg_name="timer", schedule="%SUBSCRIPTION_SCHEDULE%")
def subscription_manager(timer: func.TimerRequest) -> None:
    worker.maintain_subscriptions()


@app.timer_trigger(arg_name="timer", schedule="%QUEUE_MONITOR_SCHEDULE%")
def queue_monitor(timer: func.TimerRequest) -> None:
    worker.report_queue_depth()
