"""The command line's own help: what a person reads before running a command."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ophthai_desktop.__main__ import main


def test_download_model_help_says_what_it_downloads_where_and_how_to_stop_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["download-model", "--help"])

    assert exited.value.code == 0
    said = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal
    for words in ("OPHTHAI_MODEL_ID", "OPHTHAI_MODEL_PATH", "HF_HOME", "15 GB", "Ctrl-C"):
        assert words in said
    assert "Without a network" in said


@pytest.mark.parametrize(
    ("argv", "environment", "named"),
    [
        (["serve", "--port", "99999"], {}, "--port: "),
        (["serve"], {"OPHTHAI_API_PORT": "99999"}, "OPHTHAI_API_PORT: "),
    ],
    ids=["option", "environment"],
)
def test_a_port_it_cannot_take_is_named_as_the_user_gave_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environment: dict[str, str],
    named: str,
) -> None:
    """``ophthai serve --port 99999`` said "OPHTHAI_API_PORT: ..." (as given on the
    command line): a variable the user never set, not the option they typed."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in [n for n in os.environ if n.startswith("OPHTHAI_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    status = main(["--data-dir", str(tmp_path / "data"), *argv])

    said = capsys.readouterr().err
    assert status == 2
    assert f"ophthai serve: {named}" in said
    assert "less than or equal to 65535" in said
    if environment:
        assert "--port" not in said
    else:
        assert "OPHTHAI_API_PORT" not in said
