"""The block emitter (components/talos/goyaml.py ``emit``) on values the
Image Factory's test vectors do not hold: ``false`` (an overlay option),
empty blocks as sequence items, ``<<``, short and whitespace-only
multi-line strings, a tab in a multi-line string, and what it refuses to
write because it cannot check it offline."""

from __future__ import annotations

import pytest

from components.talos.goyaml import UnwritableValue, emit


@pytest.mark.parametrize("v3", [True, False], ids=["yaml.v3", "yaml-v4"])
def test_false_empty_blocks_and_plain_strings_in_a_list_are_written_as_go_yaml_writes_them(v3):
    assert emit([("enabled", False), ("secure", True), ("items", [[], {}, "XFS", "X y", "a:X"])], v3=v3) == (
        "enabled: false\nsecure: true\nitems:\n    - []\n    - {}\n    - XFS\n    - X y\n    - a:X\n")


def test_the_merge_key_is_double_quoted_by_yaml_v3_and_single_quoted_by_yaml_v4():
    # yaml.v3 resolves "<<" to the merge tag, so it cannot be plain; yaml/v4's stringv quotes it like the YAML 1.1 words.
    assert emit([("key", "<<")], v3=True) == 'key: "<<"\n'
    assert emit([("key", "<<")], v3=False) == "key: '<<'\n"


def test_yaml_v4_writes_a_multi_line_string_as_a_literal_block_unless_it_is_only_whitespace():
    assert emit([("a", "a\n"), ("b", " \n")], v3=False) == 'a: |\n    a\nb: " \\n"\n'


def test_a_tab_in_a_multi_line_string_forbids_the_literal_block_in_yaml_v3_only():
    # yaml.v3 counts a tab as a special character (no block style); yaml/v4 counts tabs apart and keeps the block.
    assert emit([("t", "a\tb\nc")], v3=True) == 't: "a\\tb\\nc"\n'
    assert emit([("t", "a\tb\nc")], v3=False) == "t: |-\n    a\tb\n    c\n"


@pytest.mark.parametrize(("items", "message"), [
    ([("a", [["x"]])], "a list directly inside a list cannot be checked offline"),
    ([("a", 1.5)], "cannot write 1.5 in a schematic"),
    ([("a", "x\u2028y")], "'x\\u2028y': Unicode line separators cannot be checked offline"),
], ids=["list in a list", "float", "line separator"])
def test_what_it_cannot_check_offline_is_refused_with_the_reason(items, message):
    with pytest.raises(UnwritableValue) as error:
        emit(items, v3=True)
    assert str(error.value) == message


@pytest.mark.parametrize(("char", "written"), [
    ("\x7f", '"x\\x7F"'), ("\ud7ff", "x\ud7ff"), ("\ue000", "x\ue000"), ("\ufffd", "x\ufffd"), ("\ufffe", '"x\\uFFFE"'), ("\ufeff", '"x\\uFEFF"'),
], ids=["DEL", "U+D7FF", "U+E000", "U+FFFD", "U+FFFE", "U+FEFF"])
def test_characters_at_the_edges_of_what_libyaml_counts_printable(char, written):
    # yaml.v3 yamlprivateh.go is_printable: #x0A, #x20-#x7E, #xA0-#xD7FF, #xE000-#xFFFD except #xFEFF; the rest is double-quoted, escaped.
    for v3 in (True, False):
        assert emit([("a", "x" + char)], v3=v3) == f"a: {written}\n"
