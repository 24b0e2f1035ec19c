"""Which peers may say a request came over TLS (registry/web/forwarded.py), and the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.settings import SettingsError, load_settings
from registry.web.forwarded import DEFAULT_FORWARDED_ALLOW_IPS, TrustedProxies

HTTPS = ["https"]


def test_by_default_only_a_proxy_on_this_host_is_believed() -> None:
    proxies = TrustedProxies.parse(DEFAULT_FORWARDED_ALLOW_IPS)
    assert proxies.over_tls("http", "127.0.0.1", HTTPS)
    assert proxies.over_tls("http", "::1", HTTPS)
    assert proxies.over_tls("http", "::ffff:127.0.0.1", HTTPS)  # a dual-stack listener's peer
    assert not proxies.over_tls("http", "127.0.0.2", HTTPS)
    assert not proxies.over_tls("http", "10.1.2.3", HTTPS)
    assert not proxies.over_tls("http", None, HTTPS)
    assert not proxies.over_tls("http", "127.0.0.1", [])
    assert not proxies.over_tls("http", "127.0.0.1", ["http"])


def test_networks_and_any_peer() -> None:
    proxies = TrustedProxies.parse(" 10.0.0.0/8 , 2001:db8::/32,")
    assert proxies.over_tls("http", "10.200.0.7", ["HTTPS"])
    assert proxies.over_tls("http", "2001:db8::5", HTTPS)
    assert not proxies.over_tls("http", "127.0.0.1", HTTPS)
    assert not proxies.over_tls("http", "not-an-address", HTTPS)
    anyone = TrustedProxies.parse("*")
    assert anyone.over_tls("http", "203.0.113.9", HTTPS) and anyone.over_tls("http", None, HTTPS)


def test_the_nearest_proxys_value_counts() -> None:
    proxies = TrustedProxies.parse("127.0.0.1")
    assert proxies.over_tls("http", "127.0.0.1", ["http, https"])
    assert not proxies.over_tls("http", "127.0.0.1", ["https, http"])
    assert not proxies.over_tls("http", "127.0.0.1", ["https", "http"])


def test_tls_to_this_server_needs_no_proxy() -> None:
    assert TrustedProxies().over_tls("https", "198.51.100.1", [])


@pytest.mark.parametrize("value", ["10.0.0.300", "localhost", "10.0.0.0/33"])
def test_a_bad_entry_is_refused_at_start_naming_the_setting(tmp_path: Path, value: str) -> None:
    env = {"MODELYARD_FORWARDED_ALLOW_IPS": f"127.0.0.1,{value}"}
    with pytest.raises(SettingsError, match="MODELYARD_FORWARDED_ALLOW_IPS") as refused:
        load_settings(env, data_dir=str(tmp_path))
    assert repr(value) in str(refused.value)


def test_the_setting_reaches_the_settings(tmp_path: Path) -> None:
    env = {"MODELYARD_FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    settings = load_settings(env, data_dir=str(tmp_path))
    assert settings.trusted_proxies.trusts("10.9.9.9")
    assert not settings.trusted_proxies.trusts("127.0.0.1")
    assert load_settings({}, data_dir=str(tmp_path)).trusted_proxies.trusts("127.0.0.1")
