"""The command line: `vidupd run`, the one-shot commands and the sandbox launcher.

The top layer: it reads the config, opens the ledger and starts the service or a one-shot
upload (`oneshot`), and is the only place that prints. `main` is the console script.
"""

from .main import main

__all__ = ["main"]
