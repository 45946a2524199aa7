"""The `corral ingress` file: load and fully check it, and write a model back as that YAML.

Every problem names file, line, key and fix; `ingress_yaml` writes what `load_ingress_config`
reads back to an equal model (durations as `30s`, keys in the documented order).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from corral.config.errors import ConfigError, Problem
from corral.config.ingress import IngressConfig, to_lb_config
from corral.config.lb import LbConfig
from corral.config.loader import Loaded, load_model

_DURATION_KEYS = frozenset({"proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"})
_HEADER = "# corral ingress --config <this file>   (keys: docs/ingress.md)\n"


def load_ingress_config(path: str | Path) -> IngressConfig:
    """The validated configuration, or ConfigError listing every problem found."""
    loaded = load_model(path, IngressConfig)
    problems = _log_problems(loaded)
    if problems:
        raise ConfigError(problems)
    return loaded.model


def load_ingress_as_lb(path: Path) -> LbConfig:
    """The engine configuration of an ingress file (what a reload reads)."""
    return to_lb_config(load_ingress_config(path))


def ingress_yaml(config: IngressConfig) -> str:
    """The YAML text of `config`, as `corral ingress --config` reads it."""
    data: dict[str, Any] = config.model_dump(mode="json")
    for key in _DURATION_KEYS:
        data[key] = _duration(data[key])
    check = data["health_check"]
    for key in ("interval", "timeout"):
        check[key] = _duration(check[key])
    return _HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _duration(seconds: float) -> str:
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _log_problems(loaded: Loaded[IngressConfig]) -> list[Problem]:
    target = loaded.model.access_log
    if target in ("off", "stdout"):
        return []
    directory = Path(target).parent
    if not directory.is_dir() or not os.access(directory, os.W_OK):
        return [
            loaded.problem(
                ("access_log",),
                f"cannot write the access log in {directory} (missing or not writable)",
                'create the directory, or use "stdout" or "off"',
            )
        ]
    return []
