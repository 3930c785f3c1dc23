"""Identity-based AzureWebJobsStorage__* settings: queues and tables reached with managed-identity
tokens (Azurite with OAuth over HTTPS), the local host's triggers included."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devtools.azurite import Azurite
from shared import bootstrap
from tests.support import Api, group_chats, org_app, people, start_host


def self_signed(directory) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory):
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    with Azurite(oauth_cert=(cert, key)) as instance:
        yield instance, cert


def test_a_run_works_with_identity_based_storage_settings(app_env, oauth_azurite, identity, tenant, emulator):
    azurite, cert = oauth_azurite
    client_id = "5a1b2c3d-0000-4000-8000-00000000abcd"
    identity.user_assigned.add(client_id)
    app_env.delenv("AzureWebJobsStorage")
    app_env.setenv("AzureWebJobsStorage__queueServiceUri", azurite.queue_url)
    app_env.setenv("AzureWebJobsStorage__tableServiceUri", azurite.table_url)
    app_env.setenv("AzureWebJobsStorage__credential", "managedidentity")
    app_env.setenv("AzureWebJobsStorage__clientId", client_id)
    app_env.setenv("REQUESTS_CA_BUNDLE", cert)  # trust the emulator's self-signed certificate
    bootstrap.reset()
    app = org_app(tenant)
    chats = group_chats(tenant, people(tenant, 2), 2, {app.id: "1.0.0"})

    host = start_host()
    try:
        api = Api(host.base_url)
        status = api.wait(api.start(teamsAppId=app.id, chatIds=[c.id for c in chats]))
    finally:
        host.stop()

    assert status["counts"]["upgraded"] == 2
    storage_tokens = [r for r in identity.requests if r.get("resource") == "https://storage.azure.com"]
    assert storage_tokens and all(r.get("client_id") == client_id for r in storage_tokens)
