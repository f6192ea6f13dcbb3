"""The bounded readers every upload goes through (verticals.sdk.ingestion) and the safetensors check."""

import io
import struct
import zipfile

import pytest

from tests.registry.hostile import safetensors_file, zip_file
from verticals.sdk.artifacts import NotSafetensors, safetensors_header, safetensors_shapes
from verticals.sdk.ingestion import (
    Budget,
    Member,
    Refused,
    open_archive,
    safe_member_path,
    text_lines,
)


def lines_of(data: bytes, **options) -> list[tuple[int, str]]:
    return list(text_lines(io.BytesIO(data), **options))


def test_text_is_read_a_line_at_a_time_with_its_endings():
    assert lines_of(b"\xef\xbb\xbfa,b\r\nc\n\nlast") == [
        (1, "a,b\r\n"),
        (2, "c\n"),
        (3, "\n"),
        (4, "last"),
    ]


def test_old_mac_line_breaks_and_a_crlf_split_between_blocks_are_one_line_end():
    assert lines_of(b"a,b\rc,d\r") == [(1, "a,b\r"), (2, "c,d\r")]
    first = b"x" * (64 * 1024 - 1) + b"\r"  # the block ends between \r and \n
    assert [n for n, _ in lines_of(first + b"\nnext\n", max_line_bytes=10**6)] == [1, 2]


def test_a_line_over_the_limit_is_refused_before_more_is_read():
    source = io.BytesIO(b"ok\n" + b"x" * 100 + b"\n" + b"y" * 10_000_000)
    with pytest.raises(Refused) as refused:
        list(text_lines(source, max_line_bytes=50, name="rows.csv"))
    assert str(refused.value).startswith("rows.csv line 2: longer than 50 bytes")
    assert source.tell() <= 3 + 51 + 64 * 1024  # the third line was never read


def test_bytes_that_are_not_utf8_name_their_line_and_byte():
    with pytest.raises(Refused, match=r"not UTF-8 text \(byte 9, line 3\)"):
        lines_of("fine\nsé\n".encode() + b"\xff\n")


def member(data: bytes, size: int, budget: Budget | None = None) -> Member:
    return Member(
        "a/file.bin",
        size,
        lambda: io.BytesIO(data),
        budget or Budget(max_bytes=10**9, max_files=10),
    )


def test_a_member_never_yields_more_than_it_declares_nor_past_the_budget():
    with pytest.raises(Refused, match="holds more bytes than the archive declares \\(10\\)"):
        member(b"x" * 11, 10).open().read()
    with pytest.raises(Refused, match="holds 5 bytes, but the archive declares 10"):
        member(b"x" * 5, 10).open().read()
    budget = Budget(max_bytes=15, max_files=10)
    assert member(b"x" * 10, 10, budget).open().read() == b"x" * 10
    with pytest.raises(Refused, match="expands to more than 15 bytes \\(at 'a/file.bin'\\)"):
        member(b"y" * 10, 10, budget).open().read()


@pytest.mark.parametrize(
    "name,expected",
    [
        ("a/b.png", "a/b.png"),
        ("a/./b.png", "a/b.png"),
        ("../b.png", None),
        ("a/../../b", None),
        ("/etc/passwd", None),
        ("C:/x", None),
        ("a\\b", None),
        ("a\x00b", None),
        ("line\nbreak", None),
        ("", None),
        (".", None),
    ],
)
def test_member_paths_stay_inside_the_archive(name, expected):
    assert safe_member_path(name) == expected


def test_archive_listings_refuse_links_duplicates_encryption_and_declared_excess(tmp_path):
    def listed(path, **budget):
        with open_archive(
            path, budget=Budget(**{"max_bytes": 10**6, "max_files": 100, **budget})
        ) as members:
            return [(m.name, m.size) for m in members]

    assert listed(zip_file(tmp_path / "ok.zip", {"a.txt": b"hi", "b/c.txt": b"yo"})) == [
        ("a.txt", 2),
        ("b/c.txt", 2),
    ]
    with pytest.raises(Refused, match="expands to more than 3 bytes \\('b/c.txt' declares 2\\)"):
        listed(tmp_path / "ok.zip", max_bytes=3)
    with pytest.raises(Refused, match="holds 'a.txt' twice"):
        listed(zip_file(tmp_path / "twice.zip", {"a.txt": b"1", "./a.txt": b"2"}))
    linked = tmp_path / "link.zip"
    with zipfile.ZipFile(linked, "w") as bundle:
        info = zipfile.ZipInfo("config.json")
        info.external_attr = 0o120777 << 16
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(Refused, match="is a link"):
        listed(linked)
    locked = bytearray(zip_file(tmp_path / "locked.zip", {"a.txt": b"secret"}).read_bytes())
    locked[6] |= 1  # the encryption flag, in the local header
    central = locked.index(b"PK\x01\x02")
    locked[central + 8] |= 1  # and in the listing
    (tmp_path / "locked.zip").write_bytes(bytes(locked))
    with pytest.raises(Refused, match="'a.txt' is encrypted"):
        listed(tmp_path / "locked.zip")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "real.txt").write_text("x")
    (folder / "alias.txt").symlink_to(folder / "real.txt")
    with pytest.raises(Refused, match="'alias.txt' is a link"):
        listed(folder)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(Refused, match="not a readable zip archive"):
        listed(bad)


def header_of(data: bytes):
    return safetensors_header(io.BytesIO(data), size=len(data))


def test_a_real_safetensors_file_passes_with_its_shapes(tmp_path):
    import torch
    from safetensors.torch import save

    data = save(
        {"a": torch.zeros(3, 4), "b": torch.ones(2, dtype=torch.bfloat16), "empty": torch.zeros(0)}
    )
    header, head = header_of(data)
    assert header.shapes() == {"a": (3, 4), "b": (2,), "empty": (0,)} and header.file_bytes == len(
        data
    )
    assert data.startswith(head) and len(head) == 8 + header.length
    (tmp_path / "w.safetensors").write_bytes(data)
    assert safetensors_shapes(tmp_path / "w.safetensors") == header.shapes()
    assert safetensors_shapes(tmp_path / "missing.safetensors") is None


def raw_header(text: str, data: int = 0) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode() + bytes(data)


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"", "holds 0 byte(s)"),
        (raw_header("", 4), "header of 0 bytes"),
        (
            struct.pack("<Q", 2**62) + b"{}",
            "header of 4611686018427387904 bytes, more than the file holds (10 bytes)",
        ),
        (
            raw_header('{"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}', 1),
            "dtype 'Q7'",
        ),
        (
            raw_header('{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', 4),
            "the shape [-1]",
        ),
        (
            raw_header('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}', 4),
            "data_offsets [4, 0]",
        ),
        (
            raw_header(
                '{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, '
                '"b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}',
                6,
            ),
            "overlap or leave a gap",
        ),
        (
            raw_header('{"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}', 1),
            "(1.5 bytes)",
        ),
        (safetensors_file({"w": ("F32", [2])}) + b"extra", "the file holds 13 after the header"),
        (raw_header('{"__metadata__": {"a": 1}}'), "__metadata__ must map names to strings"),
        (raw_header("[" * 50_000 + "]" * 50_000), "not a JSON object"),
        (
            raw_header(
                '{"w": {"dtype": "U8", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 1]}}', 1
            ),
            "not a JSON object",
        ),
    ],
)
def test_malformed_safetensors_headers_say_what_is_wrong(data, fragment):
    with pytest.raises(NotSafetensors) as refused:
        header_of(data)
    assert fragment in str(refused.value)


def png_with_chunk(kind: bytes, size: int) -> bytes:
    """A 16×16 PNG carrying one extra chunk of `size` bytes before its image data."""
    import zlib

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(out, "PNG")
    data = out.getvalue()
    at = data.index(b"IDAT") - 4
    body = bytes(size)
    chunk = struct.pack(">I", size) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return data[:at] + chunk + data[at:]


def test_a_small_png_carrying_a_huge_chunk_is_refused_before_pillow_reads_it(tmp_path):
    # Pillow reads a chunk whole (twice, for a moment): a 16×16 image with 100 MB of text took the
    # process 200 MB up before it was accepted.
    from verticals.sdk.ingestion import image_problem

    path = tmp_path / "text.png"
    path.write_bytes(png_with_chunk(b"prVt", 3 * 1024 * 1024))
    assert (
        image_problem(path, max_pixels=10**6)
        == "a PNG chunk 'prVt' of 3145728 bytes; at most 1048576"
    )
    assert (
        image_problem(png_with_chunk(b"tEXt", 1000), max_pixels=10**6) is None
    )  # small ones are fine
