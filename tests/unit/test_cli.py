"""The `corral` command's top level."""

import subprocess

from tests.support.procs import corral_argv


def test_version_prints_corral_version() -> None:
    """`corral --version` prints `corral version vX.Y.Z`."""
    out = subprocess.run(corral_argv("--version"), capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("corral version v0.")
