"""Broker URLs with TLS options (issue 10, case 8): ``mqtts://user@host:port?ca=&cert=&key=&insecure=1``."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from delgrad.errors import ConfigError
from delgrad.protocols import parse_broker_url, transport_from_url


def test_tls_options_on_the_url() -> None:
    addr = parse_broker_url(
        "mqtts://dev1@broker.lan:8884?ca=/etc/ca.pem&cert=/etc/dev1.pem&key=/etc/dev1.key",
        env={"DELGRAD_MQTT_PASSWORD": "pw"},
    )
    assert (addr.host, addr.port, addr.username, addr.password) == (
        "broker.lan",
        8884,
        "dev1",
        "pw",
    )
    assert (addr.tls_ca_file, addr.tls_cert_file, addr.tls_key_file) == (
        "/etc/ca.pem",
        "/etc/dev1.pem",
        "/etc/dev1.key",
    )
    assert not addr.tls_insecure
    assert "pw" not in addr.url and "ca=/etc/ca.pem" in addr.url
    assert parse_broker_url("mqtts://h?insecure=1").tls_insecure


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mqtt://h?ca=/x.pem", "mqtts"),
        ("mqtts://h?color=red", "unknown query option"),
        ("mqtts://h?ca=a&ca=b", "twice"),
        ("mqtts://h?key=/k", "needs cert"),
        ("mqtts://h?insecure=maybe", "insecure"),
        ("mqtts://h?ca=", "needs a path"),
        ("mqtts://h/path", "path"),
    ],
)
def test_bad_tls_options_are_refused(url: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        parse_broker_url(url)


def test_insecure_context_checks_nothing_and_default_checks_host() -> None:
    insecure = transport_from_url("mqtts://h?insecure=1", client_id=None)
    assert insecure.tls is not None and insecure.tls.verify_mode == ssl.CERT_NONE
    strict = transport_from_url("mqtts://h", client_id=None)
    assert strict.tls is not None and strict.tls.check_hostname


def test_config_tls_settings_fill_what_the_url_leaves_out(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):  # the config's CA file is used
        transport_from_url("mqtts://h", client_id=None, tls_ca_file=str(tmp_path / "no.pem"))
