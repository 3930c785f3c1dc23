"""The app to upgrade to: which published definition of a catalog app is the target, and what an
upgrade must consent to."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from shared.domain.versions import version_key
from shared.foundation.errors import RunFailure


class VersionNotListed(RunFailure):
    """The version asked for is not the catalog's newest published one yet, but may become it: it is
    absent (the catalog list lags a publish by up to two days), waits for an admin's approval, or is
    newer than anything published. A run waits for it (CATALOG_WAIT) rather than failing at once."""

    def __init__(self, app_id: str, version: str, message: str) -> None:
        super().__init__("versionNotPublished", message)
        self.app_id = app_id
        self.version = version


@dataclass(frozen=True)
class Permission:
    value: str
    type: str  # "application" or "delegated", as the catalog spells it


@dataclass(frozen=True, kw_only=True)
class TargetApp:
    teams_app_id: str
    external_id: str | None
    display_name: str
    definition_id: str
    version: str
    permissions: tuple[Permission, ...] = ()

    def upgrade_body(self) -> dict:
        """Body of POST .../upgrade: RSC apps must consent to exactly the definition's permission set."""
        if not self.permissions:
            return {}
        return {
            "consentedPermissionSet": {
                "resourceSpecificPermissions": [{"permissionValue": p.value, "permissionType": p.type} for p in self.permissions]
            }
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TargetApp:
        data = json.loads(text)
        data["permissions"] = tuple(Permission(**p) for p in data.get("permissions", ()))
        return cls(**data)


def _permissions(definition: dict) -> tuple[Permission, ...]:
    rsc = ((definition.get("authorization") or {}).get("requiredPermissionSet") or {}).get("resourceSpecificPermissions")
    if rsc is None:  # older payloads carried application permissions only, under another name
        legacy = definition.get("requiredResourceSpecificApplicationPermissions") or []
        return tuple(Permission(v, "application") for v in legacy if isinstance(v, str))
    return tuple(
        Permission(p["permissionValue"], p.get("permissionType", "application"))
        for p in rsc
        if isinstance(p, dict) and p.get("permissionValue")
    )


def choose_target(app: dict, version: str | None) -> TargetApp:
    definitions = [d for d in app.get("appDefinitions") or [] if isinstance(d, dict) and d.get("version")]
    published = [d for d in definitions if str(d.get("publishingState", "")).lower() == "published"]
    name = app.get("displayName") or app["id"]
    newest = max(published, key=lambda d: version_key(d["version"])) if published else None
    if version is not None and (newest is None or version_key(version) > version_key(newest["version"])):
        listed = [d for d in definitions if version_key(d["version"]) == version_key(version)]
        states = {str(d.get("publishingState", "")).lower() for d in listed}
        shown = f"the newest published version is {newest['version']}" if newest else "no version is published"
        if states == {"rejected"}:  # an admin said no: waiting would not change it
            raise RunFailure("versionNotPublished", f"Version {version} of app '{name}' was rejected in review ({shown}).")
        state = f"its state is '{listed[0].get('publishingState')}'" if listed else "the catalog does not list it"
        raise VersionNotListed(app["id"], version, f"Version {version} of app '{name}' is not published yet ({state}; {shown}).")
    if newest is None:
        raise RunFailure("versionNotPublished", f"App '{name}' has no published version in the tenant app catalog.")
    if version is not None and version_key(version) != version_key(newest["version"]):
        raise RunFailure(
            "versionNotPublished",
            f"Version {version} of app '{name}' is older than the newest published version, {newest['version']}.",
        )
    return TargetApp(
        teams_app_id=app["id"],
        external_id=app.get("externalId") or None,
        display_name=name,
        definition_id=newest.get("id", ""),
        version=newest["version"],
        permissions=_permissions(newest),
    )
