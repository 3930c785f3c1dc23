"""Discovery steps: Graph has no list of an app's installations, so a run lists users (or the
discovery group's transitive members) and teams, and finds the targets of each scope:

  chat      each user's chats filtered by the app (ScanUserChats, a few users per step)
  personal  each user is a target
  team      every team (ListTeams, page by page), or the teams the group's members joined (ScanUserTeams)

Targets are recorded and queued as they are found, so upgrades start while discovery goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from shared.domain.messages import ListTeams, ListUsers, ScanUserChats, ScanUserTeams
from shared.domain.runs import RunRecord
from shared.domain.targets import Target, counter
from shared.foundation.errors import ErrorInfo, GraphError, GraphRetryable, raise_missing_permissions
from shared.foundation.telemetry import event
from shared.graph.directory import list_users_page
from shared.scopes.chat import chats_with_app
from shared.scopes.team import joined_teams, list_teams_page
from shared.services import Services
from shared.steering.gate import found
from shared.steering.stopping import fail_run
from shared.steps.redelivery import Delivery, StepOutput
from shared.steps.start import discovery_group


def _scanned(run: RunRecord, scope: str) -> bool:
    return run.discovery.get(scope) == "scan"


def _next_page(step: ListUsers | ListTeams, prefix: str, cursor: str) -> ListUsers | ListTeams:
    return replace(step, step_id=f"{prefix}-{step.page + 1}", page=step.page + 1, cursor=cursor)


def list_users(services: Services, run: RunRecord, step: ListUsers, delivery: Delivery) -> StepOutput:
    settings = services.settings
    group = discovery_group(services, run)
    try:
        users, cursor = list_users_page(services.graph, group_id=group, cursor=step.cursor)
    except GraphError as exc:
        if group is None or step.cursor is not None or exc.status != 404:
            raise
        where = "groupId" if run.group_id else "DISCOVERY_GROUP_ID"
        fail_run(services, run.run_id, ErrorInfo("groupNotFound", f"No group {group} in the directory ({where}): {exc.message}"))
        return StepOutput()
    output = StepOutput()
    if cursor:  # queued first: the listing keeps ahead of the scans of the users it found
        output.children.append((_next_page(step, "users", cursor), 0))
    if _scanned(run, "personal"):
        found(services, run, step.step_id, [Target("personal", u) for u in users])
        output.count(counter("personal", "usersListed"), len(users))
    size = settings.users_per_step
    scans: list[tuple[type, str]] = []
    if _scanned(run, "chat"):
        scans.append((ScanUserChats, "scan"))
    if _scanned(run, "team") and group is not None:
        scans.append((ScanUserTeams, "joined"))
    for kind, prefix in scans:
        output.children += [
            (kind(run_id=step.run_id, step_id=f"{prefix}-{step.page}-{i // size}", user_ids=tuple(users[i : i + size])), 0)
            for i in range(0, len(users), size)
        ]
    return output


def list_teams(services: Services, run: RunRecord, step: ListTeams, delivery: Delivery) -> StepOutput:
    teams, cursor = list_teams_page(services.graph, step.cursor)
    output = StepOutput()
    added = found(services, run, step.step_id, [Target("team", t) for t in teams])
    output.count(counter("team", "teamsListed"), len(added))
    if cursor:
        output.children.append((_next_page(step, "teams", cursor), 0))
    return output


def scan_user_chats(services: Services, run: RunRecord, step: ScanUserChats, delivery: Delivery) -> StepOutput:
    app_id = run.target.teams_app_id
    seed = "chat" in run.seeding  # a full scan seeds the installation registry with the chats it lists

    def chats(user_id: str) -> int:
        targets = [Target("chat", c) for c in chats_with_app(services.graph, user_id, app_id)]
        added = found(services, run, step.step_id, targets)
        if seed and targets:
            services.registry.add(app_id, targets, source="scan")
        return len(added)

    return _per_user(services, step, "chat", chats)


def scan_user_teams(services: Services, run: RunRecord, step: ScanUserTeams, delivery: Delivery) -> StepOutput:
    def teams(user_id: str) -> int:
        return len(found(services, run, step.step_id, [Target("team", t) for t in joined_teams(services.graph, user_id)]))

    return _per_user(services, step, "team", teams, found="teamsListed")


def _per_user(
    services: Services, step: ScanUserChats | ScanUserTeams, scope: str, scan: Callable[[str], int], *, found: str | None = None
) -> StepOutput:
    """Scans each user of the step (`scan` returns how many new targets it found, counted as
    `found`); a user that cannot be listed is counted (404: no Teams) and skipped; throttling hands
    the remaining users to a later step, up to UPGRADE_MAX_ATTEMPTS steps."""
    output = StepOutput(counts={counter(scope, n): 0 for n in ("usersScanned", "usersSkipped", "usersFailed")})
    what = "chats" if scope == "chat" else "joined teams"
    for index, user_id in enumerate(step.user_ids):
        if services.run_cache.cached_steering(step.run_id).stopped:
            break  # cancelled (or failed for good) meanwhile: the users left are not scanned
        try:
            new = scan(user_id)
        except GraphRetryable as exc:
            left = len(step.user_ids) - index
            if step.step_id.count(".") + 1 >= services.settings.max_attempts:
                output.count(counter(scope, "usersFailed"), left)
                event(
                    "userSkipped",
                    "Gave up listing %s of %d users: %s",
                    what,
                    left,
                    exc,
                    runId=step.run_id,
                    scope=scope,
                    graphStatus=exc.status,
                    graphCode=exc.code,
                    level=logging.WARNING,
                )
                break
            rest = replace(step, step_id=f"{step.step_id}.{index}", user_ids=step.user_ids[index:])
            output.children.append((rest, int(exc.retry_after + 0.999)))
            break
        except GraphError as exc:
            raise_missing_permissions(exc, f"listing users' {what}")
            if exc.status == 404:  # not a Teams user (no license, deleted meanwhile)
                output.count(counter(scope, "usersSkipped"))
                continue
            output.count(counter(scope, "usersFailed"))
            event(
                "userSkipped",
                "Listing %s of user %s failed: %s %s",
                what,
                user_id,
                exc.status,
                exc.code,
                runId=step.run_id,
                scope=scope,
                userId=user_id,
                graphStatus=exc.status,
                graphCode=exc.code,
                level=logging.WARNING,
            )
            continue
        output.count(counter(scope, "usersScanned"))
        if found:
            output.count(counter(scope, found), new)
    return output
