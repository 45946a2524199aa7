"""The key-exchange groups a server `SSLContext` offers (`tls.groups`: X25519, P-256, P-384).

Python's `ssl` module offers `SSLContext.set_groups()` only from Python 3.15; before that there
is `set_ecdh_curve()`, which sets a single curve. cryptography's OpenSSL bindings no longer
expose `SSL_CTX_set1_groups_list` and link their own OpenSSL anyway, and an `OPENSSL_CONF` file
would apply to the whole process (and replace the system's OpenSSL configuration), not to one
listener. So on Pythons without `set_groups` the list is set with OpenSSL's own call,
`SSL_CTX_set1_groups_list` (a macro for `SSL_CTX_ctrl(ctx, SSL_CTRL_SET_GROUPS_LIST, 0, list)`),
through ctypes:

- the function comes from the libssl that Python's `_ssl` module is linked against (symbols are
  looked up through `_ssl`'s own handle), never from another copy of OpenSSL;
- the `SSL_CTX *` is the first field after the object header of CPython's `PySSLContext`
  (unchanged from Python 3.7 to 3.14), and it is used only after `SSL_CTX_get_options` on it
  returns the context's own `options` — any other layout refuses instead of guessing.

Where neither works (another Python implementation), `GroupsUnavailable` says so; `corral lb
--check` reports it for a configuration that needs the groups.
"""

from __future__ import annotations

import ctypes
import functools
import re
import ssl
import sys
from collections.abc import Sequence

_SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's ssl.h, 1.1.0 and later
_GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # one name: no list separators or prefixes


class GroupsUnavailable(RuntimeError):
    """This Python cannot set a server context's key-exchange groups."""


class _LibSsl:
    """The three OpenSSL functions used, from the libssl that `_ssl` is linked against."""

    def __init__(self) -> None:
        import _ssl

        path = getattr(_ssl, "__file__", None)
        if sys.implementation.name != "cpython" or not path:
            raise GroupsUnavailable(
                f"{sys.implementation.name} {sys.version.split()[0]}: Python's ssl module has no "
                "set_groups (Python 3.15+) and its OpenSSL cannot be reached here"
            )
        lib = ctypes.CDLL(path)  # dlsym on this handle searches _ssl, then libssl, libcrypto
        self.ctrl = lib.SSL_CTX_ctrl
        self.ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        self.ctrl.restype = ctypes.c_long
        self.get_options = lib.SSL_CTX_get_options
        self.get_options.argtypes = [ctypes.c_void_p]
        # uint64_t from OpenSSL 3.0, unsigned long before
        self.get_options.restype = (
            ctypes.c_uint64 if ssl.OPENSSL_VERSION_INFO[0] >= 3 else ctypes.c_ulong
        )
        self.clear_errors = lib.ERR_clear_error
        self.clear_errors.argtypes = []
        self.clear_errors.restype = None

    def context_pointer(self, context: ssl.SSLContext) -> int:
        """The `SSL_CTX *` of `context`, checked against the context's own options."""
        pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        if not pointer or self.get_options(pointer) != int(context.options):
            raise GroupsUnavailable(
                f"Python {sys.version.split()[0]}: the SSLContext does not have the layout "
                "expected; cannot set the key-exchange groups"
            )
        return pointer


@functools.cache
def _libssl() -> _LibSsl:
    return _LibSsl()


def set_groups(context: ssl.SSLContext, groups: Sequence[str]) -> None:
    """Offer exactly `groups` (OpenSSL names, most preferred first) on `context`.

    ValueError when OpenSSL rejects the list (`unknown_groups` names the culprits);
    GroupsUnavailable when this Python cannot set it at all."""
    text = ":".join(groups)
    native = getattr(context, "set_groups", None)
    if native is not None:  # Python 3.15+
        try:
            native(text)
        except ssl.SSLError as exc:
            raise ValueError(f"OpenSSL rejected the groups {text!r}: {exc}") from None
        return
    lib = _libssl()
    if lib.ctrl(lib.context_pointer(context), _SSL_CTRL_SET_GROUPS_LIST, 0, text.encode()) != 1:
        lib.clear_errors()  # leave no stale error for the next call of the ssl module
        raise ValueError(f"OpenSSL rejected the groups {text!r}")


def unknown_groups(groups: Sequence[str]) -> list[str]:
    """The names OpenSSL does not know as key-exchange groups, each tried on its own."""
    unknown = []
    for name in groups:
        if not _GROUP_NAME.fullmatch(name):
            unknown.append(name)
            continue
        try:
            set_groups(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), [name])
        except ValueError:
            unknown.append(name)
    return unknown
