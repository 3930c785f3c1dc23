"""Teams app versions compare numerically, the app to upgrade to is chosen from the catalog's
definitions (or waited for), and queue messages round-trip and refuse what is not theirs."""

from __future__ import annotations

import pytest

from shared.domain.app import VersionNotListed, choose_target
from shared.domain.messages import StartRun, UpgradeTargets, decode
from shared.domain.versions import is_at_least, version_key
from shared.foundation.errors import MalformedMessage, RunFailure


@pytest.mark.parametrize(
    ("newer", "older"),
    [("1.10.0", "1.9.0"), ("2.0.0", "1.99.99"), ("1.2.1", "1.2"), ("1.0.1", "1.0.0")],
)
def test_versions_compare_as_numbers(newer, older):
    assert version_key(newer) > version_key(older) and is_at_least(newer, older) and not is_at_least(older, newer)


def test_trailing_zero_parts_do_not_count():
    assert version_key("1.2") == version_key("1.2.0") == version_key("1.2.0.0")


def _app(*definitions: tuple[str, str]) -> dict:
    return {
        "id": "app-1",
        "displayName": "Contoso",
        "appDefinitions": [{"id": f"d-{v}", "version": v, "publishingState": s} for v, s in definitions],
    }


def test_the_newest_published_definition_is_the_target():
    app = _app(("1.0.0", "published"), ("1.10.0", "published"), ("1.9.0", "published"), ("2.0.0", "submitted"))
    assert choose_target(app, None).version == "1.10.0"
    assert choose_target(app, "1.10.0").definition_id == "d-1.10.0"


@pytest.mark.parametrize("version", ["2.0.0", "3.0.0"])
def test_a_version_submitted_or_not_listed_is_waited_for(version):
    with pytest.raises(VersionNotListed) as caught:
        choose_target(_app(("1.0.0", "published"), ("2.0.0", "submitted")), version)
    assert caught.value.version == version and caught.value.app_id == "app-1"
    assert caught.value.info.code == "versionNotPublished"


def test_an_older_version_fails_at_once_and_so_does_an_app_with_nothing_published():
    with pytest.raises(RunFailure, match=r"older than the newest published version, 1\.1\.0") as caught:
        choose_target(_app(("1.0.0", "published"), ("1.1.0", "published")), "1.0.0")
    assert not isinstance(caught.value, VersionNotListed)
    with pytest.raises(RunFailure, match="no published version"):
        choose_target(_app(("1.0.0", "submitted")), None)


def test_a_version_rejected_in_review_fails_at_once_unless_it_was_submitted_again():
    with pytest.raises(RunFailure, match=r"2\.0\.0 of app 'Contoso' was rejected in review") as caught:
        choose_target(_app(("1.0.0", "published"), ("2.0.0", "rejected")), "2.0.0")
    assert not isinstance(caught.value, VersionNotListed) and caught.value.info.code == "versionNotPublished"
    with pytest.raises(VersionNotListed):
        choose_target(_app(("1.0.0", "published"), ("2.0.0", "rejected"), ("2.0.0", "submitted")), "2.0.0")


def test_messages_round_trip_and_refuse_what_is_not_theirs():
    message = UpgradeTargets(run_id="a" * 32, scope="team", ids=("t1", "t2"), attempt=2, admitted=True)
    assert decode(message.encode()) == message
    assert decode(StartRun(run_id="b" * 32, step_id="start-3").encode()).step_id == "start-3"
    for text, why in [
        ("not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"kind": "nope"}', "unknown kind"),
        ('{"kind": "start", "runId": "x"}', "not a run id"),
        ('{"kind": "upgradeTargets", "runId": "' + "a" * 32 + '", "scope": "channel", "ids": []}', "scope is not one of"),
        ('{"kind": "upgradeTargets", "runId": "' + "a" * 32 + '", "scope": "chat", "ids": [1]}', "list of strings"),
    ]:
        with pytest.raises(MalformedMessage, match=why):
            decode(text)
