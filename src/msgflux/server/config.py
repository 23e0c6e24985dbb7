"""The server's config file: YAML, strict, environment-expanded, validated before anything runs.

A config mirrors the library: one entry per gateway name under ``gateways:`` holding
``ModelGateway``'s options and, under ``models:``, its deployment dicts (plus ``base_url``,
``api_key`` and the model's own parameters such as ``temperature``). A ``server:`` section holds
the process settings and the client keys::

    gateways:
      fake:                       # the name clients send as "model"
        models:
          - model_name: up
            model: openai_compatible/fake
            base_url: http://127.0.0.1:8000/v1

Strict means an unknown key is an error naming its path and the closest valid key
(``gateways.chat.models[1].timout: unknown key; did you mean 'timeout'?``), a duplicated key is
an error, and every value is checked. ``${VAR}`` and ``${VAR:-default}`` in a value read the
environment (``$${`` is a literal ``${``); a missing variable fails naming it. A value that is a
single reference takes the type YAML would give the variable's text (``port: ${PORT}`` is an
int) except where the key is text (keys, URLs, names), where it stays text.

:func:`load_config` returns a frozen :class:`ServerConfig`; :mod:`msgflux.server.runtime` turns
it into gateways. Nothing here opens a connection or reads a key file beyond the config itself.

This module is the entry point and the public names; the work is done by

* :mod:`~msgflux.server.config_yaml`: the file, strict YAML and ``${VAR}`` expansion;
* :mod:`~msgflux.server.config_checks`: :class:`ConfigError` and the field checks (shared with
  :mod:`~msgflux.server.key_limits`);
* :mod:`~msgflux.server.config_build`: what each section may hold, and building the specs;
* :mod:`~msgflux.server.config_specs`: the frozen specs and :func:`plan`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from msgflux.server.config_build import GATEWAY_TYPES as GATEWAY_TYPES
from msgflux.server.config_build import build_config
from msgflux.server.config_build import model_parameters as model_parameters
from msgflux.server.config_checks import ConfigError as ConfigError
from msgflux.server.config_specs import DEFAULT_HOST as DEFAULT_HOST
from msgflux.server.config_specs import DEFAULT_MAX_BODY_BYTES as DEFAULT_MAX_BODY_BYTES
from msgflux.server.config_specs import DEFAULT_PORT as DEFAULT_PORT
from msgflux.server.config_specs import DEFAULT_SHUTDOWN_GRACE as DEFAULT_SHUTDOWN_GRACE
from msgflux.server.config_specs import DeploymentSpec as DeploymentSpec
from msgflux.server.config_specs import GatewaySpec as GatewaySpec
from msgflux.server.config_specs import KeySpec as KeySpec
from msgflux.server.config_specs import ServerConfig
from msgflux.server.config_specs import ServerSettings as ServerSettings
from msgflux.server.config_specs import is_loopback as is_loopback
from msgflux.server.config_specs import plan as plan
from msgflux.server.config_yaml import expand, load_yaml, read_file
from msgflux.server.config_yaml import yaml as yaml

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_GRACE",
    "GATEWAY_TYPES",
    "ConfigError",
    "DeploymentSpec",
    "GatewaySpec",
    "KeySpec",
    "ServerConfig",
    "ServerSettings",
    "is_loopback",
    "load_config",
    "parse_config",
    "plan",
]


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ServerConfig:
    """Read, expand and validate the YAML file at ``path`` (raises :class:`ConfigError`)."""
    return parse_config(read_file(path), env, source=str(Path(path)))


def parse_config(
    text: str, env: Mapping[str, str] | None = None, *, source: str = "<config>"
) -> ServerConfig:
    """Validate a config given as YAML text (see :func:`load_config`)."""
    data = expand(load_yaml(text, source), "", os.environ if env is None else env)
    return build_config(data, source)
