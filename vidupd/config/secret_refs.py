"""Secrets given by reference in the config: `{ env = "NAME" }`, `{ file = "/path" }`,
`{ credential = "name" }` (systemd's $CREDENTIALS_DIRECTORY), and how a file holding
secrets is open to others (a config with inline secrets, a secret file): a warning."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

from ..core.secrets import Secret
from .service_keys import absolute as _abs


class SecretRefs:
    """Mixin of the loader (it provides path, read_secrets, error and warn)."""

    def _secret(self, ref: dict, key: str) -> Secret | None:
        """A secret given by reference. Nothing of the table is quoted (not even an unknown
        key: a pasted secret may be one), only which references exist."""
        unknown = [k for k in ref if k not in ("env", "file", "credential")]
        if unknown:
            close = difflib.get_close_matches(unknown[0], ["env", "file", "credential"], n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.error(key, f"a secret's table takes one of env, file or credential; it has another key{hint}")
            return None
        if len(ref) != 1:
            self.error(key, "give exactly one of env, file or credential")
            return None
        (how, name), = ref.items()
        if not isinstance(name, str) or not name:
            self.error(f"{key}.{how}", "must be a non-empty string")
            return None
        if not self.read_secrets:
            return Secret.unread(f"{how}:{name}")
        if how == "env":
            value = os.environ.get(name)
            if value is None:
                self.error(f"{key}.env", f"environment variable {name} is not set")
                return None
            return Secret(value, f"env:{name}")
        if how == "credential":
            cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
            if not cred_dir:
                self.error(f"{key}.credential", "CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)")
                return None
            path = Path(cred_dir) / name
        else:
            path = _abs(self.path.parent, name)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            self.error(f"{key}.{how}", f"cannot read secret file {path}: {e.strerror}")
            return None
        loose = exposed(path) if how == "file" else ""
        if loose:
            self.warn(f"{key}.file", f"secret file {path} {loose}; chmod 600 it")
        if not value:
            self.error(f"{key}.{how}", f"secret file {path} is empty")
            return None
        return Secret(value, f"{how}:{path}")


def exposed(path: Path) -> str:
    """How a file holding secrets is open to group/other ("is readable by others (mode 644)"),
    or "" if it is not (or cannot be looked at: reading it will say why)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return ""
    return f"is readable by others (mode {mode:o})" if mode & (stat.S_IRWXO | stat.S_IRGRP | stat.S_IWGRP) else ""
