"""The command line's own help: what a person reads before running a command."""

from __future__ import annotations

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
