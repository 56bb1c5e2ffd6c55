"""course_lib.show: the library's code, shown in a lecture next to its maths."""
import pytest

from course_lib.errors import ConfigError
from course_lib.methods.lora import LoraLayer
from course_lib.methods.nf4 import quantize_4bit
from course_lib.show import show_source, source_of


def test_source_names_file_lines_and_is_the_real_code():
    text = source_of(LoraLayer.forward)
    head, body = text.split("\n", 1)
    assert head.startswith("# course_lib/methods/lora.py:") and head.endswith("LoraLayer.forward")
    start, end = map(int, head.split(":")[1].split(",")[0].split("-"))
    with open(LoraLayer.forward.__code__.co_filename) as f:
        original = f.read().splitlines()[start - 1:end]
    assert body.splitlines()[0] == original[0].strip() and len(body.splitlines()) == end - start + 1
    assert body.startswith("def forward(")  # dedented out of the class


def test_show_source_renders_highlighted_html_for_several_objects():
    code = show_source(LoraLayer.merge, quantize_4bit)
    html = code._repr_html_()
    assert "LoraLayer.merge" in code.data and "def quantize_4bit(" in code.data
    assert "<span" in html  # Pygments markup: highlighted, not plain text


def test_show_source_errors_name_the_fix():
    with pytest.raises(ConfigError, match="at least one"):
        show_source()
    with pytest.raises(ConfigError, match="no Python source"):
        show_source(len)
