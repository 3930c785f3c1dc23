"""Structured log records with a fixed vocabulary of properties.

Each record carries `event` plus properties in `extra`. The Python worker does not forward `extra`
to the Functions host, so the deployed app exports its logs with the Azure Monitor OpenTelemetry
distro (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true, logger `upgrader`): there, each property
becomes a column of AppTraces.Properties (customDimensions). Nothing here ever logs a token, a key
or a connection string.

Events and their properties:
  runQueued       runId appId trigger startedBy scopes (api: externalId targets dryRun canary rolloutSteps groupId;
                  catalogWatcher: version; retry: retryOf targets)
  runStarted      runId appId targetVersion dryRun discoveryMode
  runFailed       runId errorCode
  runCancelled    runId appId startedBy byObjectId (who cancelled)
  runPaused       runId appId startedBy (canary or rollout) byObjectId step reason
  runResumed      runId appId startedBy byObjectId (an operator, or the canary passing)
  runStep         runId appId change (stepDone bake baked planDone) step decided failed resumesAt
  runWaiting      runId appId version reason resumesAt (a version the catalog does not list yet)
  runPausedTooLong runId appId state reason pausedSince (the run keeper, past PAUSED_ALERT_AFTER)
  runStalled      runId appId state lastChange (the run keeper: nothing recorded for 30 minutes)
  retention       runs transactions | runId (RUN_RETENTION purged target rows)
  runRetried      runId appId startedBy byObjectId newRunId targets
  targetOutcome   runId appId scope targetId chatId|teamId|userId outcome targetVersion installedVersion
                  graphStatus graphCode
  throttled       bucket graphStatus retryAfter
  pacing          bucket reserved blocks used overslept dropped clockOffset clockError (per process, every 30 s)
  clock           clockOffset clockError (this host's wall clock minus the storage service's, once known and
                  when it moves; warnings: a host more than 0.1 s off, storage's time moving, no usable Date)
  rescheduled     runId appId scope targetId outcome graphStatus graphCode retryAfter
  userSkipped     runId scope userId graphStatus graphCode
  poisoned        queue runId step | appId
  queueDepth      queue depth
  watcher         appId version runId trigger
  registry        appId scope targetId change
  subscription    appId subscriptionId lifecycleEvent graphStatus graphCode
"""

from __future__ import annotations

import logging

LOGGER = "upgrader"
events = logging.getLogger(f"{LOGGER}.events")
# libraries that log every storage request and token at INFO: the worker forwards whatever reaches
# its root logger (at INFO) to the host, i.e. to Application Insights, on every call
CHATTY_LIBRARIES = ("azure", "msal", "urllib3")


def keep_libraries_quiet(level: int = logging.WARNING) -> None:
    """Only the app's own events at INFO; libraries speak up on warnings and errors."""
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(level)


def event(name: str, message: str, *args, level: int = logging.INFO, **props) -> None:
    """Logs `message` with `event=name` and the non-empty properties."""
    extra = {"event": name, **{k: v for k, v in props.items() if v is not None}}
    events.log(level, message, *args, extra=extra)


def log_outcome(run, outcome) -> None:
    """One line per target outcome: the record an operator searches for."""
    failure = outcome.failure or {}
    detail = f": {failure.get('status')} {failure.get('code')} {failure.get('message')}" if failure else ""
    target = outcome.target
    event(
        "targetOutcome",
        "%s %s %s (run %s)%s",
        target.label,
        target.id,
        outcome.outcome,
        run.run_id,
        detail,
        level=logging.WARNING if outcome.outcome == "failed" else logging.INFO,
        runId=run.run_id,
        appId=run.target.teams_app_id if run.target else run.teams_app_id,
        scope=target.scope,
        targetId=target.id,
        **{target.id_field: target.id},
        outcome=outcome.outcome,
        targetVersion=run.target.version if run.target else None,
        installedVersion=outcome.version,
        graphStatus=failure.get("status"),
        graphCode=failure.get("code"),
    )
