"""`corral lb nginx-config`: the NGINX configuration equivalent to a corral lb file, accepted by
`nginx -t`; bad files are refused with file:line: key: message."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.doctor.harness import Pki, free_ports, lb_config, with_process_paths
from tests.support.procs import corral_argv

REPO_ROOT = Path(__file__).resolve().parents[3]


def _render(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(corral_argv("lb", "nginx-config", "--config", str(path)),
                          capture_output=True, text=True, check=False, timeout=60)


def _nginx_t(text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(with_process_paths(text, directory))
    return subprocess.run(["nginx", "-t", "-p", str(directory), "-c", str(path)],
                          capture_output=True, text=True, check=False, timeout=60)


def _every_key(pki: Pki, directory: Path) -> dict[str, Any]:
    """A corral lb file using what the renderer translates: several upstreams, least_conn,
    health checks, IPv6, trusted proxies, HSTS, response headers (one with a $), metrics,
    two servers sharing the TLS port, a 308 redirect."""
    config = lb_config([8080, 8081], pki.good, free_ports(), hide_response_headers=["Server"],
                       add_response_headers={"X-Frame-Options": "SAMEORIGIN",
                                             "X-Note": 'costs $5 "today"'})
    config.update({
        "worker_processes": "auto", "worker_rlimit_nofile": 40000, "worker_connections": 8192,
        "access_log": str(directory / "access.log"), "pid_file": str(directory / "lb.pid"),
        "trusted_proxies": ["10.0.0.0/24", "fd00::/8"], "metrics": {"listen": 9180},
        "http2": {"max_concurrent_streams": 64, "max_resets_per_second": 50},
    })
    config["upstreams"]["other"] = {
        "servers": ["127.0.0.1:9000", "[::1]:9001"], "balance": "least_conn", "keepalive": 0,
        "health_check": {"path": "/healthz", "interval": "2s"},
    }
    tls = config["servers"][0]["tls"]
    tls["hsts"] = {"max_age": "365d", "include_subdomains": True}
    tls["groups"] = ["P-256", "X25519"]
    config["servers"][0]["read_timeout"] = "1.5s"
    config["servers"].append({**config["servers"][0], "server_name": ["other.test", "alt.test"],
                              "proxy_pass": "other", "add_response_headers": {},
                              "hide_response_headers": []})
    config["servers"][1]["redirect_status"] = 308
    return config


def test_every_translated_key_renders_a_configuration_nginx_accepts(
    pki: Pki, tmp_path: Path
) -> None:
    """A file with every key the renderer translates gives a configuration `nginx -t` accepts,
    with the directives those keys became."""
    path = tmp_path / "lb.yml"
    path.write_text(yaml.safe_dump(_every_key(pki, tmp_path)))
    rendered = _render(path)
    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    checked = _nginx_t(text, tmp_path / "nginx")
    assert checked.returncode == 0, f"{checked.stderr}\n{text}"
    assert "[warn]" not in checked.stderr
    for directive in ("least_conn;", "server [::1]:9001", "ssl_ecdh_curve P-256:X25519;",
                      "return 308 https://$server_name:", "proxy_read_timeout 1500ms;",
                      "geo $corral_trusted_proxy", "proxy_hide_header Server;",
                      "add_header X-Note \"costs ${dollar}5 \\\"today\\\"\" always;",
                      "http2_max_concurrent_streams 64;", "worker_rlimit_nofile 40000;"):
        assert directive in text, directive


def test_rancher_example_renders_without_its_certificate_files() -> None:
    """examples/lb.yml (Rancher's example in corral lb's form) renders although its
    certificate paths do not exist here: nginx -t checks them where NGINX runs."""
    rendered = _render(REPO_ROOT / "examples" / "lb.yml")
    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    assert text.count("server rancher-server-") == 3
    assert "ssl_certificate /certs/fullchain.pem;" in text
    assert "return 301 https://$server_name$request_uri;" in text
    assert "are not in NGINX open source" in text  # the health checks, as a comment


def test_a_bad_file_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    """An undefined upstream and an unknown key: exit 1, each problem as file:line: key."""
    path = tmp_path / "lb.yml"
    path.write_text("servers:\n  - listen: 443\n    server_name: a.test\n    proxy_pass: nope\n"
                    "    read_timout: 900s\n")
    rendered = _render(path)
    assert rendered.returncode == 1
    assert rendered.stdout == ""
    assert f"{path}:5: servers[0].read_timout" in rendered.stderr
