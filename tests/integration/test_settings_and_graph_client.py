"""Settings parsing, and the Graph client against the emulator through the real managed-identity credential."""

from __future__ import annotations

import email.utils
import logging
import time

import pytest

from shared.foundation.errors import GraphError, GraphThrottled
from shared.foundation.settings import ConfigError, Settings, StorageSettings
from shared.graph.client import GraphClient, managed_identity_tokens, segment
from tests.support import group_chats, org_app, people


def test_identity_based_storage_settings():
    env = {
        "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net/",
        "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "0b1c2d3e-0000-4000-8000-000000000001",
    }
    storage = StorageSettings.from_env(env)
    assert storage.connection_string is None
    assert storage.queue_service_uri == "https://acct.queue.core.windows.net"
    assert storage.table_service_uri == "https://acct.table.core.windows.net"
    assert (storage.credential, storage.client_id) == ("managedidentity", "0b1c2d3e-0000-4000-8000-000000000001")
    by_account = StorageSettings.from_env({"AzureWebJobsStorage__accountName": "acct"})
    assert by_account.table_service_uri == "https://acct.table.core.windows.net"


ENTRA = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "API_AUTH": "entra",
    "API_AUTH_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "API_AUTH_CLIENT_ID": "0b1c2d3e-0000-4000-8000-0000000000a1",
}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "GRAPH_MAX_RPS": "fast"}, "GRAPH_MAX_RPS"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "GRAPH_MAX_RPS": "0"}, "GRAPH_MAX_RPS"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "DISCOVERY_GROUP_ID": "sales"}, "DISCOVERY_GROUP_ID"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "GRAPH_BASE_URL": "graph.microsoft.com"}, "GRAPH_BASE_URL"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "UPGRADE_SCOPES": "chat,channel"}, "UPGRADE_SCOPES"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "UPGRADE_SCOPES": "chat,"}, "UPGRADE_SCOPES"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "UPGRADE_SCOPES": "chats"}, "UPGRADE_SCOPES"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "API_AUTH": "oauth"}, "API_AUTH"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true", "API_AUTH": "entra"}, "API_AUTH_TENANT_ID must be set"),
        ({**ENTRA, "API_AUTH_CLIENT_ID": ""}, "API_AUTH_CLIENT_ID must be set"),
        ({**ENTRA, "API_AUTH_CLIENT_ID": "my-api"}, "API_AUTH_CLIENT_ID must be a GUID"),
        ({**ENTRA, "API_AUTH_AUTHORITY": "login.microsoftonline.com"}, "API_AUTH_AUTHORITY"),
        ({**ENTRA, "API_AUTH_AUTHORITY": "https://login.microsoftonline.com/common"}, "API_AUTH_AUTHORITY"),
    ],
)
def test_bad_settings_name_the_setting(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_entra_sign_in_settings_give_the_issuers_audiences_and_key_discovery():
    auth = Settings.from_env({**ENTRA, "API_AUTH_AUTHORITY": "https://login.microsoftonline.us/"}).api_auth
    tenant, client = ENTRA["API_AUTH_TENANT_ID"], ENTRA["API_AUTH_CLIENT_ID"]
    assert auth.issuers == {"2.0": f"https://login.microsoftonline.us/{tenant}/v2.0", "1.0": f"https://sts.windows.net/{tenant}/"}
    assert auth.audiences == (client, f"api://{client}")
    assert auth.metadata_url == f"https://login.microsoftonline.us/{tenant}/v2.0/.well-known/openid-configuration"
    assert Settings.from_env(ENTRA).api_auth.authority == "https://login.microsoftonline.com"
    assert Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).api_auth.mode == "key"


def test_an_unresolved_key_vault_reference_is_a_configuration_error_never_a_secret():
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-upg.vault.azure.net/secrets/notification-client-state/)"
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "NOTIFICATION_CLIENT_STATE": reference,  # long enough to pass as a secret
        "NOTIFICATION_FUNCTION_KEY": "key",
        "WEBSITE_HOSTNAME": "app.azurewebsites.net",
    }
    with pytest.raises(ConfigError, match="NOTIFICATION_CLIENT_STATE is an unresolved Key Vault reference") as raised:
        Settings.from_env(env)
    assert "Key Vault Secrets User" in str(raised.value) and "kv-upg" not in str(raised.value)
    with pytest.raises(ConfigError, match="NOTIFICATION_FUNCTION_KEY"):
        Settings.from_env({**env, "NOTIFICATION_CLIENT_STATE": "s" * 20, "NOTIFICATION_FUNCTION_KEY": reference.lower()})
    Settings.from_env({**env, "NOTIFICATION_CLIENT_STATE": "s" * 20, "SOME_OTHER_SETTING": reference})  # not ours


def test_defaults():
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.graph_max_rps == 25
    assert settings.upgrade_scopes == ("chat",)
    assert settings.discovery_group_id is None and settings.azure_client_id is None


def test_upgrade_scopes_are_read_in_a_fixed_order_whatever_their_case_and_spacing():
    settings = Settings.from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "UPGRADE_SCOPES": " Personal, chat ,team,chat"}
    )
    assert settings.upgrade_scopes == ("chat", "team", "personal")


@pytest.fixture
def graph(app_env, emulator) -> GraphClient:
    return GraphClient(base_url=emulator.base_url, tokens=managed_identity_tokens(None), inline_retry_seconds=0)


def test_token_is_fetched_once_and_never_logged(graph, identity, tenant, emulator, caplog):
    app = org_app(tenant)
    chat = group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})[0]
    caplog.set_level(logging.DEBUG)
    before = len(identity.requests)
    for _ in range(3):
        graph.get(f"/chats/{segment(chat.id)}/installedApps", bucket="test")
        emulator.throttle._windows.clear()
    assert len(identity.requests) - before == 1
    token = managed_identity_tokens(None).token()
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text  # not even the signature part
    assert identity.header_secret not in caplog.text


def test_errors_carry_status_code_message_and_retry_after(graph, emulator):
    with pytest.raises(GraphError) as missing:
        graph.get(f"/chats/{segment('19:none@thread.v2')}/installedApps", bucket="test")
    assert (missing.value.status, missing.value.code) == (404, "NotFound")
    assert missing.value.request_id

    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    emulator.inject(429, 1, retry_after=in_30s)  # Retry-After may be an HTTP date
    emulator.inject(429, 1, retry_after=7)
    emulator.inject(429, 1)  # none given: exponential backoff, starting at 1 s
    with pytest.raises(GraphThrottled) as throttled:
        graph.get("/users", bucket="test")
    assert 28 <= throttled.value.retry_after <= 30
    with pytest.raises(GraphThrottled) as throttled:
        graph.get("/users", bucket="test")
    assert throttled.value.retry_after == 7
    with pytest.raises(GraphThrottled) as throttled:
        graph.get("/users", bucket="test")
    assert throttled.value.retry_after == 1


def test_a_next_link_to_another_host_is_never_followed(graph, identity):
    before = len(identity.requests)
    with pytest.raises(GraphError) as refused:
        graph.send("GET", "https://attacker.example/v1.0/users?$skiptoken=x", bucket="test")
    assert refused.value.code == "untrustedLink"
    assert len(identity.requests) == before


def test_missing_permission_is_a_403_from_the_emulator(graph, identity, tenant):
    identity.authority.roles.remove("User.Read.All")
    try:
        with pytest.raises(GraphError) as denied:
            graph.get("/users", bucket="test")
    finally:
        identity.authority.roles.append("User.Read.All")
    assert denied.value.status == 403


def test_rsc_upgrade_without_the_permission_set_is_a_400(graph, identity, tenant):
    app = org_app(tenant, permissions=[("ChatMessage.Read.Chat", "application")])
    chat = group_chats(tenant, people(tenant, 2), 1, {app.id: "1.0.0"})[0]
    identity.authority.roles.append("TeamsAppInstallation.ReadWriteAndConsentForChat.All")
    try:
        graph_fresh = GraphClient(base_url=graph.base_url, tokens=managed_identity_tokens(None), inline_retry_seconds=0)
        path = f"/chats/{segment(chat.id)}/installedApps/{segment(chat.installation_id(app.id))}/upgrade"
        with pytest.raises(GraphError) as mismatch:
            graph_fresh.post(path, {}, bucket="test")
    finally:
        identity.authority.roles.remove("TeamsAppInstallation.ReadWriteAndConsentForChat.All")
    assert mismatch.value.status == 400
    assert "ResourceSpecificPermissionsMismatch" in mismatch.value.message


def test_notification_url_is_built_from_the_function_key_on_azure():
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "WEBSITE_HOSTNAME": "func-upgrader.azurewebsites.net",
        "NOTIFICATION_FUNCTION_KEY": "k3y/with+chars==",
        "NOTIFICATION_CLIENT_STATE": "sixteen-chars-at-least",
    }
    settings = Settings.from_env(env)
    assert settings.notification_url == "https://func-upgrader.azurewebsites.net/api/notifications?code=k3y%2Fwith%2Bchars%3D%3D"
    with pytest.raises(ConfigError, match="NOTIFICATION_CLIENT_STATE") as short:
        Settings.from_env({**env, "NOTIFICATION_CLIENT_STATE": "tiny-s3c"})
    assert "tiny-s3c" not in str(short.value)  # a secret, even a bad one, stays out of messages
    assert "k3y" not in repr(settings) and "sixteen-chars" not in repr(settings)  # and out of reprs
    with pytest.raises(ConfigError, match="NOTIFICATION_URL") as bad:
        Settings.from_env({**env, "NOTIFICATION_URL": "not-a-url?code=secret"})
    assert "secret" not in str(bad.value)
