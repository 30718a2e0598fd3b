"""Fixtures for the inference tests: tiny Qwen2.5-VL checkpoints built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_checkpoint import build_tiny_qwen25vl


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2.5-VL folder that writes until its token cap."""
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture(scope="session")
def tiny_thinking_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripted model: ``<think>`` then ``~`` until closed, then ``<|im_end|>``."""
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl-thinking"), scripted=True)
