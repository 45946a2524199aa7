"""The state file `<stem>.corralstate`: round trip, mode 0600, clear errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from corral.install.cluster_pki import ensure_pki
from corral.install.state import (
    NodeState,
    StateError,
    load_state,
    new_state,
    save_state,
    state_path,
)
from tests.support.install_cluster import desired


def test_state_round_trips_with_nodes_secrets_and_pki(tmp_path: Path) -> None:
    """What is saved is what is loaded: nodes, CA, admin password and token."""
    cluster = desired(tmp_path / "rancher-cluster.yml")
    pki, _ = ensure_pki(cluster, None)
    state = new_state(cluster, pki, tmp_path / "base").with_node(
        NodeState("node-1", "127.0.77.1", "127.0.77.1", ("etcd",), {"etcd": "abc"})
    )
    path = state_path(cluster)
    saved = save_state(path, state)
    loaded = load_state(path)
    assert loaded == saved
    assert loaded.nodes["node-1"].services == {"etcd": "abc"}
    assert loaded.pki.ca.key_pem == pki.ca.key_pem


def test_state_file_is_named_after_the_cluster_file_and_private(tmp_path: Path) -> None:
    """`rancher-cluster.corralstate` beside the cluster file, mode 0600."""
    cluster = desired(tmp_path / "rancher-cluster.yml")
    pki, _ = ensure_pki(cluster, None)
    path = state_path(cluster)
    save_state(path, new_state(cluster, pki, tmp_path))
    assert path == tmp_path / "rancher-cluster.corralstate"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_missing_state_file_means_a_new_cluster(tmp_path: Path) -> None:
    """No file: None (nothing built yet)."""
    assert load_state(tmp_path / "x.corralstate") is None


def test_a_broken_state_file_names_the_file_and_the_way_out(tmp_path: Path) -> None:
    """Garbage in the state file: an error naming it, and what to do."""
    path = tmp_path / "x.corralstate"
    path.write_text("{not json")
    with pytest.raises(StateError) as caught:
        load_state(path)
    assert str(path) in str(caught.value)
    assert "backup" in str(caught.value) and "move it aside" in str(caught.value)


def test_new_state_has_fresh_secrets_each_time(tmp_path: Path) -> None:
    """Two new clusters never share the admin password or the etcd token."""
    cluster = desired(tmp_path / "c.yml")
    pki, _ = ensure_pki(cluster, None)
    one, two = new_state(cluster, pki, tmp_path), new_state(cluster, pki, tmp_path)
    assert one.admin_password != two.admin_password
    assert one.etcd_token != two.etcd_token
    assert len(one.admin_password) >= 20
