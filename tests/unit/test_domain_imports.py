"""The domain layer stands on the store alone: importing it loads nothing of HTTP."""

from __future__ import annotations

import subprocess
import sys

DOMAIN_MODULES = ("clock", "clusters", "credentials", "errors", "nodes", "records", "settings",
                  "tokens", "users")
PROBE = f"""
import sys
for name in {DOMAIN_MODULES!r}:
    __import__("corral.server.domain." + name)
print(sorted(m for m in sys.modules
             if m.split(".")[0] in ("starlette", "uvicorn", "pydantic")
             or m.startswith(("corral.server.api", "corral.server.auth", "corral.server.context"))))
"""


def test_domain_imports_no_http_layer() -> None:
    """No starlette, uvicorn, pydantic or corral.server.api module is loaded by the domain."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"
