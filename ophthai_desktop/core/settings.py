"""Application settings (DESIGN §8).

Every setting reads ``OPHTHAI_<NAME>`` from the environment, a ``.env`` file in the
working directory, or the user's settings file (:data:`USER_SETTINGS_FILE`, written by
the desktop's Settings dialog); the seed
backend's unprefixed names (``DATABASE_URL``, ``LOAD_MODEL_ON_STARTUP``,
``WATCH_FOLDER_ENABLED``, ``WATCH_FOLDER_PATH``, ``DEBUG``, ``CORS_ORIGINS``) are
accepted as aliases. ``.env.example`` lists them all with their defaults.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from dotenv import dotenv_values
from dotenv.parser import parse_stream
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ophthai_desktop.core.errors import InvalidInput

log = logging.getLogger(__name__)

APP_NAME = "OphthAI"

#: Seed backend names accepted besides the ``OPHTHAI_`` ones.
SEED_ALIASES = {
    "database_url": "DATABASE_URL",
    "load_model_on_startup": "LOAD_MODEL_ON_STARTUP",
    "watch_folder_enabled": "WATCH_FOLDER_ENABLED",
    "watch_folder_path": "WATCH_FOLDER_PATH",
    "debug": "DEBUG",
    "cors_origins": "CORS_ORIGINS",
}


def _env(name: str) -> AliasChoices:
    """The environment names of the field ``name``: prefixed first, then the seed's."""
    names = [f"OPHTHAI_{name.upper()}"]
    if name in SEED_ALIASES:
        names.append(SEED_ALIASES[name])
    return AliasChoices(*names)


def set_in_environment(name: str) -> str | None:
    """The environment variable that sets the field ``name``, if one does (it wins over
    the settings files), as it is spelled there: names are matched ignoring case, as
    :class:`Settings` does, so ``ophthai_api_port`` sets ``api_port``."""
    return _spelled_as(_env(name).choices, os.environ)


def _spelled_as(names: Iterable[object], keys: Iterable[str]) -> str | None:
    """The first of ``names`` among ``keys`` ignoring case, as ``keys`` spell it (the
    last spelling where several differ only in case)."""
    spelled = {key.upper(): key for key in keys}
    for name in names:
        if isinstance(name, str) and name.upper() in spelled:
            return spelled[name.upper()]
    return None


#: The values ``OPHTHAI_DEVICE`` takes (matched ignoring case and spaces around it).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

#: The levels ``OPHTHAI_LOG_LEVEL`` takes (any case), each with the level it is read as:
#: Python's, and its aliases WARN and FATAL. Listed here rather than asked of logging,
#: whose names any library imported can add to (``logging.addLevelName``).
LOG_LEVELS = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "WARN": "WARNING",
    "ERROR": "ERROR",
    "CRITICAL": "CRITICAL",
    "FATAL": "CRITICAL",
    "NOTSET": "NOTSET",
}

#: The settings the desktop's Settings dialog saves (``OPHTHAI_`` lines, .env format).
USER_SETTINGS_FILE = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "settings.env"


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list settings.

    Raises:
        ValueError: a value that starts as a JSON list (``[``) is not one; says where it
            stops parsing and how to write the list, never the value.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                # json's own words ("Expecting ',' delimiter: line 1 column 5 (char 4)")
                # do not say that the value was read as JSON, nor the other way to write it.
                raise ValueError(
                    f"starts with [ but is not a JSON list ({exc.msg} at character "
                    f'{exc.pos + 1}); write it as a,b,c or as a JSON list ["a", "b"]'
                ) from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything an administrator or clinician can configure."""

    # Later files win: the Settings dialog's file beats a project .env; the environment
    # beats both. populate_by_name lets code pass Settings(data_dir=...); pydantic-settings
    # then also reads each field's own name from the environment and the files, which the
    # prefix turns into the OPHTHAI_ name already read, so a DEVICE or DATA_DIR set for
    # another program is not taken for this one's.
    model_config = SettingsConfigDict(
        env_prefix="OPHTHAI_",
        env_file=(".env", USER_SETTINGS_FILE),
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
        protected_namespaces=(),
    )

    # Storage
    data_dir: Path = Field(default_factory=_default_data_dir, validation_alias=_env("data_dir"))
    database_url: str | None = Field(default=None, validation_alias=_env("database_url"))

    # Model
    model_id: str = Field(default="OctoMed/OctoMed-7B", validation_alias=_env("model_id"))
    model_path: Path | None = Field(default=None, validation_alias=_env("model_path"))
    model_revision: str | None = Field(default=None, validation_alias=_env("model_revision"))
    load_model_on_startup: bool = Field(
        default=False, validation_alias=_env("load_model_on_startup")
    )
    device: str = Field(default="auto", validation_alias=_env("device"))
    quantization: Literal["none", "8bit", "4bit"] = Field(
        default="none", validation_alias=_env("quantization")
    )
    max_pixels: int = Field(default=262_144, ge=3136, validation_alias=_env("max_pixels"))
    min_pixels: int = Field(default=3136, ge=784, validation_alias=_env("min_pixels"))
    max_new_tokens: int = Field(
        default=1024, ge=1, le=32_768, validation_alias=_env("max_new_tokens")
    )
    thinking_budget: int = Field(default=768, ge=0, validation_alias=_env("thinking_budget"))

    # Watch folder
    watch_folder_enabled: bool = Field(default=False, validation_alias=_env("watch_folder_enabled"))
    watch_folder_path: Path | None = Field(default=None, validation_alias=_env("watch_folder_path"))
    #: Paused by the clinician (the window's or the tray's Pause): written by the window
    #: when paused or resumed, so that the watch folder starts paused until resumed.
    watch_folder_paused: bool = Field(default=False, validation_alias=_env("watch_folder_paused"))
    #: Watch the folder only while it is a mount point (a share mounted on it): a share not
    #: mounted at the first start leaves an empty folder that looks like a local one.
    watch_folder_require_mount: bool = Field(
        default=False, validation_alias=_env("watch_folder_require_mount")
    )
    watch_poll_seconds: float = Field(
        default=1.0, gt=0, validation_alias=_env("watch_poll_seconds")
    )
    watch_use_polling: bool = Field(default=False, validation_alias=_env("watch_use_polling"))
    watch_demo_mode: bool = Field(default=True, validation_alias=_env("watch_demo_mode"))
    watch_extensions: Annotated[list[str], NoDecode] = Field(
        default=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"],
        validation_alias=_env("watch_extensions"),
    )

    # Embedded API
    api_enabled: bool = Field(default=True, validation_alias=_env("api_enabled"))
    api_host: str = Field(default="127.0.0.1", validation_alias=_env("api_host"))
    api_port: int = Field(default=8000, ge=0, le=65535, validation_alias=_env("api_port"))
    api_token: str | None = Field(default=None, validation_alias=_env("api_token"))
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default=[
            "http://localhost:3000",
            "http://127.0.0.1:3000",
            "http://localhost:5173",
            "http://127.0.0.1:5173",
        ],
        validation_alias=_env("cors_origins"),
    )
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, validation_alias=_env("max_request_bytes")
    )
    max_image_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, validation_alias=_env("max_image_bytes")
    )
    max_image_pixels: int = Field(
        default=120_000_000, ge=1, validation_alias=_env("max_image_pixels")
    )

    # Desktop and diagnostics
    user_name: str | None = Field(default=None, validation_alias=_env("user_name"))
    minimize_to_tray: bool = Field(default=True, validation_alias=_env("minimize_to_tray"))
    theme: Literal["light", "dark"] = Field(default="light", validation_alias=_env("theme"))
    debug: bool = Field(default=False, validation_alias=_env("debug"))
    log_level: str = Field(default="INFO", validation_alias=_env("log_level"))

    @field_validator("watch_extensions", mode="before")
    @classmethod
    def _parse_extensions(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list):
            return [str(ext).lower().lstrip(".") for ext in value if str(ext).strip()]
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        # Refused at start, as a wrong quantization is, not first at the model's load.
        if not DEVICE_PATTERN.fullmatch(value.strip().lower()):
            raise ValueError("use auto, cpu, mps, cuda or cuda:N (such as cuda:0)")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        # Refused at start, as every other setting is: logging took an unknown level for
        # INFO without a word, so DEBUG misspelt left the clinic without its trace.
        level = LOG_LEVELS.get(value.strip().upper())
        if level is None:
            raise ValueError("use DEBUG, INFO, WARNING, ERROR, CRITICAL or NOTSET (any case)")
        return level

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("api_token", "database_url", "model_path", "watch_folder_path", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    # Derived locations -------------------------------------------------------------

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ophthai.db').as_posix()}"

    @property
    def images_dir(self) -> Path:
        """The content-addressed image store."""
        return self.data_dir / "images"

    @property
    def cursor_key_path(self) -> Path:
        """The key that seals the API's page cursors."""
        return self.data_dir / "cursor.key"

    @property
    def resolved_watch_folder(self) -> Path:
        """The watch folder, ``<data>/incoming_scans`` unless configured."""
        return self.watch_folder_path or self.data_dir / "incoming_scans"

    @property
    def api_host_is_loopback(self) -> bool:
        """Whether the API binds only to this machine."""
        return is_loopback_host(self.api_host)


class SettingsRefused(InvalidInput):
    """Settings with a value they cannot take (a port that is not a number, a switch
    neither true nor false), each named as the user set it and where, never with its
    value (it may be a token or a password in a URL).

    Attributes:
        problems: One line per setting: ``NAME: what it takes (where it was set)``.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def read_settings(option_names: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """``Settings(**overrides)``, as the command line and the window read them at start.

    ``option_names`` names the command-line option that gave an override (``api_port``:
    ``--port``), for a refusal to name what the user typed.

    Raises:
        SettingsRefused: a setting, from the environment, a settings file or
            ``overrides``, has a value it cannot take; or a settings file cannot be
            read (not UTF-8 text, say, as an editor saving in the system's code page
            writes it).
    """
    files = _env_files(overrides.get("_env_file", Settings.model_config.get("env_file")))
    for file in files:
        _warn_of_unread_lines(file)
    _warn_of_unknown_names(files)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        given_as = option_names or {}
        problems = [_problem(error, overrides, given_as, files) for error in exc.errors()]
        # Not chained: pydantic's error repeats each value, which may be a secret.
        raise SettingsRefused(problems) from None
    except (OSError, UnicodeDecodeError) as exc:
        # Raised reading a file: which one is found again (no exception names it).
        raise SettingsRefused([_unreadable(files, exc)]) from None


def _env_files(env_files: Any) -> list[Path]:
    """The env files :class:`Settings` reads, in its order, from its ``env_file``."""
    if env_files is None:
        return []
    if isinstance(env_files, (str, os.PathLike)):
        return [Path(env_files)]
    return [Path(file) for file in env_files]


class _QuietDotenv(logging.Filter):
    """Drops python-dotenv's "could not parse statement starting at line N", which names
    no file: :func:`_warn_of_unread_lines` says it with the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("python-dotenv could not parse statement")


logging.getLogger("dotenv.main").addFilter(_QuietDotenv())

#: The name a line of an env file sets, where one can be read from it.
_SETTING_NAME = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def _warn_of_unread_lines(env_file: Path) -> None:
    """Log each line of ``env_file`` that is no setting python-dotenv can read (a quote
    not closed, a line without ``=``): it is skipped, and the setting it meant is not
    set. Names the file, the line and the setting, never the line's value (a token or a
    password)."""
    try:
        with env_file.open(encoding="utf-8") as stream:
            # A bare name (no "="): python-dotenv reads it as set to nothing, and the
            # setting keeps its default as silently as for a line it cannot read.
            bindings = [b for b in parse_stream(stream) if b.error or (b.key and b.value is None)]
    except (OSError, UnicodeDecodeError):
        return  # not there, or refused by read_settings with the reason
    for binding in bindings:
        named = _SETTING_NAME.match(binding.original.string)
        hint = "a value with spaces, # or quotes in it goes in double quotes"
        if binding.key and not binding.error:
            what = f" names {binding.key} without = and a value"
            hint = f"write {binding.key}=value on one line"
        elif named:
            what = f", which sets {named.group(1)}, cannot be read"
        else:
            what = " is no NAME=value"
        log.warning(
            "%s, line %d%s; it is ignored (%s)",
            env_file.absolute(),
            binding.original.line,
            what,
            hint,
        )


#: ``OPHTHAI_`` names the app reads that are no settings (the packaged app's marker, the
#: tests' PostgreSQL URL): not warned of as unknown.
_NOT_SETTINGS = frozenset({"OPHTHAI_FROZEN_APP", "OPHTHAI_TEST_DATABASE_URL"})


def _warn_of_unknown_names(files: Sequence[Path]) -> None:
    """Log each ``OPHTHAI_`` name, in the environment or a settings file, that is no
    setting: a misspelt one (``OPHTHAI_WATCH_FOLDER_POLLING`` for
    ``OPHTHAI_WATCH_USE_POLLING``) left its setting at its default and said nothing, as
    a line that cannot be read did. Names the name and where, never its value."""
    places: list[tuple[str, Iterable[str]]] = [("the environment", os.environ)]
    places += [(str(file.absolute()), _names_in(file)) for file in files]
    for where, names in places:
        for name in names:
            upper = name.upper()
            if (
                upper.startswith("OPHTHAI_")
                and upper not in _FIELD_OF
                and upper not in _NOT_SETTINGS
            ):
                log.warning(
                    "%s (set in %s) is no OphthAI setting; it is ignored (is it misspelt? "
                    ".env.example lists each setting)",
                    name,
                    where,
                )


def _unreadable(files: Sequence[Path], exc: OSError | UnicodeDecodeError) -> str:
    """``FILE: why it cannot be read`` for the settings file that failed to be read."""
    for file in files:
        if not file.is_file():
            continue  # not read (pydantic-settings skips it)
        try:
            file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return (
                f"{file.absolute()}: the settings file is not UTF-8 text; save it as UTF-8 "
                "(an editor's Save As offers the encoding)"
            )
        except OSError as error:
            return f"{file.absolute()}: the settings file cannot be read: {error.strerror}"
    reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
    return f"a settings file cannot be read: {reason}"


def _problem(
    error: ErrorDetails,
    overrides: Mapping[str, Any],
    given_as: Mapping[str, str],
    files: Sequence[Path],
) -> str:
    """``NAME: what it takes (where it was set)`` for one of pydantic's errors: an
    override by its option (``given_as``) where it has one."""
    key = str(error["loc"][0]) if error["loc"] else ""
    field = _FIELD_OF.get(key.upper(), key)
    takes = error["msg"].removeprefix("Value error, ")  # our validators' own words
    if field in overrides:
        name = given_as.get(field, f"OPHTHAI_{field.upper()}")
        return f"{name}: {takes} (as given on the command line)"
    name, where = _where_set(field, files)
    return f"{name}: {takes} ({where})"


def _fields_by_name() -> dict[str, str]:
    """Each field by every name it is read under (upper case): its own and its aliases."""
    fields = {}
    for field in Settings.model_fields:
        fields[field.upper()] = field
        for name in _env(field).choices:
            fields[str(name).upper()] = field
    return fields


_FIELD_OF = _fields_by_name()


def _where_set(field: str, files: Sequence[Path]) -> tuple[str, str]:
    """The name the user gave ``field`` under, and where: the environment, else the env
    ``files`` in the order :class:`Settings` reads them (the later file wins for one
    name; a prefixed name anywhere in the files beats a seed name)."""
    name = set_in_environment(field)
    if name is not None:
        return name, "set in the environment"
    names_in = {file: _names_in(file) for file in files}
    for choice in _env(field).choices:
        for file in reversed(files):
            name = _spelled_as([choice], names_in[file])
            if name is not None:
                return name, f"set in {file.absolute()}"
    return f"OPHTHAI_{field.upper()}", "its default"


def _names_in(env_file: Path) -> list[str]:
    """The names an env file sets, as it spells them; none where it cannot be read."""
    try:
        return list(dotenv_values(env_file, encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return []


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origins_setting(origin: str) -> str:
    """``NAME=origin`` for the CORS origins setting that holds ``origin``: the variable
    of the environment that sets it (``OPHTHAI_CORS_ORIGINS``, or the seed's
    ``CORS_ORIGINS``), else both names, since a settings file may use either."""
    name = set_in_environment("cors_origins")
    if name is not None:
        value = next(v for key, v in os.environ.items() if key.upper() == name.upper())
        try:
            held = _split_list(value)
        except ValueError:  # not a JSON list: Settings refused it already
            held = []
        if origin in held:
            return f"{name}={origin}"
    return f"OPHTHAI_CORS_ORIGINS={origin} (or the seed's {SEED_ALIASES['cors_origins']})"


def check_api_binding(host: str, token: str | None, cors_origins: Iterable[str] = ()) -> None:
    """Refuse to listen beyond this machine without an API token, and to let every web
    page in (``cors_origins`` of ``*`` or ``null``) without one.

    With ``*`` and no token, any page the clinician opens in a browser on this computer
    can read and change patient data through the loopback API (the browser sends the
    request and the API allows the page to read the answer).

    Raises:
        InvalidInput: ``host`` is not loopback, or ``cors_origins`` holds ``*`` or
            ``null``, and no token is set (or, on the network, a token under 16
            characters).
    """
    from ophthai_desktop.core.errors import InvalidInput

    if not (token and token.strip()):
        for origin in cors_origins:
            # A browser sends "Origin: null" from a sandboxed frame, a file: page or a
            # redirect, which any web site can arrange: allowing it lets every page in.
            if origin == "*" or origin.strip().rstrip("/").lower() == "null":
                raise InvalidInput(
                    f"{_origins_setting(origin)} lets every web page opened on this computer "
                    "read and change patient data through the API, so an API token is "
                    "needed: set OPHTHAI_API_TOKEN, or list the frontends' origins "
                    f"instead of {origin}",
                    field="cors_origins",
                )
    if not is_loopback_host(host) and not (token and token.strip()):
        raise InvalidInput(
            f"listening on {host} opens the API to the network, so an API token is needed: "
            "set OPHTHAI_API_TOKEN (at least 16 characters) or listen on 127.0.0.1",
            field="api_token",
        )
    if token is not None and not is_loopback_host(host) and len(token.strip()) < 16:
        raise InvalidInput(
            "the API token is too short for network access; use at least 16 characters",
            field="api_token",
        )
