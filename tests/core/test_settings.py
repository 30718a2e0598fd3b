"""Settings: prefixed names, the seed's aliases, .env files, list parsing."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.settings import (
    Settings,
    SettingsRefused,
    check_api_binding,
    is_loopback_host,
    read_settings,
)


def test_prefixed_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPHTHAI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPHTHAI_MAX_NEW_TOKENS", "77")
    monkeypatch.setenv("OPHTHAI_QUANTIZATION", "4bit")
    settings = Settings(_env_file=None)
    assert settings.data_dir == tmp_path
    assert settings.max_new_tokens == 77
    assert settings.quantization == "4bit"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.as_posix()}/ophthai.db"
    assert settings.resolved_watch_folder == tmp_path / "incoming_scans"


@pytest.mark.parametrize(
    ("seed_name", "field", "raw", "expected"),
    [
        ("DATABASE_URL", "database_url", "postgresql://u:p@h/db", "postgresql://u:p@h/db"),
        ("LOAD_MODEL_ON_STARTUP", "load_model_on_startup", "true", True),
        ("WATCH_FOLDER_ENABLED", "watch_folder_enabled", "1", True),
        ("WATCH_FOLDER_PATH", "watch_folder_path", "/srv/scans", Path("/srv/scans")),
        ("DEBUG", "debug", "true", True),
        ("CORS_ORIGINS", "cors_origins", "http://a:1,http://b:2", ["http://a:1", "http://b:2"]),
    ],
)
def test_seed_names_are_aliases(
    monkeypatch: pytest.MonkeyPatch, seed_name: str, field: str, raw: str, expected: object
) -> None:
    monkeypatch.setenv(seed_name, raw)
    assert getattr(Settings(_env_file=None), field) == expected


def test_prefixed_name_wins_over_seed_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "false")
    monkeypatch.setenv("OPHTHAI_DEBUG", "true")
    assert Settings(_env_file=None).debug is True


@pytest.mark.parametrize(
    ("bare_name", "raw", "field"),
    [
        ("DATA_DIR", "/elsewhere", "data_dir"),
        ("DEVICE", "cpu", "device"),
        ("THEME", "dark", "theme"),
        ("API_PORT", "9", "api_port"),
        ("API_TOKEN", "a-token-from-another-program", "api_token"),
        ("LOG_LEVEL", "DEBUG", "log_level"),
        ("MODEL_PATH", "/models/other", "model_path"),
    ],
)
def test_bare_field_names_are_not_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bare_name: str, raw: str, field: str
) -> None:
    # Only OPHTHAI_<NAME> and the seed's six names are read: a DEVICE or DATA_DIR that
    # the shell sets for another program must not move this one's data or model.
    default = getattr(Settings(_env_file=None), field)
    monkeypatch.setenv(bare_name, raw)
    assert getattr(Settings(_env_file=None), field) == default
    env = tmp_path / ".env"
    env.write_text(f"{bare_name}={raw}\n")
    monkeypatch.delenv(bare_name)
    assert getattr(Settings(_env_file=env), field) == default


def test_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "OPHTHAI_API_PORT=9123\nWATCH_FOLDER_ENABLED=true\n"
        'OPHTHAI_CORS_ORIGINS=["http://x:1"]\nOPHTHAI_WATCH_EXTENSIONS=.PNG, Jpg\n'
    )
    settings = Settings(_env_file=env)
    assert settings.api_port == 9123
    assert settings.watch_folder_enabled is True
    assert settings.cors_origins == ["http://x:1"]
    assert settings.watch_extensions == ["png", "jpg"]


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parents[2] / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"OPHTHAI_{name.upper()}" in example, name


def test_env_example_shows_the_defaults() -> None:
    # "Values shown are the defaults": a copy of the example as .env changes nothing.
    example = Path(__file__).parents[2] / ".env.example"
    assert Settings(_env_file=example).model_dump() == Settings(_env_file=None).model_dump()


def test_invalid_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPHTHAI_QUANTIZATION", "2bit")
    with pytest.raises(ValueError, match="OPHTHAI_QUANTIZATION"):
        Settings(_env_file=None)


@pytest.mark.parametrize("device", ["gpu", "cuda0", "nvidia", "cuda:x"])
def test_a_device_the_setting_does_not_take_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    """Not first when the model loads, minutes later, on a window that looked ready."""
    monkeypatch.setenv("OPHTHAI_DEVICE", device)
    with pytest.raises(SettingsRefused) as refused:
        read_settings(_env_file=None)
    assert refused.value.problems == (
        "OPHTHAI_DEVICE: use auto, cpu, mps, cuda or cuda:N (such as cuda:0) "
        "(set in the environment)",
    )


@pytest.mark.parametrize("device", ["auto", "cpu", "mps", "cuda", "cuda:1", " CUDA:0 "])
def test_every_device_the_engine_takes_is_taken(
    monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    monkeypatch.setenv("OPHTHAI_DEVICE", device)
    assert read_settings(_env_file=None).device == device


@pytest.mark.parametrize("level", ["verbose", "INFOO", "10", ""])
def test_a_log_level_that_is_not_a_level_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, level: str
) -> None:
    """It was logged at INFO without a word, as every other bad setting is not."""
    env = tmp_path / ".env"
    env.write_text(f"OPHTHAI_LOG_LEVEL={level}\n")
    with pytest.raises(SettingsRefused) as refused:
        read_settings(_env_file=env)
    assert refused.value.problems == (
        "OPHTHAI_LOG_LEVEL: use DEBUG, INFO, WARNING, ERROR, CRITICAL or NOTSET (any case) "
        f"(set in {env})",
    )


def test_a_value_passed_over_is_left_unchecked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`ophthai serve --port 8123` with OPHTHAI_API_PORT=abc listens on 8123, as a file's
    bad value goes unread where the environment sets the setting: only the value a
    setting takes is checked (README, Configuration), so an option can stand in for it."""
    env = tmp_path / ".env"
    env.write_text("OPHTHAI_LOG_LEVEL=verbose\n")
    monkeypatch.setenv("OPHTHAI_API_PORT", "abc")
    monkeypatch.setenv("OPHTHAI_LOG_LEVEL", "debug")

    settings = read_settings(_env_file=env, api_port=8123)

    assert (settings.api_port, settings.log_level) == (8123, "DEBUG")


def test_a_level_a_library_adds_to_logging_is_not_one_the_setting_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The setting took the names logging knew: a library imported before the settings
    were read that adds one (TRACE, as some do) made it a level only on some starts."""
    monkeypatch.setitem(logging._nameToLevel, "TRACE", 5)  # logging.addLevelName's, undone
    monkeypatch.setenv("OPHTHAI_LOG_LEVEL", "trace")
    with pytest.raises(SettingsRefused):
        read_settings(_env_file=None)


@pytest.mark.parametrize(
    ("level", "read"),
    [
        ("debug", "DEBUG"),
        ("Warning", "WARNING"),
        (" error ", "ERROR"),
        ("NOTSET", "NOTSET"),
        ("WARN", "WARNING"),  # Python's aliases, read as the level they name
        ("fatal", "CRITICAL"),
    ],
)
def test_every_log_level_is_taken_in_any_case(
    monkeypatch: pytest.MonkeyPatch, level: str, read: str
) -> None:
    monkeypatch.setenv("OPHTHAI_LOG_LEVEL", level)
    assert read_settings(_env_file=None).log_level == read


def test_a_refused_setting_is_named_as_the_user_set_it_and_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The seed's name where the user wrote that one; the environment, or which file;
    never the value (it may be a token or a password in a URL)."""
    project, users = tmp_path / ".env", tmp_path / "settings.env"
    project.write_text("OPHTHAI_MAX_PIXELS=lots\nDEBUG=perhaps\nOPHTHAI_THEME=blue\n")
    users.write_text("OPHTHAI_THEME=purple\ncors_origins=[oops\n")
    monkeypatch.setenv("WATCH_FOLDER_ENABLED", "maybe")

    with pytest.raises(SettingsRefused) as refused:
        read_settings(_env_file=(project, users), api_port=70000)

    said = dict(problem.split(": ", 1) for problem in refused.value.problems)
    assert said["WATCH_FOLDER_ENABLED"].endswith("(set in the environment)")
    assert said["OPHTHAI_MAX_PIXELS"].endswith(f"(set in {project})")
    assert said["DEBUG"].endswith(f"(set in {project})")
    assert said["OPHTHAI_THEME"].endswith(f"(set in {users})")  # the later file wins
    assert said["cors_origins"].endswith(f"(set in {users})")  # as written
    assert said["OPHTHAI_API_PORT"] == (
        "Input should be less than or equal to 65535 (as given on the command line)"
    )
    assert set(said) == {
        "WATCH_FOLDER_ENABLED",
        "OPHTHAI_MAX_PIXELS",
        "DEBUG",
        "OPHTHAI_THEME",
        "cors_origins",
        "OPHTHAI_API_PORT",
    }
    for value in ("maybe", "lots", "perhaps", "purple", "oops", "70000"):
        assert value not in refused.value.message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


@pytest.mark.parametrize("value", ["[http://localhost:3000", '["http://a:1" "http://b:2"]'])
def test_a_list_setting_that_is_not_quite_json_says_how_to_write_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """It said only json's "Expecting value: line 1 column 2 (char 1)", which does not
    tell a user that a value starting with [ is read as JSON, nor that a,b,c works."""
    monkeypatch.setenv("OPHTHAI_CORS_ORIGINS", value)

    with pytest.raises(SettingsRefused) as refused:
        read_settings(_env_file=None)

    (problem,) = refused.value.problems
    assert problem.startswith("OPHTHAI_CORS_ORIGINS: starts with [ but is not a JSON list (")
    assert 'write it as a,b,c or as a JSON list ["a", "b"]' in problem
    assert problem.endswith("(set in the environment)")
    assert "localhost" not in problem and "http://a" not in problem


def test_a_refused_setting_written_in_lower_case_is_named_as_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Names are read ignoring case: ``ophthai_api_port=abc`` was refused as
    OPHTHAI_API_PORT, a name the user looking for it in their environment or file
    does not find written."""
    env = tmp_path / ".env"
    env.write_text("ophthai_max_pixels=lots\nDebug=perhaps\n")
    monkeypatch.setenv("ophthai_api_port", "abc")

    with pytest.raises(SettingsRefused) as refused:
        read_settings(_env_file=env)

    said = dict(problem.split(": ", 1) for problem in refused.value.problems)
    assert set(said) == {"ophthai_api_port", "ophthai_max_pixels", "Debug"}
    assert said["ophthai_api_port"].endswith("(set in the environment)")
    assert said["ophthai_max_pixels"].endswith(f"(set in {env})")
    assert said["Debug"].endswith(f"(set in {env})")


def test_a_settings_file_that_is_not_utf8_is_refused_by_its_path(tmp_path: Path) -> None:
    """A settings file saved in the system's code page (Notepad's ANSI, say) stopped
    the window with a traceback nobody saw (started from a desktop icon); it is now
    refused as a bad value is, naming the file and what to do, not its text."""
    project, users = tmp_path / ".env", tmp_path / "settings.env"
    project.write_text("OPHTHAI_DEBUG=false\n")
    users.write_bytes("OPHTHAI_USER_NAME=Dr Jos\u00e9 Mu\u00f1oz\n".encode("cp1252"))

    with pytest.raises(SettingsRefused) as refused:
        read_settings(_env_file=(project, users))

    assert refused.value.problems == (
        f"{users}: the settings file is not UTF-8 text; save it as UTF-8 (an editor's "
        "Save As offers the encoding)",
    )
    assert "Jos" not in refused.value.message
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_line_of_a_settings_file_that_cannot_be_read_is_named_with_its_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A quote left open on the token's line ignored the token, and all that was said
    was python-dotenv's "could not parse statement starting at line 2", naming no file
    (there are two) nor the setting; never the line's value (a token)."""
    project, users = tmp_path / ".env", tmp_path / "settings.env"
    project.write_text("OPHTHAI_DEBUG=false\n")
    users.write_text(
        'OPHTHAI_USER_NAME=clinic\nOPHTHAI_API_TOKEN="s3cret-token-0123456789\nnot a setting\n'
    )

    with caplog.at_level(logging.WARNING):
        settings = read_settings(_env_file=(project, users))

    assert settings.api_token is None and settings.user_name == "clinic"
    assert [r.getMessage() for r in caplog.records] == [
        f"{users}, line 2, which sets OPHTHAI_API_TOKEN, cannot be read; it is ignored (a "
        "value with spaces, # or quotes in it goes in double quotes)",
        f"{users}, line 3 is no NAME=value; it is ignored (a value with spaces, # or quotes "
        "in it goes in double quotes)",
    ]
    assert "s3cret" not in caplog.text


def test_a_bare_name_in_a_settings_file_is_named_as_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A line with a setting's name and no "=" (the value forgotten, or put on the next
    line) left the setting at its default and said nothing, where the README says a
    line without "=" is logged as ignored."""
    users = tmp_path / "settings.env"
    users.write_text("OPHTHAI_USER_NAME=clinic\nOPHTHAI_API_PORT\n")

    with caplog.at_level(logging.WARNING):
        settings = read_settings(_env_file=(users,))

    assert settings.api_port == Settings.model_fields["api_port"].default
    assert [r.getMessage() for r in caplog.records] == [
        f"{users}, line 2 names OPHTHAI_API_PORT without = and a value; it is ignored "
        "(write OPHTHAI_API_PORT=value on one line)"
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.4.5.6", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.10", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_lan_binding_needs_a_token() -> None:
    check_api_binding("127.0.0.1", None)
    with pytest.raises(InvalidInput, match="token"):
        check_api_binding("0.0.0.0", None)
    with pytest.raises(InvalidInput, match="too short"):
        check_api_binding("0.0.0.0", "short")
    check_api_binding("0.0.0.0", "a-long-enough-token-value")


def test_every_origin_needs_a_token_even_on_loopback() -> None:
    with pytest.raises(InvalidInput, match=r"CORS_ORIGINS=\*") as caught:
        check_api_binding("127.0.0.1", None, ["http://localhost:3000", "*"])
    assert caught.value.field == "cors_origins"
    with pytest.raises(InvalidInput, match="CORS_ORIGINS"):
        check_api_binding("127.0.0.1", "  ", ["*"])
    check_api_binding("127.0.0.1", "any-token", ["*"])
    check_api_binding("127.0.0.1", None, ["http://localhost:3000"])


@pytest.mark.parametrize("origin", ["*", "null"])
@pytest.mark.parametrize("name", ["CORS_ORIGINS", "OPHTHAI_CORS_ORIGINS", "cors_origins"])
def test_the_refusal_of_every_origin_names_the_variable_the_user_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, origin: str
) -> None:
    """The README documents OPHTHAI_CORS_ORIGINS, the seed's CORS_ORIGINS is read too:
    the refusal names the one set, as it was written (matched ignoring case, as it was
    read)."""
    monkeypatch.setenv(name, f"http://localhost:3000,{origin}")
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]

    with pytest.raises(InvalidInput) as caught:
        check_api_binding(settings.api_host, settings.api_token, settings.cors_origins)

    assert caught.value.message.startswith(f"{name}={origin} lets every web page")


def test_the_refusal_of_every_origin_from_elsewhere_names_both_variables() -> None:
    """Not from the environment (a settings file, which may use either name; the
    Settings dialog): both names, the README's first."""
    with pytest.raises(InvalidInput) as caught:
        check_api_binding("127.0.0.1", None, ["*"])

    assert caught.value.message.startswith(
        "OPHTHAI_CORS_ORIGINS=* (or the seed's CORS_ORIGINS) lets every web page"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="no open-files limit on Windows")
def test_the_app_raises_a_low_open_files_limit_to_what_it_needs() -> None:
    """macOS starts an app with 256 open files, which the API's connections, the
    database, the image store and the watch folder share: the app asks for more, up to
    the hard limit, and never lowers a higher one."""
    import resource

    from ophthai_desktop.bootstrap import OPEN_FILES_WANTED, raise_open_files_limit

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = before[1]
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        expected = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(4096, hard)
        assert raise_open_files_limit() == expected
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected, hard)
        if hard == resource.RLIM_INFINITY or hard > 8192:
            resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))
            assert raise_open_files_limit() == 8192  # not lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_null_origin_needs_a_token_as_every_origin_does() -> None:
    """Browsers send ``Origin: null`` from sandboxed frames, ``file:`` pages and
    redirects, which any web site can make: allowing it lets every page in."""
    with pytest.raises(InvalidInput, match="null") as caught:
        check_api_binding("127.0.0.1", None, ["http://localhost:3000", "null"])
    assert caught.value.field == "cors_origins"
    with pytest.raises(InvalidInput, match="null"):
        check_api_binding("127.0.0.1", None, ["null/"])  # the origin check reads it as null
    check_api_binding("127.0.0.1", "any-token", ["null"])


def test_an_ophthai_name_that_is_no_setting_is_named_as_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An administrator's misspelt name (OPHTHAI_WATCH_FOLDER_POLLING for
    OPHTHAI_WATCH_USE_POLLING: a network share then watched with inotify, which sees
    none of the device's writes) left the setting at its default and said nothing;
    never the value (it may be a token)."""
    users = tmp_path / "settings.env"
    users.write_text("OPHTHAI_USER_NAME=clinic\nophthai_api_tokn=s3cret-token-0123456789\n")
    monkeypatch.setenv("OPHTHAI_WATCH_FOLDER_POLLING", "true")

    with caplog.at_level(logging.WARNING):
        settings = read_settings(_env_file=(users,))

    assert settings.watch_use_polling is False and settings.user_name == "clinic"
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "OPHTHAI_WATCH_FOLDER_POLLING (set in the environment) is no OphthAI setting; it is "
        "ignored (is it misspelt? .env.example lists each setting)",
        f"ophthai_api_tokn (set in {users}) is no OphthAI setting; it is ignored (is it "
        "misspelt? .env.example lists each setting)",
    ]
    assert "s3cret" not in caplog.text


def test_the_settings_and_the_app_s_other_names_are_not_warned_of(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = tmp_path / "settings.env"
    users.write_text("OPHTHAI_WATCH_USE_POLLING=true\nWATCH_FOLDER_PATH=/srv/scans\nOTHER=1\n")
    monkeypatch.setenv("ophthai_api_port", "8123")
    monkeypatch.setenv("OPHTHAI_FROZEN_APP", "1")

    with caplog.at_level(logging.WARNING):
        settings = read_settings(_env_file=(users,))

    assert settings.watch_use_polling is True and settings.api_port == 8123
    assert caplog.records == []
