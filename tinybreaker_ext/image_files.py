"""Image files with their infotext, as the WebUI writes them (A1111's ``modules/images.py``,
``save_image_with_geninfo``): PNG gets a ``parameters`` text chunk, JPEG and WebP an EXIF UserComment, so the WebUI's
PNG Info reads all three."""

from __future__ import annotations

import os
import secrets
import struct
import tempfile
from pathlib import Path

from .errors import OutputError, ParameterError

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
QUALITY = 95  # JPEG and lossy WebP
PNG_COMPRESS_LEVEL = 4  # A1111's default is 6; 4 is close in size and faster
_EXIF_IFD_POINTER, _USER_COMMENT, _LONG, _UNDEFINED = 0x8769, 0x9286, 4, 7


def output_paths(output: str, count: int) -> list[str]:
    """The files a run of ``count`` images writes: ``output`` itself, or ``name_1.ext``, ``name_2.ext`` …; raises
    ParameterError for a name without a known image extension."""
    root, extension = os.path.splitext(output)
    if not os.path.basename(root) or extension.lower() not in IMAGE_FORMATS:
        raise ParameterError("output", f"{output!r} must be a file name ending in "
                                       f"{', '.join(IMAGE_FORMATS)} (the format follows the extension)")
    if count == 1:
        return [output]
    return [f"{root}_{index + 1}{extension}" for index in range(count)]


def check_writable(paths: list[str]) -> None:
    """Creates the folders and tries a temporary file in each, so a bad ``-o`` fails before any compute."""
    for path in paths:
        if os.path.isdir(path):
            raise OutputError(path, "is a folder; give a file name")
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".tinybreaker-", suffix=".tmp"):
                pass
        except (FileExistsError, NotADirectoryError):
            raise OutputError(path, f"{_first_file(folder)} is not a folder") from None
        except OSError as error:
            raise OutputError(path, f"cannot write into {folder} ({error.strerror or error})") from None


def _first_file(folder: str) -> str:
    """The part of ``folder``'s path that exists as something other than a folder."""
    path = Path(os.path.abspath(folder))
    return next((str(part) for part in [*reversed(path.parents), path] if part.exists() and not part.is_dir()),
                folder)


def save_image(image, path: str, infotext: str) -> None:
    """``image`` (PIL) at ``path`` in the format its extension names, with ``infotext``; atomic."""
    from PIL.PngImagePlugin import PngInfo

    image_format = IMAGE_FORMATS[os.path.splitext(path)[1].lower()]
    if image_format == "PNG":
        info = PngInfo()
        info.add_text("parameters", infotext)
        options = {"pnginfo": info, "compress_level": PNG_COMPRESS_LEVEL}
    else:
        options = {"exif": exif_user_comment(infotext), "quality": QUALITY}
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as stream:  # not mkstemp: the image gets the umask's permissions, not 0600
            image.save(stream, format=image_format, **options)
        os.replace(temporary, path)
    except BaseException:  # includes Ctrl+C: no partial file under either name
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def pil_images(images) -> list:
    """Images ``[B, 3, H, W]`` in [0, 1] as 8-bit RGB PIL images (rounded, as the WebUI saves them)."""
    from PIL import Image

    arrays = (images.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).byte().cpu().numpy()
    return [Image.fromarray(array) for array in arrays]


def exif_user_comment(text: str) -> bytes:
    """An EXIF block holding only ``text`` as UserComment, as piexif's ``UserComment.dump(text, "unicode")`` (what
    A1111 writes and reads). Written by hand: Pillow 9.5 to 12 store an untyped UserComment as BYTE, which piexif
    reads back as a tuple instead of the text."""
    comment = b"UNICODE\0" + text.encode("utf-16-be")
    exif_ifd = 8 + 2 + 12 + 4  # after the header and the first IFD (one entry, then the next-IFD offset)
    data = exif_ifd + 2 + 12 + 4
    tiff = (b"II*\0" + struct.pack("<I", 8)
            + struct.pack("<HHHII", 1, _EXIF_IFD_POINTER, _LONG, 1, exif_ifd) + struct.pack("<I", 0)
            + struct.pack("<HHHII", 1, _USER_COMMENT, _UNDEFINED, len(comment), data) + struct.pack("<I", 0)
            + comment)
    return b"Exif\0\0" + tiff
