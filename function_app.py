"""Azure Functions entry point: triggers and bindings only; the work happens in `shared`.

Every function takes the worker's `context` so that `traced` can put the app's records in the invocation's trace."""

import typing

import azure.functions as func

from shared.foundation.storage import CONTROL_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX, TARGETS_QUEUE
from shared.foundation.telemetry import keep_libraries_quiet
from shared.foundation.tracing import traced
from shared.http import apps, health, openapi, runs
from shared.http import notifications as incoming
from shared.http import publish as publishing
from shared.http.auth import operator_auth_level
from shared.queues import control, notifications, targets, timers

STORAGE = "AzureWebJobsStorage"
OPERATOR = operator_auth_level()  # the function key, or anonymous to the host when the app checks Entra ID tokens
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
keep_libraries_quiet()  # the worker's root logger is at INFO: no request/token lines from the SDKs


@app.route(route="publish", methods=["POST"], auth_level=OPERATOR)
@app.queue_output(arg_name="control", queue_name=CONTROL_QUEUE, connection=STORAGE)
@traced  # typing.List: the worker rejects list[str]
def publish(req: func.HttpRequest, control: func.Out[typing.List[str]], context: func.Context) -> func.HttpResponse:
    return publishing.publish(req, control)


@app.route(route="runs", methods=["GET"], auth_level=OPERATOR)
@traced
def run_history(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return runs.list_runs(req)


@app.route(route="runs/{runId}", methods=["GET"], auth_level=OPERATOR)
@traced
def run_status(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return runs.run_status(req)


@app.route(route="runs/{runId}/cancel", methods=["POST"], auth_level=OPERATOR)
@traced
def cancel_run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return runs.cancel_run(req)


@app.route(route="runs/{runId}/resume", methods=["POST"], auth_level=OPERATOR)
@traced
def resume_run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return runs.resume_run(req)


@app.route(route="runs/{runId}/retry", methods=["POST"], auth_level=OPERATOR)
@traced
def retry_run(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return runs.retry_run(req)


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@traced
def openapi_document(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return openapi.document(req)


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@traced
def health_check(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return health.health(req)


@app.route(route="apps", methods=["GET"], auth_level=OPERATOR)
@traced
def apps_status(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return apps.apps_status(req)


@app.queue_trigger(arg_name="msg", queue_name=CONTROL_QUEUE, connection=STORAGE)
@traced
def control_step(msg: func.QueueMessage, context: func.Context) -> None:
    control.handle(msg)


@app.queue_trigger(arg_name="msg", queue_name=TARGETS_QUEUE, connection=STORAGE)
@traced
def upgrade_targets(msg: func.QueueMessage, context: func.Context) -> None:
    targets.handle(msg)


@app.queue_trigger(arg_name="msg", queue_name=CONTROL_QUEUE + POISON_SUFFIX, connection=STORAGE)
@traced
def control_poison(msg: func.QueueMessage, context: func.Context) -> None:
    control.handle_poison(msg)


@app.queue_trigger(arg_name="msg", queue_name=TARGETS_QUEUE + POISON_SUFFIX, connection=STORAGE)
@traced
def upgrade_poison(msg: func.QueueMessage, context: func.Context) -> None:
    targets.handle_poison(msg)


@app.timer_trigger(arg_name="timer", schedule="%CATALOG_WATCH_SCHEDULE%")
@traced
def catalog_watcher(timer: func.TimerRequest, context: func.Context) -> None:
    timers.check_catalog()


@app.route(route="notifications", methods=["POST"])
@app.queue_output(arg_name="events", queue_name=NOTIFICATIONS_QUEUE, connection=STORAGE)
@traced
def graph_notifications(req: func.HttpRequest, events: func.Out[typing.List[str]], context: func.Context) -> func.HttpResponse:
    return incoming.receive(req, events)


@app.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE, connection=STORAGE)
@traced
def installation_events(msg: func.QueueMessage, context: func.Context) -> None:
    notifications.handle(msg)


@app.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE + POISON_SUFFIX, connection=STORAGE)
@traced
def installation_events_poison(msg: func.QueueMessage, context: func.Context) -> None:
    notifications.handle_poison(msg)


@app.timer_trigger(arg_name="timer", schedule="%SUBSCRIPTION_SCHEDULE%")
@traced
def subscription_manager(timer: func.TimerRequest, context: func.Context) -> None:
    timers.maintain_subscriptions()


@app.timer_trigger(arg_name="timer", schedule="%RUN_KEEPER_SCHEDULE%")
@traced
def run_keeper(timer: func.TimerRequest, context: func.Context) -> None:
    timers.keep_runs_going()


@app.timer_trigger(arg_name="timer", schedule="%RETENTION_SCHEDULE%")
@traced
def run_retention(timer: func.TimerRequest, context: func.Context) -> None:
    timers.purge_old_runs()


@app.timer_trigger(arg_name="timer", schedule="%QUEUE_MONITOR_SCHEDULE%")
@traced
def queue_monitor(timer: func.TimerRequest, context: func.Context) -> None:
    timers.report_queue_depth()
