"""TLS and trusted proxies on a real server: HTTPS with a certificate made here, one-line errors
for a bad TLS setup, and X-Forwarded-For believed only from a proxy in `forwarded_allow_ips`."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rawevents.ingest.events import ip_distinct_id
from tests.export.helpers import basic
from tests.live_server import LiveServer, free_port, serve_command

NOW = int(time.time())
DAY = time.strftime("%Y-%m-%d", time.gmtime(NOW))
PROXIED_CLIENT = "203.0.113.9"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class HttpsServer(LiveServer):
    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpsServer, Path]]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(directory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # every request of this module trusts it
        server = HttpsServer(
            directory / "data",
            env={"RAWEVENTS_INGEST_PROCESSES": "0", "RAWEVENTS_SSL_KEYFILE": str(key)},
            args=["--ssl-certfile", str(cert), "--forwarded-allow-ips", "192.0.2.1"],
        ).start()
        yield server, cert
        server.stop()


def test_https_with_a_self_signed_certificate(tls: tuple[HttpsServer, Path]) -> None:
    server, cert = tls
    response = requests.get(server.base_url + "/healthz", verify=str(cert), timeout=30)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert requests.get(server.base_url + "/readyz", verify=str(cert), timeout=30).status_code == 200
    with requests.Session() as untrusting, pytest.raises(requests.exceptions.SSLError):
        untrusting.trust_env = False  # the system's CAs only: they do not vouch for this certificate
        untrusting.get(server.base_url + "/healthz", timeout=30)
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on that port
        requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=30)
    assert f"listening on https://127.0.0.1:{server.port}" in server.log_text()


def stored_distinct_id(live: LiveServer, headers: dict[str, str]) -> str:
    """Import one event without distinct_id (derived from the client IP), export it back."""
    project = live.create_project("proxy")
    body = orjson.dumps([{"event": "e", "properties": {"time": NOW}}])
    auth = basic(project.api_secret)
    assert live.post("/import", data=body, headers={**auth, **headers}).text == "1"
    exported = live.get(f"/api/2.0/export?from_date={DAY}&to_date={DAY}", headers=auth)
    [line] = exported.text.splitlines()
    return str(orjson.loads(line)["properties"]["distinct_id"])


def test_forwarded_for_from_a_trusted_proxy_gives_the_client_ip(fresh_server: LiveServer) -> None:
    # Default forwarded_allow_ips: 127.0.0.1, which is where this test connects from.
    forwarded = {"X-Forwarded-For": f"{PROXIED_CLIENT}, 127.0.0.1"}
    assert stored_distinct_id(fresh_server, forwarded) == ip_distinct_id(PROXIED_CLIENT)
    assert f"{PROXIED_CLIENT}:0 - " in fresh_server.log_text()  # the access line shows the client too


def test_real_ip_alone_from_a_trusted_proxy_gives_the_client_ip(fresh_server: LiveServer) -> None:
    assert stored_distinct_id(fresh_server, {"X-Real-IP": PROXIED_CLIENT}) == ip_distinct_id(PROXIED_CLIENT)


def test_forwarded_for_from_anyone_else_is_ignored(tls: tuple[HttpsServer, Path]) -> None:
    server, _ = tls  # trusts only 192.0.2.1
    spoofed = {"X-Forwarded-For": PROXIED_CLIENT, "X-Real-IP": PROXIED_CLIENT}
    assert stored_distinct_id(server, spoofed) == ip_distinct_id("127.0.0.1")
    assert PROXIED_CLIENT not in server.log_text()


@pytest.mark.server
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--ssl-keyfile", "key.pem"],
            "rawevents: setting ssl_keyfile needs ssl_certfile (the certificate) too",
        ),
        (
            ["--ssl-certfile", "missing.pem"],
            "rawevents: settings ssl_certfile/ssl_keyfile: cannot load missing.pem:"
            " No such file or directory",
        ),
    ],
)
def test_a_bad_tls_setup_fails_at_start_in_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    command = serve_command("--data-dir", str(tmp_path / "data"), "--port", str(free_port()), *flags)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == message
