"""GET /api/apps: what the automatic triggers know per app (versions, subscription, registry)."""

from __future__ import annotations

import azure.functions as func

from shared.foundation.settings import SCOPES
from shared.http.auth import READ, signed_in
from shared.http.responses import answer, json_response
from shared.stores.apps import AppState


def apps_status(req: func.HttpRequest, services=None) -> func.HttpResponse:
    return answer(
        "The app state could not be read", lambda: json_response(200, {"apps": _apps(signed_in(req, services, READ)[0])})
    )


def _apps(services) -> list[dict]:
    known = services.apps.apps()
    for app_id in services.settings.watched_app_ids:
        known.setdefault(app_id, AppState())
    return [_app(services, app_id, state) for app_id, state in sorted(known.items())]


def _app(services, app_id: str, state: AppState) -> dict:
    subscription, registry = state.subscription, state.registry
    counts = services.registry.counts(app_id)
    return {
        "teamsAppId": app_id,
        "displayName": state.seen.get("displayName"),
        "seenVersion": state.seen.get("version"),
        "seenAt": _iso(state.seen.get("seenAt")),
        "lastRunId": state.seen.get("runId"),
        "subscription": None
        if subscription is None
        else {
            "id": subscription.id,
            "scopes": list(subscription.scopes),
            "expiresAt": _iso(subscription.expires_at),
            "startedAt": _iso(subscription.started_at),
        },
        "registry": {
            "installations": {scope: counts.get(scope, 0) for scope in SCOPES},
            "events": registry.events,
            "undecodable": registry.undecodable,
            "scopes": {
                scope: {
                    "seedRunId": seed.run_id,
                    "seedStartedAt": _iso(seed.started_at),
                    "invalidatedAt": _iso(seed.invalidated_at),
                }
                for scope, seed in registry.seeds.items()
            },
        },
    }


def _iso(moment) -> str | None:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else None
