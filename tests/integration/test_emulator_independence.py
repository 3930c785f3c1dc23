"""The local stand-ins for Microsoft Graph and Entra ID are an independent oracle: they import
nothing from the app (`shared`), so a wrong rule in the app is caught by them, not agreed with.
The emulated catalog orders versions by its own reading of the manifest rule."""

from __future__ import annotations

import ast
import io
import json
import zipfile
from pathlib import Path

import pytest
import requests

from devtools.app_versions import InvalidVersion, is_newer, is_valid, newest, parse
from devtools.graph_subscriptions import PUBLISHERS, Subscriptions
from devtools.tenant import Tenant

ROOT = Path(__file__).resolve().parents[2]
# the Graph emulator (with its subscriptions extension and its own-process wrapper), the managed
# identity endpoint and the Entra ID authority
ORACLES = (
    "devtools.graph_emulator",
    "devtools.graph_subscriptions",
    "devtools.graph_process",
    "devtools.identity",
    "devtools.entra",
)


def imported_modules(module: str) -> set[str]:
    """Every module `module` imports, anywhere in its source (functions included), absolute names."""
    path = ROOT / (module.replace(".", "/") + ".py")
    package = module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from devtools import tenant`
    return found


def oracle_closure() -> dict[str, set[str]]:
    """The oracle modules and every devtools module they import, transitively: module -> its imports."""
    seen: dict[str, set[str]] = {}
    pending = list(ORACLES)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen[module] = imported_modules(module)
        pending += [m for m in seen[module] if m.startswith("devtools.") and (ROOT / (m.replace(".", "/") + ".py")).exists()]
    return seen


def test_the_emulators_and_everything_they_import_from_devtools_import_nothing_from_the_app():
    closure = oracle_closure()
    # the walk does reach the modules the oracles are built from (so the check below covers them)
    assert {"devtools.tenant", "devtools.graph_limits", "devtools.loopback", "devtools.app_versions"} <= set(closure)
    assert "devtools.funchost" not in closure  # the local Functions host runs the app: it may import it
    from_the_app = {m: sorted(i for i in imports if i == "shared" or i.startswith("shared.")) for m, imports in closure.items()}
    assert {m: i for m, i in from_the_app.items() if i} == {}


def test_the_import_walk_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    # the check above would pass vacuously if the walk missed these forms
    fake = tmp_path / "devtools"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "probe.py").write_text(
        "def late():\n    from shared.domain import versions\n    import shared.graph.client\n\nfrom . import sibling\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert {"shared.domain", "shared.graph.client", "devtools.sibling"} <= imported_modules("devtools.probe")


# ---- the catalog's own version order ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("newer", "older"),
    [("1.10.0", "1.9.0"), ("2.0.0", "1.99.99"), ("1.0.10", "1.0.9"), ("1.1.0", "1.0.99"), ("10.0.0", "9.9.9")],
)
def test_versions_compare_part_by_part_as_numbers(newer, older):
    assert is_newer(newer, older)
    assert not is_newer(older, newer)
    assert not is_newer(newer, newer)


def test_the_newest_of_several_versions_is_numeric_not_alphabetical():
    assert newest(["1.9.0", "1.10.0", "1.2.0"]) == "1.10.0"
    assert parse("1.10.3") == (1, 10, 3)


@pytest.mark.parametrize("version", ["1.2", "1.2.3.4", "01.2.3", "1.02.3", "v1.2.3", "1.2.3-beta", "1.2.x", "", " 1.2.3"])
def test_anything_but_major_minor_patch_is_not_a_manifest_version(version):
    assert not is_valid(version)
    with pytest.raises(InvalidVersion):
        parse(version)


def test_the_tenant_catalog_uses_that_order():
    tenant = Tenant()
    app = tenant.add_app("Contoso Tasks", versions=("1.9.0", "1.10.0"))
    tenant.publish(app.id, "1.11.0", requires_review=True)  # submitted, not published
    assert app.newest_published().version == "1.10.0"
    people = [tenant.add_user().id for _ in range(2)]
    behind = tenant.add_chat("group", people, installed={app.id: "1.9.0"})
    tenant.add_chat("group", people, installed={app.id: "1.10.0"})
    assert tenant.outdated_chats(app.id) == [behind]
    with pytest.raises(InvalidVersion):
        tenant.add_app("Contoso Notes", versions=("1.2",))


def test_publishing_a_package_whose_version_is_not_major_minor_patch_is_a_400(emulator, identity, tenant):
    Subscriptions(emulator)
    app = tenant.add_app("Contoso Tasks", versions=("1.0.0",))
    token, _ = identity.authority.issue("https://graph.microsoft.com", roles=sorted(PUBLISHERS))

    def publish(version: str) -> requests.Response:
        package = io.BytesIO()
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("manifest.json", json.dumps({"version": version, "id": "manifest-id"}))
        return requests.post(
            f"{emulator.base_url}/appCatalogs/teamsApps/{app.id}/appDefinitions",
            data=package.getvalue(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/zip"},
            timeout=10,
        )

    refused = publish("1.1")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "BadRequest"
    assert refused.json()["error"]["message"].startswith("UnableToParseTeamsAppManifest")
    assert [d.version for d in app.definitions] == ["1.0.0"]
    assert publish("1.10.0").status_code == 204
    assert app.newest_published().version == "1.10.0"
