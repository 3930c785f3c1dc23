"""What a user writes instead of the upgrader: a sequential loop over the chats, GET installedApps
then POST upgrade, honouring Retry-After. Once with `requests`, once with the official msgraph-sdk.

Both use the same managed-identity token as the upgrader and run against the same emulator.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import requests

from shared.domain.versions import is_at_least


@dataclass
class PeerResult:
    upgraded: int = 0
    checked: int = 0
    errors: int = 0
    elapsed: float = 0.0
    finished: bool = False
    upgrade_times: list[float] = field(default_factory=list)  # seconds since start

    def to_json(self) -> dict:
        rate = self.upgraded / self.elapsed if self.elapsed else 0.0
        return {
            "upgraded": self.upgraded,
            "checked": self.checked,
            "errors": self.errors,
            "elapsedSeconds": round(self.elapsed, 2),
            "finished": self.finished,
            "upgradesPerSecond": round(rate, 3),
        }


def requests_loop(base_url: str, token: str, app_id: str, target: str, chats: list[str], budget: float) -> PeerResult:
    """The loop a script author writes with `requests`."""
    result = PeerResult()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    started = time.monotonic()

    def call(method: str, url: str, **kwargs) -> requests.Response:
        while True:
            response = session.request(method, url, **kwargs)
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))

    for chat in chats:
        if time.monotonic() - started > budget:
            break
        chat_url = f"{base_url}/chats/{quote(chat, safe='')}/installedApps"
        found = call("GET", chat_url, params={"$expand": "teamsApp,teamsAppDefinition", "$filter": f"teamsApp/id eq '{app_id}'"})
        result.checked += 1
        items = found.json().get("value", []) if found.ok else []
        if not items or is_at_least(items[0]["teamsAppDefinition"]["version"], target):
            continue
        upgrade = call("POST", f"{chat_url}/{quote(items[0]['id'], safe='')}/upgrade", json={})
        if upgrade.status_code == 204:
            result.upgraded += 1
            result.upgrade_times.append(time.monotonic() - started)
        else:
            result.errors += 1
    else:
        result.finished = True
    result.elapsed = time.monotonic() - started
    return result


def sdk_loop(base_url: str, token: str, app_id: str, target: str, chats: list[str], budget: float) -> PeerResult:
    """The same loop with msgraph-sdk; its RetryHandler honours Retry-After."""
    from azure.core.credentials import AccessToken
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.chats.item.installed_apps.installed_apps_request_builder import InstalledAppsRequestBuilder
    from msgraph.generated.chats.item.installed_apps.item.upgrade.upgrade_post_request_body import UpgradePostRequestBody

    class StaticToken:  # the upgrader's managed-identity token, as an azure-identity credential
        def get_token(self, *scopes, **kwargs) -> AccessToken:
            return AccessToken(token, int(time.time()) + 3600)

    result = PeerResult()

    async def main() -> None:
        auth = AzureIdentityAuthenticationProvider(
            StaticToken(), scopes=["https://graph.microsoft.com/.default"], allowed_hosts=["127.0.0.1"]
        )
        adapter = GraphRequestAdapter(auth)
        adapter.base_url = base_url
        client = GraphServiceClient(request_adapter=adapter)
        query = InstalledAppsRequestBuilder.InstalledAppsRequestBuilderGetQueryParameters(
            expand=["teamsApp", "teamsAppDefinition"], filter=f"teamsApp/id eq '{app_id}'"
        )
        config = InstalledAppsRequestBuilder.InstalledAppsRequestBuilderGetRequestConfiguration(query_parameters=query)
        started = time.monotonic()
        for chat in chats:
            if time.monotonic() - started > budget:
                break
            try:
                found = await client.chats.by_chat_id(chat).installed_apps.get(request_configuration=config)
                result.checked += 1
                items = found.value if found and found.value else []
                if not items or is_at_least(items[0].teams_app_definition.version, target):
                    continue
                installed = client.chats.by_chat_id(chat).installed_apps.by_teams_app_installation_id(items[0].id)
                await installed.upgrade.post(UpgradePostRequestBody())
                result.upgraded += 1
                result.upgrade_times.append(time.monotonic() - started)
            except Exception:  # the SDK gave up after its retries
                result.errors += 1
        else:
            result.finished = True
        result.elapsed = time.monotonic() - started

    asyncio.run(main())
    return result
