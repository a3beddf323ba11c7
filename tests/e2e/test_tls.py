"""The gateway serves HTTPS with a configured certificate and key."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import docker
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import REPO, running_gateway

pytestmark = pytest.mark.docker


def self_signed(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "faas test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "cert.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file


def test_https(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "functions").mkdir(parents=True)
    (project / "functions" / "hello.py").write_text((REPO / "functions" / "hello.py").read_text())
    cert = self_signed(project)
    spec = project / "functions.yaml"
    spec.write_text(
        "version: 1\n"
        "gateway:\n  tls: {cert_file: cert.pem, key_file: key.pem}\n"
        "defaults:\n  auth: none\n"
        "functions:\n  hello:\n    handler: functions/hello.py\n"
    )
    with running_gateway(docker_client, spec, "tls", tmp_path) as gateway:
        url = f"https://127.0.0.1:{gateway.port}/function/hello"
        trusted = ssl.create_default_context(cafile=str(cert))
        response = httpx.get(url, verify=trusted, timeout=30, trust_env=False)
        assert response.status_code == 200
        assert response.text == "Hello, world!\n"
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https", "http"), timeout=5, trust_env=False)
        listed = gateway.cli("ls", "--json")
        assert listed.returncode == 0, listed.stderr
