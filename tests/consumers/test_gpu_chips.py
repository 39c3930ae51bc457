"""gpus[].model takes the chip name as lspci prints it and keeps its row."""

from __future__ import annotations

import pytest

from components.config import ConfigError, parse_stack_config
from components.consumers.capabilities import CHIPS, gpu_capabilities
from components.gpu_chips import LSPCI_CHIPS, ROWS, chip_row
from tests.conftest import stack_file_config


@pytest.mark.parametrize(("written", "row"), [
    ("GA106", "ga10x"), ("ga104", "ga10x"), ("GA102GL", "ga10x"), ("GA107", "ga10x"),
    ("GP102", "gp10x"), ("GP104GL [Tesla P4]", "gp10x"), ("GP106", "gp10x"), ("GP108", "gp108"),
    ("TU104GL", "tu10x"), ("NVIDIA Corporation TU104GL [Tesla T4]", "tu10x"), ("TU117M", "tu11x"),
    ("AD104", "ad10x"), ("AD102GL", "ad10x"), ("GV100", "gv100"), ("GA100", "ga100"), ("GH100", "gh100"),
    ("GB202", "gb20x"), ("ga10x", "ga10x"), ("GA10x", "ga10x"),
])
def test_lspci_chip_names_map_to_their_row(written: str, row: str) -> None:
    raw = stack_file_config()
    raw["gpus"][0].pop("generation", None)
    raw["gpus"][0]["model"] = written
    cfg = parse_stack_config(raw)
    assert cfg.gpus[0].model == row
    assert gpu_capabilities(cfg.gpus[0]).encode == CHIPS[row].encode


def test_an_unknown_chip_is_refused_naming_the_key_the_value_and_the_names_allowed() -> None:
    raw = stack_file_config()
    raw["gpus"][0]["model"] = "GA999"
    with pytest.raises(ConfigError) as raised:
        parse_stack_config(raw)
    text = str(raised.value)
    assert "proxmox-talos-gpu:gpus[0].model = 'GA999': not an NVIDIA chip this program knows" in text
    assert "GA106" in text and "tu10x" in text and "docs/consumers.md" in text


def test_a_chip_name_that_contradicts_the_generation_is_refused() -> None:
    raw = stack_file_config()
    raw["gpus"][0].update(generation="turing", model="GA106")
    with pytest.raises(ConfigError, match="gpus\\[0\\].model = 'ga10x': GA102, GA103, GA104, GA106, GA107 is a ampere chip"):
        parse_stack_config(raw)


def test_every_lspci_name_is_listed_in_its_rows_chips_and_every_row_has_names() -> None:
    assert set(ROWS) == set(CHIPS)
    for chip, row in LSPCI_CHIPS.items():
        assert chip in CHIPS[row].chips.split(", "), (chip, row)
    for row, entry in CHIPS.items():
        assert set(entry.chips.split(", ")) == {chip for chip, owner in LSPCI_CHIPS.items() if owner == row}, row


@pytest.mark.parametrize("value", ["", "G", "GA10", "GA1066", "RTX 3060", "TU104 extra words"])
def test_what_is_not_a_chip_name_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not an NVIDIA chip"):
        chip_row(value)
