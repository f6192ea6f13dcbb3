"""Reading what tenants upload as bounded streams: the one way every kind of upload is read.

Text is read a line at a time (each line's length and UTF-8 checked as it arrives); an archive
is listed and checked before any member is read (file count, safe paths, no links, the declared
sizes against a budget), and each member is read as a stream whose actual size is counted
while it is copied, stopping at the limit; an image is checked by its header (format, pixel
count) before anything decodes it. Nothing here holds more than a line, a block or an
archive's listing in memory, so what is built on it (dataset schemas, model archives, and
detection or audio archives later) is bounded whatever the upload holds.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 1024 * 1024
# An archive's listing (a zip's central directory) is read into memory whole: this bounds it
# before it is parsed (100,000 members with names of ~300 bytes).
MAX_LISTING_BYTES = 32 * 1024 * 1024
# A tar header extension (a long name, pax attributes) is read into memory whole by tarfile.
MAX_TAR_EXTENSION_BYTES = 64 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """The bounds of one upload (core's come from the REGISTRY_MAX_* settings; a dataset schema
    may ask for less, never for more)."""

    line_bytes: int = 1024 * 1024  # one line (or CSV record) of a text upload, its ending included
    rows: int = 2_000_000  # examples of one dataset upload
    labels: int = 10_000  # distinct labels of one dataset upload
    archive_files: int = 100_000  # members an archive may list
    extracted_bytes: int = 8 * 1024**3  # bytes an archive may expand to


def upload_limits() -> UploadLimits:
    """The platform's limits: the settings when Django is configured, else the defaults."""
    default = UploadLimits()
    try:
        from django.conf import settings

        configured = settings.configured
    except ImportError:  # pragma: no cover - plugins' tools without Django
        configured = False
    if not configured:
        return default
    return UploadLimits(
        line_bytes=getattr(settings, "REGISTRY_MAX_LINE_BYTES", default.line_bytes),
        rows=getattr(settings, "REGISTRY_MAX_ROWS", default.rows),
        labels=getattr(settings, "REGISTRY_MAX_LABELS", default.labels),
        archive_files=getattr(settings, "REGISTRY_MAX_ARCHIVE_FILES", default.archive_files),
        extracted_bytes=getattr(settings, "REGISTRY_MAX_EXTRACTED_BYTES", default.extracted_bytes),
    )


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def as_dict(self) -> dict:
        return {"where": self.where, "message": self.message}


class Refused(ValueError):
    """An upload that cannot be read within its bounds or its format. The message says what to
    fix; `problems` name where (a line, a file)."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


def refused_at(where: str, message: str, fix: str = "") -> Refused:
    """A refusal of one place (`line 3`, `labels.csv line 3`): the message names it, and so does its problem."""
    start = where[:1].upper() + where[1:] if where.startswith("line") else where
    return Refused(f"{start}: {message}{'; ' + fix if fix else ''}.", [Problem(where, message)])


# --- text -----------------------------------------------------------------------------------


@contextmanager
def _binary(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


_LINE_END = re.compile(rb"\r\n?|\n")


def _raw_lines(handle: BinaryIO, limit: int) -> Iterator[bytes]:
    """The lines of a binary stream with their endings (\n, \r\n, or a lone \r as old Mac
    spreadsheets write), read a block at a time; a line over `limit` is yielded as it stands
    (cut there), for the caller to refuse."""
    pending = bytearray()
    while True:
        block = handle.read(64 * 1024)
        scanned = max(
            0, len(pending) - 1
        )  # what was pending holds no line end (but a last \r may pair with a \n)
        pending += block
        start = 0
        for end in _LINE_END.finditer(pending, scanned):
            if block and end.end() == len(pending) and pending.endswith(b"\r"):
                break  # a \n may follow in the next block
            yield bytes(pending[start : end.end()])
            start = end.end()
        del pending[:start]
        if not block:
            if pending:
                yield bytes(pending)
            return
        if len(pending) > limit:
            yield bytes(pending)
            return


def text_lines(
    source: Path | BinaryIO, *, max_line_bytes: int | None = None, name: str = ""
) -> Iterator[tuple[int, str]]:
    """(number, line) of UTF-8 text, read a line at a time, each line with its ending (a byte-order
    mark at the start is dropped). A line longer than `max_line_bytes` (its ending included) or
    bytes that are not UTF-8 refuse the file, naming the line; nothing longer is ever held."""
    limit = max_line_bytes or upload_limits().line_bytes
    with _binary(source) as handle:
        offset = 0
        number = 0
        for raw in _raw_lines(handle, limit):
            number += 1
            where = f"{name} line {number}".strip()
            if len(raw) > limit:
                raise refused_at(
                    where,
                    f"longer than {limit} bytes",
                    "split it, or check that the file's lines end with a line break",
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Refused(
                    f"{name or 'The file'} is not UTF-8 text (byte {offset + exc.start}, {where}); "
                    f"save it as UTF-8 and upload again.",
                    [Problem(where, "not UTF-8 text")],
                ) from None
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            offset += len(raw)
            yield number, line


# --- archives -------------------------------------------------------------------------------


def safe_member_path(name: str) -> str | None:
    """An archive member's path if it stays inside the archive, else None (absolute, a drive,
    backslashes, control characters, or `..` leaving it)."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return None
    normal = posixpath.normpath(name)
    if normal.startswith("..") or normal in (".", ""):
        return None
    return normal


@dataclass
class Member:
    """A file of an archive (or of a directory): its safe path and its declared size. `open()`
    gives a stream of its bytes that counts them against the archive's budget."""

    name: str
    size: int
    opener: Callable[[], BinaryIO]
    budget: Budget

    def open(self) -> BinaryIO:
        return io.BufferedReader(_CountedReader(self), buffer_size=64 * 1024)


class Budget:
    """What reading an archive may cost: members and bytes. Declared sizes are admitted while the
    archive is listed (before a member is read); the bytes read are counted while they stream,
    and reading stops at the limit, so nothing past it reaches the disk."""

    def __init__(self, *, max_bytes: int, max_files: int, what: str = "The archive"):
        self.max_bytes, self.max_files, self.what = max_bytes, max_files, what
        self.files = 0
        self.declared = 0
        self.read = 0

    def admit(self, name: str, size: int) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise Refused(
                f"{self.what} holds more than {self.max_files} files; at most {self.max_files}."
            )
        self.declared += size
        if self.declared > self.max_bytes:
            raise Refused(
                f"{self.what} expands to more than {self.max_bytes} bytes ('{name}' declares {size}); "
                f"at most {self.max_bytes}.",
                [Problem(name, f"declares {size} bytes")],
            )

    def count(self, name: str, got: int) -> None:
        self.read += got
        if self.read > self.max_bytes:
            raise Refused(
                f"{self.what} expands to more than {self.max_bytes} bytes (at '{name}'); at most {self.max_bytes}."
            )


# What reading a damaged or unusual archive member raises: zipfile (a bad CRC, an encrypted or
# unsupported entry), zlib, gzip and tarfile.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    tarfile.TarError,
    RuntimeError,
    NotImplementedError,
)


class _CountedReader(io.RawIOBase):
    """A member's bytes: never more than it declared, never past the archive's budget."""

    def __init__(self, member: Member):
        self.member = member
        self.got = 0
        self.source: BinaryIO | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        member = self.member
        try:
            if self.source is None:
                self.source = member.opener()
            # One byte more than declared is asked for, so a member that holds more is caught.
            want = min(len(buffer), member.size - self.got + 1, BLOCK)
            data = self.source.read(want)
        except Refused:
            raise
        except _READ_ERRORS as exc:
            raise Refused(
                f"'{member.name}' cannot be read from the archive ({exc}); the archive is damaged or uses "
                f"something this platform does not read (encryption, an unusual compression).",
                [Problem(member.name, "cannot be read")],
            ) from None
        if not data:
            if self.got != member.size:
                raise Refused(
                    f"'{member.name}' holds {self.got} bytes, but the archive declares {member.size}; "
                    f"the archive is damaged.",
                    [Problem(member.name, "truncated")],
                )
            return 0
        self.got += len(data)
        if self.got > member.size:
            raise Refused(
                f"'{member.name}' holds more bytes than the archive declares ({member.size}); the archive is "
                f"damaged or forged.",
                [Problem(member.name, "larger than declared")],
            )
        member.budget.count(member.name, len(data))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        super().close()


def write_member(stream: BinaryIO, target: Path, *, head: bytes = b"") -> None:
    """Copy a member's stream (after `head`, bytes already read from it) into `target`, a block at a time."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as sink:
        sink.write(head)
        for block in iter(lambda: stream.read(BLOCK), b""):
            sink.write(block)


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a header extension (a GNU long name, pax attributes) into memory whole:
    one larger than a name could need is refused before it is read."""

    def _proc_member(self, tarfile_):
        extensions = (
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
            tarfile.XHDTYPE,
            tarfile.XGLTYPE,
            tarfile.SOLARIS_XHDTYPE,
        )
        if self.type in extensions and self.size > MAX_TAR_EXTENSION_BYTES:
            raise Refused(
                f"The archive holds a header extension of {self.size} bytes; at most {MAX_TAR_EXTENSION_BYTES}."
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]  # tarfile's private hook


def _member(name: str, size: int, opener, budget: Budget, seen: set[str]) -> Member:
    safe = safe_member_path(name)
    if safe is None:
        raise Refused(
            f"The archive names an unsafe path: {name!r} (absolute, or leaving the archive).",
            [Problem(repr(name), "unsafe path")],
        )
    if safe in seen:
        raise Refused(
            f"The archive holds '{safe}' twice; keep one.", [Problem(safe, "named twice")]
        )
    seen.add(safe)
    budget.admit(safe, size)
    return Member(safe, size, opener, budget)


def _zip_members(bundle: zipfile.ZipFile, budget: Budget) -> list[Member]:
    members: list[Member] = []
    seen: set[str] = set()
    for info in bundle.infolist():
        if info.is_dir():
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            raise Refused(
                f"The archive holds {info.filename!r}, which is a link (links are refused); add the file itself."
            )
        if info.flag_bits & 0x1:
            raise Refused(f"'{info.filename}' is encrypted; upload an archive without a password.")
        members.append(
            _member(
                info.filename, info.file_size, lambda info=info: bundle.open(info), budget, seen
            )
        )
    return members


def _zip_listing_bounds(path: Path, budget: Budget) -> None:
    """The member count and listing size from the zip's end record, before zipfile parses the listing."""
    # zipfile's own reader of the end record (there since Python 2); it reads only the file's end.
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:
        # pragma: no cover - a future Python: zipfile's own parse still bounds the rest
        return
    with open(path, "rb") as handle:
        try:
            record = end_record(handle)
        except OSError:
            record = None
    if not record:
        return  # zipfile refuses it below with its own message
    entries = record[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]  # zipfile's private
    size = record[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > budget.max_files:
        raise Refused(f"{budget.what} holds {entries} files; at most {budget.max_files}.")
    if size > MAX_LISTING_BYTES:
        raise Refused(f"{budget.what}'s listing takes {size} bytes; at most {MAX_LISTING_BYTES}.")


def _tar_members(bundle: tarfile.TarFile, budget: Budget) -> list[Member]:
    members: list[Member] = []
    seen: set[str] = set()
    entries = 0
    while True:
        info = bundle.next()
        if info is None:
            return members
        entries += 1
        if entries > budget.max_files:
            raise Refused(
                f"{budget.what} holds more than {budget.max_files} files; at most {budget.max_files}."
            )
        if info.isdir():
            continue
        if not info.isfile():
            raise Refused(
                f"The archive holds {info.name!r}, which is not a regular file (links are refused)."
            )
        members.append(
            _member(info.name, info.size, lambda info=info: bundle.extractfile(info), budget, seen)
        )


def _directory_members(root: Path, budget: Budget) -> list[Member]:
    members: list[Member] = []
    seen: set[str] = set()
    for folder, directories, files in os.walk(root, followlinks=False):
        directories.sort()
        for name in sorted(directories + files):
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise Refused(f"'{relative}' is a link; use the files themselves.")
            if name in directories:
                continue
            if not path.is_file():
                raise Refused(f"'{relative}' is not a regular file.")
            members.append(
                _member(
                    relative, path.stat().st_size, lambda path=path: path.open("rb"), budget, seen
                )
            )
    return members


ARCHIVE_ENDINGS = (".zip", ".tar", ".tar.gz", ".tgz")


@contextmanager
def open_archive(source: Path, *, budget: Budget) -> Iterator[list[Member]]:
    """The members of a .zip, a .tar(.gz) or a directory, listed and checked before any is read:
    the member count, safe paths, no links, no duplicates, declared sizes within the budget.
    Each member's `open()` counts what it reads (open them in the listed order for a tar)."""
    source = Path(source)
    if source.is_dir():
        yield _directory_members(source, budget)
        return
    name = source.name.lower()
    if name.endswith(".zip"):
        _zip_listing_bounds(source, budget)
        try:
            bundle = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise Refused(f"The file is not a readable zip archive ({exc}).") from None
        with bundle:
            yield _zip_members(bundle, budget)
    elif name.endswith((".tar", ".tar.gz", ".tgz")):
        try:
            tar = tarfile.open(source, tarinfo=_BoundedTarInfo)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise Refused(f"The file is not a readable tar archive ({exc}).") from None
        with tar:
            try:
                members = _tar_members(tar, budget)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise Refused(f"The tar archive is damaged ({exc}).") from None
            yield members
    else:
        raise Refused(f"'{source.name}' is not an archive; upload a .zip or a .tar.gz.")


# --- images ---------------------------------------------------------------------------------

# The image formats uploads may hold, by the bytes they start with; Pillow opens no other.
IMAGE_SIGNATURES = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "WEBP": (b"RIFF",),  # and "WEBP" at byte 8
}
IMAGE_HEAD_BYTES = 16
NOT_AN_IMAGE = "not an image Pillow can read (PNG, JPEG, BMP, GIF, WebP)"


def image_format(head: bytes) -> str | None:
    """The format an image file's first bytes (at least 12) announce, or None."""
    for name, signatures in IMAGE_SIGNATURES.items():
        if head.startswith(signatures) and (name != "WEBP" or head[8:12] == b"WEBP"):
            return name
    return None


class ImageRefused(Refused):
    """An image that cannot be used, found from its header. `too_many`: it has more pixels than
    allowed; `size`: its width and height, when the header gave them."""

    def __init__(
        self, message: str, *, too_many: bool = False, size: tuple[int, int] | None = None
    ):
        super().__init__(message)
        self.too_many, self.size = too_many, size


_OPENED_AS = {"MPO": "JPEG"}  # a JPEG with more frames is still a JPEG here


# Pillow reads each PNG chunk whole into memory (twice, briefly) when it opens or verifies a file:
# a small image may carry one huge chunk. Chunks are walked first, by their 8-byte headers.
PNG_MAX_CHUNK = 1024 * 1024  # an ancillary chunk (text, ICC profile, EXIF …)
# one IDAT chunk (encoders write them in pieces of 8 KiB to 1 MiB)
PNG_MAX_DATA_CHUNK = 64 * 1024 * 1024


def _png_chunk_problem(source: Path | bytes) -> str | None:
    """Why a PNG's chunk layout is refused (one over its size above), or None; reads headers only."""
    import struct

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
    with handle:
        handle.seek(8)  # the signature
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return None  # a truncated file: Pillow says so
            length, kind = struct.unpack(">I4s", header)
            limit = PNG_MAX_DATA_CHUNK if kind == b"IDAT" else PNG_MAX_CHUNK
            if length > limit:
                name = kind.decode("latin-1") if kind.isalpha() else repr(kind)
                return f"a PNG chunk '{name}' of {length} bytes; at most {limit}"
            if kind == b"IEND":
                return None
            handle.seek(length + 4, io.SEEK_CUR)  # the data and its checksum


def image_header(source: Path | bytes, *, max_pixels: int) -> tuple[str, int, int]:
    """(format, width, height) of an image file (or its bytes), checked without decoding a pixel:
    the format from its first bytes and then by Pillow (one of IMAGE_SIGNATURES only), at most
    `max_pixels` pixels, and chunks that are whole (for PNG, their checksums). ImageRefused
    (with a problem in words) otherwise. Uploads and predict inputs are checked by it alike."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:IMAGE_HEAD_BYTES])
    else:
        with open(source, "rb") as handle:
            head = handle.read(IMAGE_HEAD_BYTES)
    kind = image_format(head)
    if kind is None:
        raise ImageRefused(NOT_AN_IMAGE)
    if kind == "PNG" and (problem := _png_chunk_problem(source)):
        raise ImageRefused(problem)
    try:
        with Image.open(
            io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source,
            formats=list(IMAGE_SIGNATURES),
        ) as probe:
            opened = probe.format or kind  # (set by every format it opens)
            kind = _OPENED_AS.get(opened, opened)
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageRefused(
                    f"{width}×{height} pixels; at most {max_pixels} pixels",
                    too_many=True,
                    size=(width, height),
                )
            probe.verify()
    except ImageRefused:
        raise
    except UnidentifiedImageError:
        raise ImageRefused(NOT_AN_IMAGE) from None
    except Image.DecompressionBombError as exc:
        # Pillow's own limit, checked from the header as it opens
        raise ImageRefused(f"more than {max_pixels} pixels ({exc})", too_many=True) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRefused(f"a corrupt or truncated image ({exc})") from None
    return kind, width, height


def image_problem(source: Path | bytes, *, max_pixels: int, min_side: int = 1) -> str | None:
    """Why this file (or these bytes) is not a usable image, None when it is one: its header
    checked (image_header) before its pixels are decoded, once, to prove them."""
    from PIL import Image

    try:
        _format, width, height = image_header(source, max_pixels=max_pixels)
    except ImageRefused as refused:
        return str(refused)
    if min(width, height) < min_side:
        return f"{width}×{height} pixels; each side needs at least {min_side}"
    try:
        with Image.open(
            io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source,
            formats=list(IMAGE_SIGNATURES),
        ) as image:
            image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return f"a corrupt or truncated image ({exc})"
    return None
