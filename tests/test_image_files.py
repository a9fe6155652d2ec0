"""Images with infotext as the WebUI writes and reads them (image_files.py), and the command line's console."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from tinybreaker_ext.console import ConsoleProgress
from tinybreaker_ext.errors import OutputError, ParameterError
from tinybreaker_ext.image_files import check_writable, output_paths, save_image

INFOTEXT = "a cat, ünïcode 猫 (light:1.2)\nNegative prompt: blurry\nSteps: 16, Seed: 7, Size: 16x8, TinyBreaker: on"


def read_like_a1111(path) -> str:
    """A1111 1.10's modules/images.py read_info_from_image: the PNG text chunk, else the EXIF UserComment."""
    piexif = pytest.importorskip("piexif")
    import piexif.helper

    image = Image.open(path)
    if "parameters" in image.info:
        return image.info["parameters"]
    comment = piexif.load(image.info["exif"])["Exif"][piexif.ExifIFD.UserComment]
    return piexif.helper.UserComment.load(comment)


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.JPEG", "out.webp"])
def test_every_format_carries_the_infotext_where_the_webui_reads_it(tmp_path, name):
    path = tmp_path / name
    save_image(Image.new("RGB", (16, 8), (200, 30, 30)), str(path), INFOTEXT)
    assert read_like_a1111(path) == INFOTEXT
    assert Image.open(path).format == {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}[
        name.rsplit(".", 1)[1].lower()]
    assert os.listdir(tmp_path) == [name]


def test_a_saved_image_has_the_umasks_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_image(Image.new("RGB", (4, 4)), str(tmp_path / "a.png"), "x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "a.png").st_mode & 0o777 == 0o644


def test_an_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(self, stream, *args, **kwargs):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_image(Image.new("RGB", (4, 4)), str(tmp_path / "a.png"), "x")
    assert os.listdir(tmp_path) == []


def test_output_names_of_a_batch_and_bad_extensions():
    assert output_paths("out.png", 1) == ["out.png"]
    assert output_paths("dir/out.webp", 2) == ["dir/out_1.webp", "dir/out_2.webp"]
    for bad in ("out", "out.gif", "", ".png", "dir/"):
        with pytest.raises(ParameterError, match="output"):
            output_paths(bad, 1)


def test_the_output_check_creates_folders_and_refuses_what_cannot_be_written(tmp_path):
    check_writable([str(tmp_path / "new" / "deeper" / "a.png")])
    assert os.listdir(tmp_path / "new" / "deeper") == []  # the probe file is gone
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_writable([str(tmp_path / "folder.png")])
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="file is not a folder"):
        check_writable([str(tmp_path / "file" / "a.png")])


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, bars", [(io.StringIO(), False), (FakeTerminal(), True)])
def test_a_bar_only_on_a_terminal_and_a_line_per_phase(stream, bars):
    console = ConsoleProgress(stream)
    assert console.bars is bars
    with console.phase("base", "12 steps", steps=3) as on_step:
        for step in range(3):
            on_step(step, 3, None, None)
    with console.phase("decode"):
        pass
    text = stream.getvalue()
    assert text.startswith("base: 12 steps\n") and "decode\n" in text
    assert ("\r" in text) is bars
    assert console.summary().split(": ", 1)[1].startswith("base 0.") and ", decode 0." in console.summary()


def test_quiet_prints_warnings_only():
    stream = io.StringIO()
    console = ConsoleProgress(stream, quiet=True)
    console.status("load: x")
    with console.phase("base", steps=2) as on_step:
        on_step(0, 2, None, None)
    console.warning("careful")
    assert stream.getvalue() == "warning: careful\n"
