"""Fixtures for the consumers tests: the reference stack with Jellyfin on,
a fake Jellyfin, and the provider served the way the engine serves it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import StackConfig, parse_stack_config
from tests.conftest import stack_file_config
from tests.stand_ins.jellyfin import FakeJellyfin

API_KEY = "4f7c0d1e9a8b4c2d8e6f5a4b3c2d1e0f"


def homelab_raw(**jellyfin: Any) -> dict[str, Any]:
    """The reference stack's config with ``jellyfin`` enabled (plus overrides)."""
    raw = copy.deepcopy(stack_file_config("homelab"))
    raw["jellyfin"] = {**raw.get("jellyfin", {}), "enabled": True, **jellyfin}
    return raw


def homelab_cfg(**jellyfin: Any) -> StackConfig:
    return parse_stack_config(homelab_raw(**jellyfin))


@pytest.fixture
def cfg() -> StackConfig:
    return homelab_cfg()


def with_jellyfin(cfg: StackConfig, **fields: Any) -> StackConfig:
    """``cfg`` with jellyfin fields (snake_case) replaced without validation,
    so the checks under test see values config parsing might refuse."""
    return cfg.model_copy(update={"jellyfin": cfg.jellyfin.model_copy(update=fields)})


def with_generation(cfg: StackConfig, generation: str | None, model: str | None = None) -> StackConfig:
    return cfg.model_copy(update={"gpus": [gpu.model_copy(update={"generation": generation, "model": model}) for gpu in cfg.gpus]})


@pytest.fixture(scope="module")
def engine():
    from tests.consumers.engine_side import EngineSide  # here: engine_side imports this conftest

    side = EngineSide()
    yield side
    side.close()


@pytest.fixture
def server():
    with FakeJellyfin(API_KEY) as fake:
        yield fake
