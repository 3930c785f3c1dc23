"""Azure Functions entry point: triggers and bindings only; the work happens in `shared`."""

import typing

import azure.functions as func

from shared.foundation.storage import CONTROL_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX, TARGETS_QUEUE
from shared.http import apps, notifications, openapi, runs
from shared.http import publish as publishing
from shared.queues import handlers, timers

STORAGE = "AzureWebJobsStorage"
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="publish", methods=["POST"])
@app.queue_output(arg_name="control", queue_name=CONTROL_QUEUE, connection=STORAGE)
def publish(req: func.HttpRequest, control: func.Out[typing.List[str]]) -> func.HttpResponse:  # the worker rejects list[str]
    return publishing.publish(req, control)


@app.route(route="runs", methods=["GET"])
def run_history(req: func.HttpRequest) -> func.HttpResponse:
    return runs.list_runs(req)


@app.route(route="runs/{runId}", methods=["GET"])
def run_status(req: func.HttpRequest) -> func.HttpResponse:
    return runs.run_status(req)


@app.route(route="runs/{runId}/cancel", methods=["POST"])
def cancel_run(req: func.HttpRequest) -> func.HttpResponse:
    return runs.cancel_run(req)


@app.route(route="runs/{runId}/resume", methods=["POST"])
def resume_run(req: func.HttpRequest) -> func.HttpResponse:
    return runs.resume_run(req)


@app.route(route="runs/{runId}/retry", methods=["POST"])
def retry_run(req: func.HttpRequest) -> func.HttpResponse:
    return runs.retry_run(req)


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return openapi.document(req)


@app.route(route="apps", methods=["GET"])
def apps_status(req: func.HttpRequest) -> func.HttpResponse:
    return apps.apps_status(req)


@app.queue_trigger(arg_name="msg", queue_name=CONTROL_QUEUE, connection=STORAGE)
def control_step(msg: func.QueueMessage) -> None:
    handlers.handle_control(msg)


@app.queue_trigger(arg_name="msg", queue_name=TARGETS_QUEUE, connection=STORAGE)
def upgrade_targets(msg: func.QueueMessage) -> None:
    handlers.handle_targets(msg)


@app.queue_trigger(arg_name="msg", queue_name=CONTROL_QUEUE + POISON_SUFFIX, connection=STORAGE)
def control_poison(msg: func.QueueMessage) -> None:
    handlers.handle_control_poison(msg)


@app.queue_trigger(arg_name="msg", queue_name=TARGETS_QUEUE + POISON_SUFFIX, connection=STORAGE)
def upgrade_poison(msg: func.QueueMessage) -> None:
    handlers.handle_targets_poison(msg)


@app.timer_trigger(arg_name="timer", schedule="%CATALOG_WATCH_SCHEDULE%")
def catalog_watcher(timer: func.TimerRequest) -> None:
    timers.check_catalog()


@app.route(route="notifications", methods=["POST"])
@app.queue_output(arg_name="events", queue_name=NOTIFICATIONS_QUEUE, connection=STORAGE)
def graph_notifications(req: func.HttpRequest, events: func.Out[typing.List[str]]) -> func.HttpResponse:
    return notifications.receive(req, events)


@app.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE, connection=STORAGE)
def installation_events(msg: func.QueueMessage) -> None:
    handlers.handle_notifications(msg)


@app.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE + POISON_SUFFIX, connection=STORAGE)
def installation_events_poison(msg: func.QueueMessage) -> None:
    handlers.handle_notifications_poison(msg)


@app.timer_trigger(arg_name="timer", schedule="%SUBSCRIPTION_SCHEDULE%")
def subscription_manager(timer: func.TimerRequest) -> None:
    timers.maintain_subscriptions()


@app.timer_trigger(arg_name="timer", schedule="%QUEUE_MONITOR_SCHEDULE%")
def queue_monitor(timer: func.TimerRequest) -> None:
    timers.report_queue_depth()
