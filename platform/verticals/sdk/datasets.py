"""Dataset schemas a task declares: which uploads it accepts and how to read them.

Core saves the upload to a private directory and streams `schema.read(upload, files_dir)`: the
schema yields each example as it reads it (the input of a file example is its path relative to
`files_dir`, where the schema copied it), and raises `DatasetInvalid` with the first problems,
each naming the line or the file. Core writes each example to the version's examples file as it
arrives, then splits, counts and stores the version. Schemas read through
`verticals.sdk.ingestion`, so a line, an archive member and an image are bounded as they are read.
"""

from __future__ import annotations

import csv
import json
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from verticals.sdk.contracts import Example
from verticals.sdk.ingestion import (
    IMAGE_HEAD_BYTES,
    NOT_AN_IMAGE,
    Budget,
    Member,
    Problem,
    Refused,
    image_format,
    image_problem,
    open_archive,
    refused_at,
    safe_member_path,
    text_lines,
    upload_limits,
    write_member,
)

__all__ = [
    "DatasetInvalid",
    "DatasetSchema",
    "LabelledImages",
    "LabelledText",
    "Problem",
    "Problems",
    "csv_records",
    "image_problem",
    "jsonl_records",
    "safe_member_path",
]

MAX_PROBLEMS = 20
MAX_LABEL_CHARS = 200
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

# One exception for every refused upload (the ingestion layer raises it for a line too long or an
# archive over its budget); schemas raise it by this name, with the problems they found.
DatasetInvalid = Refused


class Problems:
    """Collects problems; stops reading once MAX_PROBLEMS are known."""

    def __init__(self):
        self.items: list[Problem] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(Problem(where, message))
        if len(self.items) >= MAX_PROBLEMS:
            self.fail()

    def fail(self) -> None:
        if self.items:
            more = " (the first ones)" if len(self.items) >= MAX_PROBLEMS else ""
            raise DatasetInvalid(
                f"The upload has {len(self.items)} problem(s){more}; fix them and upload again.",
                self.items,
            )


def jsonl_records(
    source: Path | BinaryIO, problems: Problems, *, name: str = ""
) -> Iterator[tuple[str, dict]]:
    """(`line N`, record) for each line that holds a JSON object, read a line at a time; blank
    lines are skipped, and every other line is a problem."""
    for number, line in text_lines(source, name=name):
        if not line.strip():
            continue
        where = f"{name} line {number}".strip()
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(where, f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        except ValueError:  # an integer of thousands of digits (Python reads at most 4,300)
            problems.add(where, "a number in it has more digits than any value holds")
            continue
        except RecursionError:
            problems.add(where, "the JSON is nested too deeply")
            continue
        if not isinstance(record, dict):
            problems.add(where, "each line must be a JSON object")
            continue
        yield where, record


def csv_records(
    source: Path | BinaryIO, problems: Problems, *, name: str = ""
) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    """The header of a CSV file and its records as (`line N`, record), read a record at a time. A
    record (which quoted line breaks spread over lines) is bounded like a line; one with more
    fields than the header names, and a CSV error, are problems."""
    limit = upload_limits().line_bytes
    pending = [0]  # characters of the record being read

    def lines():
        for number, line in text_lines(source, max_line_bytes=limit, name=name):
            pending[0] += len(line)
            if pending[0] > limit:
                where = f"{name} line {number}".strip()
                raise refused_at(
                    where,
                    f"a record longer than {limit} characters",
                    "check for a quote that is never closed",
                )
            yield line

    reader = csv.DictReader(lines())
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise DatasetInvalid(
            f"{name or 'The file'} is not valid CSV: {exc}.",
            [Problem(f"{name} line 1".strip(), str(exc))],
        ) from None

    def records():
        pending[0] = 0
        try:
            for record in reader:
                pending[0] = 0
                where = f"{name} line {reader.line_num}".strip()
                if None in record:
                    problems.add(
                        where,
                        f"{len(header) + len(record[None])} fields, but the header names {len(header)}",
                    )
                    continue
                yield where, record
        except csv.Error as exc:
            problems.add(f"{name} line {reader.line_num}".strip(), f"not valid CSV: {exc}")

    return header, records()


class DatasetSchema:
    """Base of the dataset schemas. `formats` are the file name endings accepted."""

    formats: tuple[str, ...] = ()
    input_kind = "text"  # "text" (inputs are strings) or "file" (inputs are files under files_dir)
    min_rows = 4
    min_labels = 2

    def describe(self) -> dict:
        """What /api/v1/tasks/ shows of this schema."""
        return {
            "formats": list(self.formats),
            "input": self.input_kind,
            "min_rows": self.min_rows,
            "min_labels": self.min_labels,
        }

    def read(self, upload: Path, files_dir: Path) -> Iterator[Example]:
        """Yield the upload's examples as they are read (never the whole upload in memory); raise
        DatasetInvalid, with the problems found, once the upload cannot be used."""
        raise NotImplementedError

    def check_counts(self, rows: int, labels: int) -> None:
        """Whether the whole upload is enough for the task (core calls it once every example is read)."""
        if rows < self.min_rows:
            kind = "labelled example(s)" if self.min_labels else "example(s)"
            raise DatasetInvalid(
                f"The upload holds {rows} {kind}; this task needs at least {self.min_rows}."
            )
        if labels < self.min_labels:
            raise DatasetInvalid(
                f"The upload has {labels} distinct label(s); this task needs at least {self.min_labels}."
            )

    def ingest(self, upload: Path, files_dir: Path) -> list[Example]:
        """Every example of an upload as a list, checked as core checks it: for tests and local tools
        on small data (core streams `read` instead)."""
        examples = list(self.read(upload, files_dir))
        self.check_counts(len(examples), len({e.label for e in examples if e.label is not None}))
        return examples

    def check_format(self, name: str) -> str:
        lowered = name.lower()
        for ending in sorted(self.formats, key=len, reverse=True):
            if lowered.endswith(ending):
                return ending
        raise DatasetInvalid(
            f"'{name}' is not an accepted file; this task takes {', '.join(self.formats)} files."
        )


def _label(value, where: str, problems: Problems) -> str | None:
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        problems.add(where, "the label is empty")
        return None
    if not isinstance(value, (int, str)):
        problems.add(where, f"the label must be a string or an integer, not {type(value).__name__}")
        return None
    label = str(value).strip()
    if len(label) > MAX_LABEL_CHARS:
        problems.add(where, f"the label has {len(label)} characters; at most {MAX_LABEL_CHARS}")
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in label):
        problems.add(
            where,
            "the label holds a control character (a NUL byte, a tab, a line break …); remove it",
        )
        return None
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in label):
        # JSON's "\ud800" alone: no database stores it
        problems.add(
            where,
            "the label holds half of a surrogate pair, which is no character; fix its encoding",
        )
        return None
    return label


class LabelledText(DatasetSchema):
    """Text with a label: CSV with a header (`text,label`) or JSONL ({"text": …, "label": …})."""

    formats = (".csv", ".jsonl")
    input_kind = "text"

    def __init__(
        self, *, text_field: str = "text", label_field: str = "label", max_chars: int = 20_000
    ):
        self.text_field = text_field
        self.label_field = label_field
        self.max_chars = max_chars

    def describe(self) -> dict:
        return {
            **super().describe(),
            "fields": {self.text_field: "string", self.label_field: "string"},
            "max_chars": self.max_chars,
            "example": {
                ".csv": f"{self.text_field},{self.label_field}\nGreat value,positive",
                ".jsonl": json.dumps(
                    {self.text_field: "Great value", self.label_field: "positive"}
                ),
            },
        }

    def read(self, upload: Path, files_dir: Path) -> Iterator[Example]:
        ending = self.check_format(upload.name)
        problems = Problems()
        rows = self._csv(upload, problems) if ending == ".csv" else jsonl_records(upload, problems)
        for where, record in rows:
            value = record.get(self.text_field)
            if not isinstance(value, str):
                problems.add(
                    where,
                    f"'{self.text_field}' must be a string"
                    if value is not None
                    else f"'{self.text_field}' is missing",
                )
                continue
            if not value.strip():
                problems.add(where, f"'{self.text_field}' is empty")
                continue
            if len(value) > self.max_chars:
                problems.add(
                    where,
                    f"'{self.text_field}' has {len(value)} characters; at most {self.max_chars}",
                )
                continue
            label = _label(record.get(self.label_field), where, problems)
            if label is not None:
                yield Example(input=value, label=label, ref=where)
        problems.fail()

    def _csv(self, upload: Path, problems: Problems):
        header, records = csv_records(upload, problems)
        missing = [f for f in (self.text_field, self.label_field) if f not in header]
        if missing:
            raise DatasetInvalid(
                f"The CSV header must name the columns {self.text_field!r} and {self.label_field!r}; "
                f"it names {', '.join(repr(h) for h in header) or 'nothing'}.",
                [Problem("line 1", f"missing column(s): {', '.join(missing)}")],
            )
        return records


class LabelledImages(DatasetSchema):
    """Images with a label, in a .zip: one folder per class (`cat/1.png`), or a CSV `path,label`
    (any name ending in .csv, at the top of the archive) next to the images it names.

    The archive's listing is checked before anything is read (files, declared sizes, paths);
    each image's declared size, then its first bytes (the format), then its header (width ×
    height) are checked before it is decoded, from the file it was copied to."""

    formats = (".zip",)
    input_kind = "file"

    def __init__(
        self,
        *,
        max_files: int = 200_000,
        max_extracted_bytes: int = 4 * 1024**3,
        max_pixels: int = 40_000_000,
        min_side: int = 8,
    ):
        self.max_files = max_files
        self.max_extracted_bytes = max_extracted_bytes
        self.max_pixels = max_pixels
        self.min_side = min_side

    @property
    def max_image_bytes(self) -> int:
        """The largest file an allowed image can be: its pixels uncompressed at 8 bytes each (16-bit RGBA)."""
        return self.max_pixels * 8 + 1024 * 1024

    def describe(self) -> dict:
        return {
            **super().describe(),
            "layouts": ["class folders: <label>/<image>", "labels.csv (path,label) + images"],
            "image_types": list(IMAGE_SUFFIXES),
            "max_pixels": self.max_pixels,
        }

    def read(self, upload: Path, files_dir: Path) -> Iterator[Example]:
        self.check_format(upload.name)
        bounds = upload_limits()
        budget = Budget(
            max_bytes=min(self.max_extracted_bytes, bounds.extracted_bytes),
            max_files=min(self.max_files, bounds.archive_files),
        )
        with open_archive(upload, budget=budget) as everything:
            members = [m for m in everything if not _hidden(m.name)]
            csvs = [m for m in members if m.name.lower().endswith(".csv") and "/" not in m.name]
            problems = Problems()
            if csvs:
                pairs = self._pairs_from_csv(csvs[0], members, problems)
            else:
                pairs = self._pairs_from_folders(members, problems)
            for member, label in pairs:
                problem = self._copy_image(member, files_dir / member.name)
                if problem:
                    problems.add(member.name, problem)
                    continue
                yield Example(input=member.name, label=label, ref=member.name)
            problems.fail()

    def _copy_image(self, member: Member, target: Path) -> str | None:
        """Copy one image into `target` and check it (None when it is usable; nothing stays when it is not)."""
        if member.size > self.max_image_bytes:
            return (
                f"{member.size} bytes; an image of at most {self.max_pixels} pixels takes at most "
                f"{self.max_image_bytes} bytes"
            )
        with member.open() as stream:
            head = stream.read(IMAGE_HEAD_BYTES)
            if image_format(head) is None:
                return NOT_AN_IMAGE
            write_member(stream, target, head=head)
        problem = image_problem(target, max_pixels=self.max_pixels, min_side=self.min_side)
        if problem:
            target.unlink()
        return problem

    def _pairs_from_folders(self, members: list[Member], problems: Problems):
        images = [m for m in members if m.name.lower().endswith(IMAGE_SUFFIXES)]
        if not images:
            raise DatasetInvalid(
                "The archive holds no images (.png, .jpg, …); put each class's images in a folder named after the class."
            )
        # One shared top folder (a zipped directory) is not a class: look one level below it.
        parts = [m.name.split("/") for m in images]
        depth = 1 if all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1 else 0
        pairs = []
        for member, p in zip(images, parts, strict=True):
            if len(p) < depth + 2:
                problems.add(
                    member.name,
                    "an image outside a class folder; put it in a folder named after its label",
                )
                continue
            label = _label(p[depth], member.name, problems)
            if label is not None:
                pairs.append((member, label))
        for m in members:
            if not m.name.lower().endswith(IMAGE_SUFFIXES):
                problems.add(m.name, f"not an image; accepted types: {', '.join(IMAGE_SUFFIXES)}")
        return pairs

    def _pairs_from_csv(self, listing: Member, members: list[Member], problems: Problems):
        by_name = {m.name: m for m in members}
        pairs = []
        with listing.open() as stream:
            header, records = csv_records(stream, problems, name=listing.name)
            if not {"path", "label"} <= set(header):
                raise DatasetInvalid(
                    f"{listing.name} must have the header 'path,label'.",
                    [Problem(f"{listing.name} line 1", "missing columns")],
                )
            for where, record in records:
                name = posixpath.normpath((record.get("path") or "").strip()).lstrip("./")
                member = by_name.get(name)
                if member is None:
                    problems.add(where, f"the archive has no file {record.get('path')!r}")
                    continue
                if not name.lower().endswith(IMAGE_SUFFIXES):
                    problems.add(
                        where,
                        f"{name!r} is not an image; accepted types: {', '.join(IMAGE_SUFFIXES)}",
                    )
                    continue
                label = _label(record.get("label"), where, problems)
                if label is not None:
                    pairs.append((member, label))
        return pairs


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/") if part)
