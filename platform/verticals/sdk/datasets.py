"""Dataset schemas a task declares: which uploads it accepts and how to read them.

Core saves the upload to a private directory and calls `schema.ingest(upload, files_dir)`;
the schema returns the examples (the input of a file example is its path relative to
`files_dir`, where the schema copied it) or raises `DatasetInvalid` with the first problems,
each naming the line or the file. Core then splits, counts and stores the version.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path

from verticals.sdk.contracts import Example

MAX_PROBLEMS = 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def as_dict(self) -> dict:
        return {"where": self.where, "message": self.message}


class DatasetInvalid(Exception):
    """An upload the schema refuses; `problems` are the first ones found (by line or file)."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


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
            raise DatasetInvalid(f"The upload has {len(self.items)} problem(s){more}; fix them and upload again.", self.items)


def read_text(upload: Path) -> str:
    """An upload's text (UTF-8, a byte-order mark allowed), or DatasetInvalid saying how to fix it."""
    try:
        return upload.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetInvalid(f"The file is not UTF-8 text (byte {exc.start}); save it as UTF-8 and upload again.") from exc


def jsonl_records(text: str, problems: Problems):
    """(`line N`, record) for each line that holds a JSON object; blank lines are skipped, and
    every other line is a problem."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(where, f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        if not isinstance(record, dict):
            problems.add(where, "each line must be a JSON object")
            continue
        yield where, record


class DatasetSchema:
    """Base of the dataset schemas. `formats` are the file name endings accepted."""

    formats: tuple[str, ...] = ()
    input_kind = "text"  # "text" (inputs are strings) or "file" (inputs are files under files_dir)
    min_rows = 4
    min_labels = 2

    def describe(self) -> dict:
        """What /api/v1/tasks/ shows of this schema."""
        return {"formats": list(self.formats), "input": self.input_kind, "min_rows": self.min_rows, "min_labels": self.min_labels}

    def ingest(self, upload: Path, files_dir: Path) -> list[Example]:
        raise NotImplementedError

    def check_format(self, name: str) -> str:
        lowered = name.lower()
        for ending in sorted(self.formats, key=len, reverse=True):
            if lowered.endswith(ending):
                return ending
        raise DatasetInvalid(f"'{name}' is not an accepted file; this task takes {', '.join(self.formats)} files.")

    def check_whole(self, examples: list[Example]) -> list[Example]:
        if len(examples) < self.min_rows:
            raise DatasetInvalid(f"The upload holds {len(examples)} labelled example(s); this task needs at least {self.min_rows}.")
        labels = {e.label for e in examples}
        if len(labels) < self.min_labels:
            raise DatasetInvalid(f"The upload has {len(labels)} distinct label(s); this task needs at least {self.min_labels}.")
        return examples


def _label(value, where: str, problems: Problems) -> str | None:
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        problems.add(where, "the label is empty")
        return None
    if isinstance(value, (int, str)):
        return str(value).strip()
    problems.add(where, f"the label must be a string or an integer, not {type(value).__name__}")
    return None


class LabelledText(DatasetSchema):
    """Text with a label: CSV with a header (`text,label`) or JSONL ({"text": …, "label": …})."""

    formats = (".csv", ".jsonl")
    input_kind = "text"

    def __init__(self, *, text_field: str = "text", label_field: str = "label", max_chars: int = 20_000):
        self.text_field = text_field
        self.label_field = label_field
        self.max_chars = max_chars

    def describe(self) -> dict:
        return {**super().describe(), "fields": {self.text_field: "string", self.label_field: "string"},
                "max_chars": self.max_chars,
                "example": {".csv": f"{self.text_field},{self.label_field}\nGreat value,positive",
                            ".jsonl": json.dumps({self.text_field: "Great value", self.label_field: "positive"})}}

    def ingest(self, upload: Path, files_dir: Path) -> list[Example]:
        ending = self.check_format(upload.name)
        text = read_text(upload)
        problems = Problems()
        rows = self._csv(text, problems) if ending == ".csv" else jsonl_records(text, problems)
        examples = []
        for where, record in rows:
            value = record.get(self.text_field)
            if not isinstance(value, str):
                problems.add(where, f"'{self.text_field}' must be a string" if value is not None else f"'{self.text_field}' is missing")
                continue
            if not value.strip():
                problems.add(where, f"'{self.text_field}' is empty")
                continue
            if len(value) > self.max_chars:
                problems.add(where, f"'{self.text_field}' has {len(value)} characters; at most {self.max_chars}")
                continue
            label = _label(record.get(self.label_field), where, problems)
            if label is not None:
                examples.append(Example(input=value, label=label, ref=where))
        problems.fail()
        return self.check_whole(examples)

    def _csv(self, text: str, problems: Problems):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [f for f in (self.text_field, self.label_field) if f not in header]
        if missing:
            raise DatasetInvalid(
                f"The CSV header must name the columns {self.text_field!r} and {self.label_field!r}; "
                f"it names {', '.join(repr(h) for h in header) or 'nothing'}.",
                [Problem("line 1", f"missing column(s): {', '.join(missing)}")],
            )
        try:
            for record in reader:
                where = f"line {reader.line_num}"
                if None in record:
                    problems.add(where, f"{len(header) + len(record[None])} fields, but the header names {len(header)}")
                    continue
                yield where, record
        except csv.Error as exc:
            problems.add(f"line {reader.line_num}", f"not valid CSV: {exc}")



class LabelledImages(DatasetSchema):
    """Images with a label, in a .zip: one folder per class (`cat/1.png`), or a CSV `path,label`
    (any name ending in .csv, at the top of the archive) next to the images it names."""

    formats = (".zip",)
    input_kind = "file"

    def __init__(self, *, max_files: int = 200_000, max_extracted_bytes: int = 4 * 1024**3, max_pixels: int = 40_000_000,
                 min_side: int = 8):
        self.max_files = max_files
        self.max_extracted_bytes = max_extracted_bytes
        self.max_pixels = max_pixels
        self.min_side = min_side

    def describe(self) -> dict:
        return {**super().describe(), "layouts": ["class folders: <label>/<image>", "labels.csv (path,label) + images"],
                "image_types": list(IMAGE_SUFFIXES), "max_pixels": self.max_pixels}

    def ingest(self, upload: Path, files_dir: Path) -> list[Example]:
        self.check_format(upload.name)
        try:
            archive = zipfile.ZipFile(upload)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetInvalid(f"The file is not a readable zip archive ({exc}).") from exc
        with archive:
            everything = [m for m in archive.infolist() if not m.is_dir()]
            self._check_archive(everything)
            members = [m for m in everything if not _hidden(m.filename)]
            csvs = [m for m in members if m.filename.lower().endswith(".csv") and "/" not in m.filename.strip("/")]
            problems = Problems()
            if csvs:
                pairs = self._pairs_from_csv(archive, csvs[0], members, problems)
            else:
                pairs = self._pairs_from_folders(members, problems)
            examples = []
            for member, label in pairs:
                relative = safe_member_path(member.filename)
                data = archive.read(member)
                problem = image_problem(data, max_pixels=self.max_pixels, min_side=self.min_side)
                if problem:
                    problems.add(member.filename, problem)
                    continue
                target = files_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                examples.append(Example(input=relative, label=label, ref=member.filename))
            problems.fail()
        return self.check_whole(examples)

    def _check_archive(self, members) -> None:
        if len(members) > self.max_files:
            raise DatasetInvalid(f"The archive holds {len(members)} files; at most {self.max_files}.")
        total = sum(m.file_size for m in members)
        if total > self.max_extracted_bytes:
            raise DatasetInvalid(f"The archive expands to {total} bytes; at most {self.max_extracted_bytes}.")
        for m in members:
            if safe_member_path(m.filename) is None:
                raise DatasetInvalid(f"The archive names an unsafe path: {m.filename!r} (absolute, or leaving the archive).")

    def _pairs_from_folders(self, members, problems: Problems):
        images = [m for m in members if m.filename.lower().endswith(IMAGE_SUFFIXES)]
        if not images:
            raise DatasetInvalid("The archive holds no images (.png, .jpg, …); put each class's images in a folder named after the class.")
        # One shared top folder (a zipped directory) is not a class: look one level below it.
        parts = [m.filename.strip("/").split("/") for m in images]
        depth = 1 if all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1 else 0
        pairs = []
        for member, p in zip(images, parts, strict=True):
            if len(p) < depth + 2:
                problems.add(member.filename, "an image outside a class folder; put it in a folder named after its label")
                continue
            pairs.append((member, p[depth]))
        for m in members:
            if not m.filename.lower().endswith(IMAGE_SUFFIXES):
                problems.add(m.filename, f"not an image; accepted types: {', '.join(IMAGE_SUFFIXES)}")
        return pairs

    def _pairs_from_csv(self, archive, listing, members, problems: Problems):
        by_name = {m.filename.strip("/"): m for m in members}
        try:
            text = archive.read(listing).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DatasetInvalid(f"{listing.filename} is not UTF-8 text.") from exc
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not {"path", "label"} <= set(reader.fieldnames or []):
            raise DatasetInvalid(f"{listing.filename} must have the header 'path,label'.", [Problem(f"{listing.filename} line 1", "missing columns")])
        pairs = []
        for record in reader:
            where = f"{listing.filename} line {reader.line_num}"
            name = posixpath.normpath((record.get("path") or "").strip()).lstrip("./")
            member = by_name.get(name)
            if member is None:
                problems.add(where, f"the archive has no file {record.get('path')!r}")
                continue
            if not name.lower().endswith(IMAGE_SUFFIXES):
                problems.add(where, f"{name!r} is not an image; accepted types: {', '.join(IMAGE_SUFFIXES)}")
                continue
            label = _label(record.get("label"), where, problems)
            if label is not None:
                pairs.append((member, label))
        return pairs


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/") if part)


def safe_member_path(name: str) -> str | None:
    """An archive member's path if it stays inside the archive, else None (absolute, a drive,
    backslashes, or `..` leaving it). Dataset and model archives both go through it."""
    if name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]:
        return None
    normal = posixpath.normpath(name)
    if normal.startswith("..") or normal in (".", ""):
        return None
    return normal


def image_problem(data: bytes, *, max_pixels: int, min_side: int = 1) -> str | None:
    """Why these bytes are not a usable image (None when they are one). Reads the header before
    decoding, so a decompression bomb is refused without being expanded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                return f"{width}×{height} pixels; at most {max_pixels} pixels"
            if min(width, height) < min_side:
                return f"{width}×{height} pixels; each side needs at least {min_side}"
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except UnidentifiedImageError:
        return "not an image Pillow can read (PNG, JPEG, BMP, GIF, WebP)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"a corrupt or truncated image ({exc})"
    return None
