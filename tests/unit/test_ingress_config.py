"""`corral ingress` configuration: defaults from Rancher's Ingress template, its translation to
the engine's LbConfig, the YAML round trip, and the installer's per-node configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from corral.config.errors import ConfigError
from corral.config.ingress import (
    HEALTH_PATH,
    UPSTREAM_NAME,
    IngressConfig,
    to_lb_config,
)
from corral.config.ingress_load import ingress_yaml
from corral.config.loader import parse_model
from corral.install.desired import (
    DesiredCluster,
    IngressSettings,
    NodeSpec,
    ServerSettings,
)
from corral.install.ingress_file import IngressSettingsError, ingress_config_for

SERVERS = ["10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080"]


def minimal(**extra: object) -> IngressConfig:
    data = {"host": "rancher.example.com", "upstreams": SERVERS, **extra}
    return IngressConfig.model_validate(data)


def test_defaults_are_the_templates_annotations() -> None:
    """Without keys: :80, connect 30 s, read and send 1800 s, no redirect, one worker."""
    config = minimal()
    assert config.address == ("0.0.0.0", 80)
    assert config.proxy_connect_timeout == 30.0
    assert config.proxy_read_timeout == 1800.0
    assert config.proxy_send_timeout == 1800.0
    assert config.ssl_redirect is False
    assert config.workers == 1
    assert config.trusted_proxies == []


def test_translation_to_the_engine() -> None:
    """One plain-HTTP server for the host → the `rancher` upstream with /healthz checks."""
    lb = to_lb_config(minimal(trusted_proxies=["10.0.0.100"], workers=2, access_log="off"))
    (server,) = lb.servers
    assert server.tls is None and server.redirect is None
    assert server.address == ("0.0.0.0", 80)
    assert server.names == ["rancher.example.com"]
    assert server.proxy_pass == UPSTREAM_NAME
    assert (server.read_timeout, server.send_timeout) == (1800.0, 1800.0)
    upstream = lb.upstreams[UPSTREAM_NAME]
    assert upstream.servers == SERVERS
    assert upstream.connect_timeout == 30.0
    assert upstream.health_check is not None and upstream.health_check.path == HEALTH_PATH
    assert lb.trusted_proxies == ["10.0.0.100"]
    assert lb.worker_count == 2
    assert lb.access_log == "off"


def test_annotation_values_as_the_template_writes_them() -> None:
    """The annotations' strings ("30", "1800") and unit forms ("15m") are durations."""
    config = minimal(proxy_connect_timeout="30", proxy_read_timeout="15m", proxy_send_timeout=60)
    lb = to_lb_config(config)
    assert lb.upstreams[UPSTREAM_NAME].connect_timeout == 30.0
    assert lb.servers[0].read_timeout == 900.0
    assert lb.servers[0].send_timeout == 60.0


def test_health_check_keys_reach_the_engine() -> None:
    """interval/timeout/rise/fall are passed to the upstream's active check."""
    config = minimal(health_check={"interval": "1s", "timeout": "500ms", "rise": 3, "fall": 4})
    check = to_lb_config(config).upstreams[UPSTREAM_NAME].health_check
    assert check is not None
    assert (check.interval, check.timeout, check.rise, check.fall) == (1.0, 0.5, 3, 4)


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        (":8080", ("0.0.0.0", 8080)),
        (8080, ("0.0.0.0", 8080)),
        ("127.0.1.2:80", ("127.0.1.2", 80)),
        ("[::1]:80", ("::1", 80)),
    ],
)
def test_listen_forms(listen: str | int, address: tuple[str, int]) -> None:
    """`:port`, a bare port, address:port and [v6]:port all bind where they say."""
    config = minimal(listen=listen)
    assert config.address == address
    assert to_lb_config(config).servers[0].address == address


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ssl_redirect": True}, "must be false"),
        ({"host": "<FQDN>"}, "placeholder"),
        ({"host": "not a name"}, "is not a DNS name"),
        ({"upstreams": []}, "at least 1"),
        ({"upstreams": ["10.0.0.11"]}, "is not host:port"),
        ({"upstreams": ["10.0.0.11:80", "10.0.0.11:80"]}, "same server twice"),
        ({"trusted_proxies": ["10.0.0.1/8"]}, "host bits set"),
        ({"workers": 0}, "greater than or equal to 1"),
        ({"listen": ":0"}, "out of range"),
        ({"proxy_read_timeout": "soon"}, "is not a duration"),
        ({"redirect": "https://x"}, "Extra inputs"),
    ],
)
def test_bad_values_are_rejected(extra: dict[str, object], message: str) -> None:
    """Each bad key is an error that says what is wrong."""
    with pytest.raises(ValidationError) as info:
        minimal(**extra)
    assert message in str(info.value)


def test_host_is_lower_cased() -> None:
    """The Ingress host is matched case-insensitively: stored lower-case, trailing dot dropped."""
    assert minimal(host="Rancher.Example.COM.").host == "rancher.example.com"


def test_yaml_round_trip() -> None:
    """What `ingress_yaml` writes parses back to an equal configuration."""
    config = minimal(
        listen="127.0.1.3:80",
        trusted_proxies=["127.0.0.0/8", "fd00::/8"],
        proxy_read_timeout=0.25,
        health_check={"interval": "1.5s", "fall": 5},
        access_log="off",
    )
    text = ingress_yaml(config)
    assert "proxy_read_timeout: 0.25s" in text
    assert parse_model(text, IngressConfig, source="ingress.yml").model == config


def test_problems_name_the_file_and_line() -> None:
    """A bad file reports file:line: key for each problem."""
    text = "host: rancher.example.com\nupstreams: [10.0.0.11:8080]\nssl_redirect: true\n"
    with pytest.raises(ConfigError) as info:
        parse_model(text, IngressConfig, source="ingress.yml")
    (problem,) = info.value.problems
    assert str(problem).startswith("ingress.yml:3: ssl_redirect: must be false")


# -- the installer's per-node file ---------------------------------------------------------


def desired(**ingress: object) -> DesiredCluster:
    node = NodeSpec("n1", "127.0.1.1", "127.0.1.1", frozenset({"worker"}))
    return DesiredCluster(
        source=Path("cluster.yml"),
        cluster_name="local",
        provider="local",
        nodes=(node,),
        server=ServerSettings(),
        ingress=IngressSettings(host="rancher.example.com", **ingress),  # type: ignore[arg-type]
    )


def test_ingress_config_for_a_node() -> None:
    """The node listens on its own address, port 80, with the Ingress's host and timeouts."""
    cluster = desired(read_timeout_s=600.0)
    config = ingress_config_for(cluster, cluster.nodes[0], SERVERS, ["127.0.0.1"])
    assert config.address == ("127.0.1.1", 80)
    assert config.host == "rancher.example.com"
    assert config.upstreams == SERVERS
    assert config.proxy_read_timeout == 600.0
    assert config.proxy_connect_timeout == 30.0
    assert config.trusted_proxies == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("address", "internal", "bound"),
    [
        ("203.0.113.5", "10.0.0.5", ("0.0.0.0", 8080)),  # a public address the host may not hold
        ("fd00::5", "fd00::5", ("fd00::5", 8080)),
    ],
)
def test_ingress_listen_address(address: str, internal: str, bound: tuple[str, int]) -> None:
    """Distinct public/internal addresses bind every interface; IPv6 is bracketed."""
    node = NodeSpec("n2", address, internal, frozenset({"worker"}))
    config = ingress_config_for(desired(), node, SERVERS, [], port=8080)
    assert config.address == bound


def test_ingress_config_for_refuses_ssl_redirect() -> None:
    """An Ingress whose ssl-redirect annotation is "true" is refused, naming the fix."""
    cluster = desired(ssl_redirect=True)
    with pytest.raises(IngressSettingsError, match='set it to "false"'):
        ingress_config_for(cluster, cluster.nodes[0], SERVERS, [])
