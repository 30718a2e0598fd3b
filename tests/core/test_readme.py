"""The README against the code: the settings, paths, make targets, benchmark options
and WebSocket events it names exist, and the paths and benchmark options that
docs/benchmark-log.md names (the API's routes: tests/api/test_api_readme.py; menus and
shortcuts: tests/ui/test_ui_menus.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ophthai_desktop.core import events
from ophthai_desktop.core.settings import SEED_ALIASES, Settings

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: The benchmarks' measurement history, moved out of the README's Benchmarks section.
BENCHMARK_LOG = "docs/benchmark-log.md"

#: Read by the test suite, not by the app (README: Tests).
TEST_ONLY_NAMES = {"OPHTHAI_TEST_DATABASE_URL"}


def _setting_names() -> set[str]:
    return {f"OPHTHAI_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_ophthai_name_is_a_setting(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    named = set(re.findall(r"\bOPHTHAI_[A-Z0-9_]*[A-Z0-9]\b", text)) - TEST_ONLY_NAMES
    assert named, document
    assert named - _setting_names() == set()


def test_the_seed_names_listed_are_the_aliases() -> None:
    # "the seed backend's names `DATABASE_URL`, ... are accepted too"
    paragraph = README[README.index("the seed backend's names") :]
    paragraph = paragraph[: paragraph.index("accepted too")]
    assert set(re.findall(r"`([A-Z_]+)`", paragraph)) == set(SEED_ALIASES.values())


def test_numeric_defaults_given_in_parentheses() -> None:
    # e.g. "`OPHTHAI_MAX_NEW_TOKENS` (1024)", "`OPHTHAI_MAX_PIXELS` (the image budget, 262144)"
    defaults = Settings(_env_file=None)
    found = re.findall(r"`OPHTHAI_([A-Z_]+)` \((?:[^()]*, )?([0-9][0-9.]*)\)", README)
    assert len(found) >= 3
    for name, value in found:
        assert float(value) == getattr(defaults, name.lower()), name
    host, port = re.search(
        r"`OPHTHAI_API_HOST` / `OPHTHAI_API_PORT` \(([^ ]+) / (\d+)\)", README
    ).groups()  # type: ignore[union-attr]
    assert (host, int(port)) == (defaults.api_host, defaults.api_port)


@pytest.mark.parametrize(("document", "at_least"), [("README.md", 20), (BENCHMARK_LOG, 5)])
def test_every_file_named_exists(document: str, at_least: int) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    named = set(
        re.findall(
            r"(?<![\w/.])((?:bench|tests|ophthai_desktop|docs|\.ci)/[\w./-]*\w|build\.spec"
            r"|\.env\.example|core/[\w/]+\.py|ui/[\w/]+\.py)",
            text,
        )
    )
    assert len(named) > at_least
    missing = sorted(path for path in named if not _exists(path))
    assert missing == []


def _exists(path: str) -> bool:
    """A file or folder (``core/...`` and ``ui/...`` inside the package), or a module's
    function written ``tests/ui/demo_images.oct_bscan``."""
    if (ROOT / path).exists() or (ROOT / "ophthai_desktop" / path).exists():
        return True
    module, _, name = path.rpartition(".")
    source = ROOT / f"{module}.py"
    return source.is_file() and f"def {name}(" in source.read_text(encoding="utf-8")


def test_every_make_target_named_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.MULTILINE))
    # `make x` in the prose, and make lines of the command blocks.
    named = set(re.findall(r"(?:`|^)make ([a-z][\w-]*)", README, flags=re.MULTILINE))
    assert {"run", "test"} <= named
    assert named - targets == set()


#: Options of other programs quoted in the benchmark sections (py-spy's).
OTHER_PROGRAMS_OPTIONS = {"--gil"}


@pytest.mark.parametrize(("document", "at_least"), [("README.md", 10), (BENCHMARK_LOG, 5)])
def test_benchmark_options_named_exist(document: str, at_least: int) -> None:
    # Each "### `bench/x.py`" section: its commands' options and those its prose names
    # (`--burst 0`, `--open-fds N`) are options of that script.
    text = (ROOT / document).read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)
    checked = 0
    for section in sections:
        script = re.match(r"`bench/(\w+\.py)", section)
        if script is None:
            continue
        source = (ROOT / "bench" / script.group(1)).read_text(encoding="utf-8")
        for option in set(re.findall(r"(?<![\w-])--[a-z][\w-]*", section)):
            if option not in OTHER_PROGRAMS_OPTIONS:
                assert f'"{option}"' in source, f"bench/{script.group(1)} {option}"
                checked += 1
    assert checked >= at_least


def test_every_websocket_event_is_described() -> None:
    section = README[README.index("WebSocket events:") :]
    section = section[: section.index("\n\n")]
    names = {
        cls.name
        for cls in vars(events).values()
        if isinstance(cls, type) and issubclass(cls, events.Event) and cls is not events.Event
    }
    assert len(names) > 15
    assert {name for name in names if f"`{name}`" not in section} == set()
