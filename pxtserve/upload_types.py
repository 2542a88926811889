"""The extension an uploaded file is stored under: the type its bytes are, never the name the client gave.

The stored extension decides the type the file is later served with, so a client's name would let it
choose: a valid PNG named `p.html` would be served as text/html on our origin. Images are what PIL
recognises, video, audio and PDF/office documents what puremagic's magic numbers say (what Pixeltable
uses for documents); UTF-8 text is `.txt` (`.md` when the client called it markdown: neither runs in a
browser). Anything else is `.bin`, which nothing renders. HTML, SVG and XML documents are therefore
stored as text: they would run scripts when served.
"""

from __future__ import annotations

from pathlib import Path

UNKNOWN = ".bin"
# PIL format -> the extension Pixeltable and browsers expect of it
_IMAGE_EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "GIF": ".gif",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tiff",
    "ICO": ".ico",
    "AVIF": ".avif",
    "HEIF": ".heic",
}
# what puremagic may name that is media or a document, and nothing a browser runs
_MAGIC_EXTENSIONS = frozenset(
    {
        *(".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".3gp", ".flv", ".wmv"),
        *(".mp3", ".wav", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".wma", ".aif", ".aiff"),
        *(".pdf", ".docx", ".pptx", ".xlsx"),
    }
)
_TEXT_SAMPLE = 64 * 1024


def detected_extension(path: Path, client_name: str = "") -> str:
    """The extension for the file at `path`, from its content; `client_name` only tells markdown from text."""
    return _image_extension(path) or _magic_extension(path) or _text_extension(path, client_name) or UNKNOWN


def _image_extension(path: Path) -> str | None:
    import PIL.Image

    try:
        with PIL.Image.open(path) as image:  # reads the header only
            fmt = image.format or ""
    except (OSError, ValueError, PIL.Image.DecompressionBombError):
        return None
    return _IMAGE_EXTENSIONS.get(fmt)


def _magic_extension(path: Path) -> str | None:
    import puremagic

    try:
        extension = puremagic.from_file(str(path)).lower()
    except (puremagic.PureError, OSError, ValueError):
        return None
    return extension if extension in _MAGIC_EXTENSIONS else None


def _text_extension(path: Path, client_name: str) -> str | None:
    with open(path, "rb") as f:
        sample = f.read(_TEXT_SAMPLE)
    if b"\0" in sample:
        return None
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 3:  # not just a character cut at the sample's end
            return None
    return ".md" if client_name.lower().endswith((".md", ".markdown")) else ".txt"
