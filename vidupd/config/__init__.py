"""The configuration: one TOML file read into frozen values (`model`) by `loader`, through the
key definitions of `options` (and each provider's `Option`s), which `reference` renders into
docs/CONFIG.md.

Everything above this layer (intake, engine, service, cli) reads these values and never the
TOML itself; a problem found here names the file and the key (`FILE: KEY: what is wrong`), and
`check-config` reports every problem `run` would refuse (provider options are checked with
their own Option constraints, not a second time by the provider).
"""

from .loader import default_path, load
from .model import (AFTER_UPLOAD, DEFAULT_EXCLUDES, DEFAULT_PATH, LEVELS, STOP_TIMEOUT, WATCH_KINDS, Config,
                    ConfigError, Problem, TargetConfig, WatchConfig)

__all__ = ["AFTER_UPLOAD", "DEFAULT_EXCLUDES", "DEFAULT_PATH", "LEVELS", "STOP_TIMEOUT", "WATCH_KINDS", "Config",
           "ConfigError", "Problem", "TargetConfig", "WatchConfig", "default_path", "load"]
