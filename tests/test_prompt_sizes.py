import math

import pytest

from tinybreaker_ext.errors import ParameterError
from tinybreaker_ext.prompt.sizes import (
    SCALES, clamp_aspect, image_size, normalize_aspect, parse_aspect, snap_to_pixart,
)

# The size table of docs/numerics.md "Image sizes" (landscape): ratio -> (large size, medium size). The 2:1 row of
# the reference is its bug and is checked separately against the formula.
SPEC_TABLE = {
    "1:1": ((1248, 1248), (1024, 1024)),
    "4:3": ((1440, 1088), (1184, 880)),
    "3:2": ((1536, 1024), (1248, 832)),
    "16:10": ((1584, 992), (1296, 816)),
    "16:9": ((1664, 944), (1360, 768)),
    "21:9": ((1904, 816), (1568, 672)),
    "12:5": ((1936, 800), (1584, 656)),
    "70:27": ((2016, 768), (1648, 640)),
    "32:9": ((2352, 656), (1936, 544)),
}


def formula_size(ratio_w, ratio_h, scale, resolution=1024):
    """docs/numerics.md "Image sizes" written out: w0 = sqrt(area*W/H), h0 = w0*H/W, each side round(x*scale/16)*16."""
    w0 = math.sqrt(resolution * resolution * ratio_w / ratio_h)
    h0 = w0 * ratio_h / ratio_w
    return round(w0 * scale / 16) * 16, round(h0 * scale / 16) * 16


def test_scales():
    assert SCALES == {"small": 1.0, "medium": 1.0, "large": 1.22}


@pytest.mark.parametrize("ratio", list(SPEC_TABLE))
@pytest.mark.parametrize("orientation", ["", "landscape", "portrait"])
def test_size_table_of_the_spec(ratio, orientation):
    large, medium = SPEC_TABLE[ratio]
    if orientation == "portrait":
        large, medium = large[::-1], medium[::-1]
    assert image_size(ratio, orientation, "large") == large
    assert image_size(ratio, orientation, "medium") == medium
    assert image_size(ratio, orientation, "small") == medium
    assert image_size(ratio, orientation, 1.22) == large


def test_headline_size_is_three_to_two_large_and_portrait_swaps():
    assert image_size("3:2", "portrait", "large") == (1024, 1536)
    assert image_size() == (1248, 1248)  # defaults: 1:1, large


@pytest.mark.parametrize("scale_name, scale", [("large", 1.22), ("medium", 1.0)])
def test_two_to_one_keeps_its_ratio_and_follows_the_formula(scale_name, scale):
    expected = formula_size(2, 1, scale)
    assert image_size("2:1", "", scale_name) == expected
    assert image_size("2:1", "portrait", scale_name) == expected[::-1]
    assert expected[0] > expected[1]


def test_two_to_one_values():
    # sqrt(2)*1024 = 1448.15; *1.22/16 = 110.4 -> 1760; 724.08*1.22/16 = 55.2 -> 880
    assert image_size("2:1", "", "large") == (1760, 880)
    assert image_size("2:1", "", "medium") == (1456, 720)


@pytest.mark.parametrize("ratio", ["5:1", "3:1", "7:3", "1:2"])
def test_other_ratios_follow_the_formula(ratio):
    w, h = map(int, ratio.split(":"))
    assert image_size(ratio, "", "large") == formula_size(w, h, 1.22)


@pytest.mark.parametrize("text, orientation, expected", [
    ("2:1", "", (2, 1)),
    ("9:1", "", (6, 1)),
    ("1:9", "", (1, 6)),
    ("16:9", "portrait", (9, 16)),
    ("9:16", "landscape", (16, 9)),
    ("9:16", "portrait", (9, 16)),
    ("1:1", "portrait", (1, 1)),
    ("16:9 (wide)", "", (16, 9)),
    ((3, 2), "", (3, 2)),
])
def test_normalize_aspect(text, orientation, expected):
    assert normalize_aspect(text, orientation) == expected


@pytest.mark.parametrize("text", ["", "abc", "3x2", "0:1", "1:0", "-1:2", "1.5:1", ":", "3:", (1, 2, 3), (1.0, 2)])
def test_bad_aspect_raises_parameter_error(text):
    with pytest.raises(ParameterError) as error:
        parse_aspect(text)
    assert error.value.field == "aspect"


def test_clamp_limits_each_side_to_six_times_the_other():
    assert clamp_aspect(1, 9) == (1, 6)
    assert clamp_aspect(100, 7) == (42, 7)
    assert clamp_aspect(6, 1) == (6, 1)


@pytest.mark.parametrize("scale", ["huge", 0, -1.0, float("nan")])
def test_bad_scale_raises(scale):
    with pytest.raises(ParameterError):
        image_size("1:1", "", scale)


@pytest.mark.parametrize("size, expected, warns", [
    ((1024, 1024), (1024, 1024), False),
    ((1000, 1000), (992, 992), False),
    ((1250, 830), (1248, 832), False),
    ((2048, 2048), (2048, 2048), True),   # 4x the trained area
    ((512, 512), (512, 512), True),        # a quarter of it
    ((3, 3), (16, 16), True),
])
def test_snap_to_pixart(size, expected, warns):
    width, height, warning = snap_to_pixart(*size)
    assert (width, height) == expected
    assert width % 16 == 0 and height % 16 == 0
    assert (warning is not None) == warns
    if warns:
        assert f"{width}x{height}" in warning
