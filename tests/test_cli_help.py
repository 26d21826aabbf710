"""`--help` says what every flag and subcommand is for (issue 12, point 8): the parser is walked
and any option, positional argument or subcommand without a help text fails the test."""

from __future__ import annotations

import argparse

from helpers import vidupd

from vidupd.cli.main import build_parser


def walk(parser: argparse.ArgumentParser, path: str = "vidupd"):
    """(where, action) for every action of the parser and its subparsers."""
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    yield f"{path} {name}", None  # a subcommand without help
                yield from walk(sub, f"{path} {name}")


def test_every_flag_and_subcommand_has_a_help_text():
    missing = []
    for where, action in walk(build_parser()):
        if action is None:
            missing.append(f"{where}: the subcommand")
        elif not action.help or action.help == argparse.SUPPRESS:
            missing.append(f"{where}: {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "no help= text: " + ", ".join(missing)


def test_the_walk_sees_the_sandbox_flags():
    seen = {opt for where, a in walk(build_parser()) if a is not None and where == "vidupd sandbox"
            for opt in a.option_strings}
    assert {"--fail-rate", "--seed", "--oss-signature"} <= seen


def test_help_shows_them():
    out = vidupd("upload", "--help")
    assert out.returncode == 0 and "the [targets.NAME] to upload to" in out.stdout
