"""Setting a server context's key-exchange groups (`corral.proxy.tls_groups`)."""

from __future__ import annotations

import _ssl
import ctypes
import ssl

import pytest

from corral.proxy.tls_groups import set_groups, unknown_groups


def test_unknown_groups_names_exactly_the_bad_ones() -> None:
    """Known names in any OpenSSL spelling pass; unknown names, list syntax and "" are named."""
    names = ["X25519", "P-256", "secp384r1", "prime256v1", "x448", "curve9000", "X25519:P-256", ""]
    assert unknown_groups(names) == ["curve9000", "X25519:P-256", ""]


def test_set_groups_rejects_an_unknown_name() -> None:
    """OpenSSL's refusal of the list becomes a ValueError naming it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError, match="curve9000"):
        set_groups(context, ["X25519", "curve9000"])


def test_a_refused_list_leaves_no_stale_openssl_error() -> None:
    """After a refused list OpenSSL's error queue is empty, so the ssl module's next error
    report cannot pick up the groups' one."""
    peek = ctypes.CDLL(_ssl.__file__).ERR_peek_error
    peek.restype = ctypes.c_ulong
    with pytest.raises(ValueError):
        set_groups(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ["curve9000"])
    assert peek() == 0


def test_set_groups_accepts_the_default_list() -> None:
    """The default list is set without error on a server context."""
    set_groups(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ["X25519", "P-256", "P-384"])
