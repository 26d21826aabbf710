"""Issue 8, points 5 and 6: option values out of range are refused (not clamped), by
check-config and run alike, and a value given under a secret key is never shown, whatever
its type: not by check-config, and not in the event log after a refused SIGHUP reload."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import DaemonProcess, actions, vidupd, wait_for

from vidupd import providers
from vidupd.cli.main import main
from vidupd.config import ConfigError, load
from vidupd.core.errors import PermanentError
from vidupd.providers.aliyun_vod.provider import AliyunVodProvider
from vidupd.providers.base import Option
from vidupd.providers.youku.provider import YoukuProvider

PI = "31415926535897932"  # the mistyped secret of the issue; it must never be printed


def _youku(root: Path, extra: str = "", top: str = "") -> Path:
    (root / "outbox").mkdir(exist_ok=True)
    cfg = root / "yk.toml"
    cfg.write_text(f'state_dir = "{root}/state"\n{top}[log]\nevents = "{root}/events.jsonl"\n'
                   f'[targets.yk]\nprovider = "youku"\nclient_id = "cid"\napi_base = "http://127.0.0.1:9"\n'
                   f'access_token = "tok-123456"\n{extra}\n[[watch]]\npath = "{root}/outbox"\ntargets = ["yk"]\n')
    return cfg


def _problems(cfg: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as e:
        load(cfg)
    return {p.key: p.message for p in e.value.problems if not p.warning}


def test_option_check_messages_and_canonical_choice():
    assert Option(str, "all", choices=("all", "friend")).check("Friend") == ("friend", None)
    assert Option(str, choices=("a", "b")).check("c")[1] == "must be one of a, b, not 'c'"
    assert Option(int, minimum=1, maximum=64).check(0)[1] == "must be between 1 and 64, not 0"
    assert Option(float, positive=True).check(0.0)[1] == "must be greater than 0, not 0.0"
    assert Option(float, minimum=0).check(-1.5)[1] == "must be at least 0, not -1.5"
    assert Option(int, minimum=1).check(7) == (7, None)
    assert Option(str, secret=True, choices=("x",)).check(PI)[1] == "must be one of x"  # never the value


def test_the_values_of_the_issue_are_refused_all_at_once(tmp_path: Path):
    problems = _problems(_youku(tmp_path, 'slice_concurrency = 0\nrequest_timeout = 0\nready_timeout = -5\n'
                                          'copyright_type = "stolen"\npublic_type = "nobody"\nconfirm_wait = 0\n'))
    assert problems == {
        "targets.yk.slice_concurrency": "must be between 1 and 64, not 0",
        "targets.yk.request_timeout": "must be greater than 0, not 0.0",
        "targets.yk.ready_timeout": "must be greater than 0, not -5.0",
        "targets.yk.copyright_type": "must be one of original, reproduced, not 'stolen'",
        "targets.yk.public_type": "must be one of all, friend, password, not 'nobody'",
        "targets.yk.confirm_wait": "must be greater than 0, not 0.0",
    }


def test_run_refuses_too(tmp_path: Path):
    cfg = _youku(tmp_path, 'copyright_type = "stolen"\n')
    out = vidupd("run", "-c", str(cfg), timeout=30)
    assert out.returncode == 2, out
    assert f"{cfg}: targets.yk.copyright_type: must be one of original, reproduced" in out.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_a_choice_in_other_case_is_stored_as_declared(tmp_path: Path):
    cfg = load(_youku(tmp_path, 'copyright_type = "Reproduced"\n'))
    assert cfg.targets["yk"].settings["copyright_type"] == "reproduced"  # what Youku's create accepts


def test_retry_max_backoff_below_initial_is_refused_not_raised(tmp_path: Path):
    problems = _problems(_youku(tmp_path, top="[retry]\ninitial_backoff = 10.0\nmax_backoff = 1.0\n"))
    assert problems == {"retry.max_backoff": "must not be less than initial_backoff (10)"}
    cfg = load(_youku(tmp_path, top="[retry]\ninitial_backoff = 600.0\n"))
    assert cfg.retry.maximum == 600.0  # the default cap (300) follows a longer initial wait


def test_every_numeric_or_listed_option_declares_its_constraint():
    """A new numeric option without a range, or a `a | b` option without choices, is the
    defect of issue 8 again: it would pass check-config and fail (or be bent) later."""
    for name in providers.names():
        for key, spec in providers.provider_class(name).options.items():
            kinds = spec.type if isinstance(spec.type, tuple) else (spec.type,)
            if int in kinds or float in kinds:
                assert spec.minimum is not None or spec.positive, f"{name}.{key} has no range"
            if " | " in spec.help:
                assert spec.choices, f"{name}.{key} lists values but declares no choices"


def test_providers_built_without_the_loader_refuse_rather_than_clamp(tmp_path: Path):
    base = {"client_id": "c", "access_token": "t"}
    with pytest.raises(PermanentError, match="slice_concurrency must be between 1 and 64"):
        YoukuProvider("yk", {**base, "slice_concurrency": 0}, tmp_path)
    with pytest.raises(PermanentError, match="request_timeout must be greater than 0"):
        YoukuProvider("yk", {**base, "request_timeout": 0}, tmp_path)
    vod = {"access_key_id": "a", "access_key_secret": "b"}
    with pytest.raises(PermanentError, match="part_concurrency must be between 1 and 64"):
        AliyunVodProvider("vod", {**vod, "part_concurrency": -2}, tmp_path)
    with pytest.raises(PermanentError, match="image_type must be one of default, cover"):
        AliyunVodProvider("vod", {**vod, "image_type": "poster"}, tmp_path)


SECRET_VALUES = [
    PI,  # an unquoted number: the issue
    f"{PI}.5",
    f'["{PI}"]',
    f"[{PI}]",
    f'{{ value = "{PI}" }}',
    f'{{ "{PI}" = 1 }}',  # a secret pasted as a key
    f"{{ env = {PI} }}",
    f"{{ file = [{PI}] }}",
    f"{{ credential = {PI} }}",
    f"{{ env = {PI}, file = {PI} }}",
    f"{PI[:4]}-05-27",  # a TOML date
]


@pytest.mark.parametrize("value", SECRET_VALUES)
def test_check_config_never_shows_a_secret_value(tmp_path: Path, value: str, capsys):
    cfg = _youku(tmp_path, f"client_secret = {value}\n")
    assert main(["check-config", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: targets.yk.client_secret" in err, err
    assert PI not in err and PI[:4] not in err.replace(str(tmp_path), ""), err


def test_a_boolean_secret_is_not_shown_either(tmp_path: Path, capsys):
    cfg = _youku(tmp_path, "client_secret = true\n")
    assert main(["check-config", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "targets.yk.client_secret: must be a string, not true or false" in err and "True" not in err, err


def test_refused_reload_does_not_write_the_secret_into_the_event_log(tmp_path: Path):
    cfg = _youku(tmp_path)
    good = cfg.read_text()
    events = tmp_path / "events.jsonl"
    d = DaemonProcess(cfg, events)
    with d.start():
        cfg.write_text(good.replace('access_token = "tok-123456"',
                                    f'access_token = "tok-123456"\nclient_secret = {PI}'))
        d.signal(signal.SIGHUP)
        (failed,) = wait_for(lambda: actions(events, "daemon.reload_failed"), 20, what="daemon.reload_failed")
        assert any(": targets.yk.client_secret: must be a string, not an integer" in p
                   for p in failed["vidupd.problems"]), failed
        assert d.stop() == 0
    log = events.read_text()
    assert PI not in log and PI not in d.stderr()


def test_the_sandbox_config_still_loads(tmp_path: Path):
    """The generated sandbox config must pass the new checks (it is what users try first)."""
    from vidupd.sandbox.app import start_sandbox
    from vidupd.sandbox.common import SandboxOptions

    box = start_sandbox(tmp_path / "box", SandboxOptions())
    try:
        assert main(["check-config", "-c", str(box.config)]) == 0
    finally:
        box.shutdown()



def test_password_videos_send_the_watch_password_and_never_show_it(tmp_path: Path):
    """public_type = "password" goes with a watch_password (a secret): it reaches Youku's
    create call, and nothing else."""
    from vidupd.core.content import ContentHash
    from vidupd.core.model import FileIdentity, Metadata
    from vidupd.core.secrets import Secret
    from vidupd.ledger import Ledger, LedgerShared
    from vidupd.providers.base import UploadRequest

    ledger = Ledger(tmp_path / "state")
    p = YoukuProvider("yk", {"client_id": "c", "access_token": "t", "public_type": "password",
                             "watch_password": Secret("s3cret-watch-pw")}, tmp_path, LedgerShared(ledger))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x" * 10)
    request = UploadRequest(1, clip, "video", FileIdentity.of(clip.stat()), ContentHash("md5", "0" * 32),
                            Metadata(title="t"))
    assert p.create_params(request)["watch_password"] == "s3cret-watch-pw"
    assert "s3cret-watch-pw" not in repr(p.config)
    p.close()
    ledger.close()
