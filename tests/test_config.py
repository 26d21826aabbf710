"""check-config: every broken config exits 2 naming its key; good ones pass; secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import vidupd

from vidupd.cli.main import main
from vidupd.config import ConfigError, load
from vidupd.core.secrets import Secret

CORPUS = sorted((Path(__file__).parent / "configs" / "bad").glob("*.toml"))


def materialise(src: Path, root: Path) -> Path:
    (root / "outbox").mkdir(exist_ok=True)
    (root / "dest").mkdir(exist_ok=True)
    out = root / src.name
    out.write_text(src.read_text().replace("@ROOT@", str(root)))
    return out


def expected_key(src: Path) -> str:
    first = src.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ").strip()


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("src", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_config_exits_2_naming_the_key(src: Path, tmp_path: Path, capsys):
    path = materialise(src, tmp_path)
    assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    key = expected_key(src)
    assert f"{path}: {key}: " in err, err


def test_exit_code_through_the_real_command(tmp_path: Path):
    path = materialise(CORPUS[0], tmp_path)
    out = vidupd("check-config", "-c", str(path))
    assert out.returncode == 2 and f"{path}: wokers: unknown key" in out.stderr
    assert "did you mean 'workers'" in out.stderr


def good_config(root: Path, secret_line: str = 'access_token = "inline-token-123"') -> Path:
    (root / "outbox").mkdir(exist_ok=True)
    cfg = root / "good.toml"
    cfg.write_text(f"""
state_dir = "{root}/state"
workers = 3
max_rate = "20M"
[targets.yk]
provider = "youku"
client_id = "cid"
{secret_line}
[[watch]]
path = "{root}/outbox"
targets = ["yk"]
after_upload = "move"
move_to = "{root}/done"
""")
    return cfg


def test_good_config_loads_with_secrets_hidden(tmp_path: Path):
    cfg = load(good_config(tmp_path))
    token = cfg.targets["yk"].settings["access_token"]
    assert isinstance(token, Secret) and token.reveal() == "inline-token-123"
    assert "inline-token-123" not in repr(cfg) and "inline-token-123" not in str(token)
    assert cfg.max_rate.rate_at(0) == 20_000_000 and cfg.workers == 3
    assert main(["check-config", "-c", str(tmp_path / "good.toml")]) == 0


def test_secret_from_env_file_and_credential(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("YK_TOKEN", "from-env-456")
    assert load(good_config(tmp_path, 'access_token = { env = "YK_TOKEN" }')).targets["yk"].settings[
        "access_token"].reveal() == "from-env-456"
    f = tmp_path / "token"
    f.write_text("from-file-789\n")
    f.chmod(0o600)
    cfg = load(good_config(tmp_path, f'access_token = {{ file = "{f}" }}'))
    assert cfg.targets["yk"].settings["access_token"].reveal() == "from-file-789" and not cfg.warnings
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "yk").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load(good_config(tmp_path, 'access_token = { credential = "yk" }'))
    assert cfg.targets["yk"].settings["access_token"].reveal() == "from-credential"


def test_world_readable_secret_file_warns_but_loads(tmp_path: Path, capsys):
    f = tmp_path / "token"
    f.write_text("loose-token")
    f.chmod(0o644)
    path = good_config(tmp_path, f'access_token = {{ file = "{f}" }}')
    assert main(["check-config", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "targets.yk.access_token.file" in err and "readable by others" in err
    assert "loose-token" not in err


def test_all_problems_reported_at_once(tmp_path: Path):
    (tmp_path / "outbox").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/s"\nworkers = 0\nbogus = 1\n[targets.a]\nprovider = "directory"\n'
                   f'dest = "{tmp_path}/d"\n[[watch]]\npath = "{tmp_path}/outbox"\ntargets = ["a"]\nkind = "film"\n')
    with pytest.raises(ConfigError) as e:
        load(cfg)
    keys = {p.key for p in e.value.problems}
    assert {"workers", "bogus", "watch[0].kind"} <= keys


def test_vidupd_config_env_is_the_default(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VIDUPD_CONFIG", str(good_config(tmp_path)))
    assert main(["check-config"]) == 0


def test_missing_config_file(tmp_path: Path, capsys):
    assert main(["check-config", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
