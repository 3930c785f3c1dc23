"""Maintenance windows on the running app, at real minute boundaries (a window's start and end are
whole minutes): nothing is decided before the window opens, and nothing two seconds after it
closes. The window arithmetic itself (overnight, days, daylight saving) is in tests/unit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.support import group_chats, org_app, people, tight_limits, wait_for

ZONE = ZoneInfo("Asia/Kathmandu")  # UTC+05:45: the window's local times are not UTC's
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _boundary(ahead: float) -> datetime:
    """The next whole minute at least `ahead` seconds away."""
    now = datetime.now(UTC)
    boundary = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    return boundary if (boundary - now).total_seconds() >= ahead else boundary + timedelta(minutes=1)


def _window(opens: datetime, closes: datetime) -> dict:
    local_open = opens.astimezone(ZONE)
    return {
        "timeZone": ZONE.key,
        "days": [DAYS[local_open.weekday()]],
        "start": local_open.strftime("%H:%M"),
        "end": closes.astimezone(ZONE).strftime("%H:%M"),
    }


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _decisions(emulator) -> list:
    """installedApps GETs and upgrade POSTs: what deciding a target sends."""
    return [r for r in emulator.requests() if "Installed" in r.kind or r.kind.startswith("upgrade")]


def test_one_window_closes_and_another_opens_at_the_same_minute(api, app_env, tenant, emulator, caplog):
    """Two apps, two runs: one whose window closes at a minute boundary midway through it (nothing
    decided two seconds after), one whose window opens then (nothing decided before); each wait for
    a window is logged once, for the workbook's steps of a run."""
    caplog.set_level("INFO", logger="upgrader")
    tight_limits(emulator, app_env, 4)  # slow enough that the first run is midway when its window closes
    closing, opening = org_app(tenant, name="Closing"), org_app(tenant, name="Opening")
    late = {c.id for c in group_chats(tenant, people(tenant, 4), 120, {closing.id: "1.0.0"})}
    early = {c.id for c in group_chats(tenant, people(tenant, 2), 6, {opening.id: "1.0.0"})}
    boundary = _boundary(ahead=12)
    wait_for(lambda: 6 < (boundary - datetime.now(UTC)).total_seconds() < 12, timeout=80)
    every = {"steps": [{"upgrade": {"percent": 100}}]}

    closes = api.start(
        teamsAppId=closing.id, chatIds=sorted(late), rollout={**every, "window": _window(boundary - timedelta(hours=1), boundary)}
    )
    opens = api.start(
        teamsAppId=opening.id,
        chatIds=sorted(early),
        rollout={**every, "window": _window(boundary, boundary + timedelta(hours=1))},
    )

    waiting = api.wait(opens, until=lambda s: s["state"] == "waiting")
    assert waiting["waiting"] == {
        "reason": "window",
        "resumesAt": boundary.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    assert api.act(opens, "resume").json()["error"]["code"] == "outsideWindow"

    opened = api.wait(opens, timeout=60)
    assert opened["state"] == "completed" and opened["counts"]["upgraded"] == 6
    assert min(r.t for r in _decisions(emulator) if r.chat in early) >= boundary.timestamp()
    assert {c: n for c, n in emulator.upgrades.items() if c in early} == dict.fromkeys(early, 1)

    held = api.wait(closes, until=lambda s: s["state"] == "waiting")
    wait_for(lambda: datetime.now(UTC).timestamp() > boundary.timestamp() + 4, timeout=20)
    assert held["waiting"]["reason"] == "window"
    assert _at(held["waiting"]["resumesAt"]) == boundary - timedelta(hours=1) + timedelta(days=7)  # its one day, next week
    sent = [r for r in _decisions(emulator) if r.chat in late]
    assert min(r.t for r in sent) < boundary.timestamp()  # it was going on when the window closed
    assert [r for r in sent if r.t > boundary.timestamp() + 2] == []
    assert 0 < held["counts"]["upgraded"] < 120
    cancelled = api.wait(api.act(closes, "cancel").json()["runId"])
    assert cancelled["state"] == "cancelled" and cancelled["counts"]["cancelled"] == 120 - cancelled["counts"]["upgraded"]
    assert cancelled["counts"]["upgraded"] == sum(1 for c in emulator.upgrades if c in late)
    waits = [(r.runId, r.reason, r.resumesAt) for r in caplog.records if getattr(r, "event", None) == "runWaiting"]
    assert sorted(waits) == sorted(
        [(opens, "window", waiting["waiting"]["resumesAt"]), (closes, "window", held["waiting"]["resumesAt"])]
    )
