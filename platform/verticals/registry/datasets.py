"""A dataset version's files, built from an upload in bounded memory, and its seeded split.

The task's schema yields examples as it reads them; each is written to a rows file on disk as it
arrives. Only what the stratified split needs stays in memory: per example its label's index
(4 bytes) and the first 8 bytes of its sort key (8 bytes), in arrays, for at most
REGISTRY_MAX_ROWS examples; never the inputs. Once the split is known, the rows file is read
again, a line at a time, into the version's examples file, each line with its split.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from pathlib import Path

from verticals.registry.models import SPLITS
from verticals.sdk.contracts import Example
from verticals.sdk.datasets import DatasetSchema
from verticals.sdk.ingestion import Refused, upload_limits

EXAMPLES_FILE = "examples.jsonl"
DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


@dataclass(frozen=True)
class BuiltVersion:
    """What core records of a built version: its example count, labels (sorted) and statistics."""

    rows: int
    labels: list[str]
    stats: dict


def sort_key(seed: int, value, position: int) -> int:
    """Where an example falls within its label for a seed: the first 8 bytes of
    sha256(seed, input, position), so the same upload and seed always split the same way."""
    digest = hashlib.sha256(f"{seed}\0{value}\0{position}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _cuts(n: int, fractions: dict[str, float]) -> tuple[int, int]:
    """(validation, test) examples of a label with `n` of them: each label with 3 or more gives
    one to validation and to test, and at least one stays for training."""
    n_val = round(n * fractions["validation"]) if fractions["validation"] else 0
    n_test = round(n * fractions["test"]) if fractions["test"] else 0
    if n >= 3:
        n_val = max(n_val, 1 if fractions["validation"] else 0)
        n_test = max(n_test, 1 if fractions["test"] else 0)
    while n_val + n_test >= n and (n_val or n_test):
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def assign_splits(label_ids: array, keys: array, n_labels: int, fractions: dict[str, float]):
    """Each example's split (an index into SPLITS), stratified by label: within a label, examples
    ordered by their sort key (then their position) give the test, then the validation examples."""
    import numpy as np

    labels = np.asarray(label_ids, dtype=np.uint32)  # a view of the array's buffer, not a copy
    order = np.lexsort((np.asarray(keys, dtype=np.uint64), labels))
    codes = np.zeros(len(labels), dtype=np.uint8)
    counts = np.bincount(labels, minlength=n_labels)
    train, validation, test = (SPLITS.index(name) for name in ("train", "validation", "test"))
    codes[:] = train
    start = 0
    for n in counts.tolist():
        n_val, n_test = _cuts(n, fractions)
        members = order[start : start + n]
        codes[members[:n_test]] = test
        codes[members[n_test : n_test + n_val]] = validation
        start += n
    return codes


def split_examples(
    examples: list[Example], *, seed: int, fractions: dict[str, float]
) -> dict[str, list[Example]]:
    """A list's examples split the way an upload's are (for tests and local tools on small data)."""
    index: dict = {}
    label_ids, keys = array("I"), array("Q")
    for position, example in enumerate(examples):
        label_ids.append(index.setdefault(example.label, len(index)))
        keys.append(sort_key(seed, example.input, position))
    codes = assign_splits(label_ids, keys, len(index), fractions)
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for code, example in zip(codes.tolist(), examples, strict=True):
        splits[SPLITS[code]].append(example)
    return splits


def build_version(
    *,
    schema: DatasetSchema,
    labelled: bool,
    source: Path,
    directory: Path,
    scratch: Path,
    seed: int,
    fractions: dict[str, float],
) -> BuiltVersion:
    """Read `source` with the schema into `directory` (its `files/` and the examples file), split
    it, and count it; raises Refused (DatasetInvalid) when the upload cannot be used."""
    import numpy as np

    bounds = upload_limits()
    index: dict = {}
    label_ids, keys = array("I"), array("Q")
    rows_path = scratch / "rows.jsonl"
    files = directory / "files"
    files.mkdir(parents=True, exist_ok=True)
    with rows_path.open("w", encoding="utf-8") as rows:
        for position, example in enumerate(schema.read(source, files)):
            if position >= bounds.rows:
                raise Refused(
                    f"The upload holds more than {bounds.rows} examples; at most {bounds.rows} fit in one "
                    f"dataset version: split it into several uploads."
                )
            label_id = index.setdefault(example.label, len(index))
            if len(index) > bounds.labels:
                raise Refused(
                    f"The upload holds more than {bounds.labels} distinct labels ({example.ref} adds one more); "
                    f"at most {bounds.labels}."
                )
            label_ids.append(label_id)
            keys.append(sort_key(seed, example.input, position))
            rows.write(
                json.dumps({"input": example.input, "label": example.label, "ref": example.ref})
                + "\n"
            )
    total = len(label_ids)
    names = sorted(label for label in index if label is not None) if labelled else []
    schema.check_counts(total, len(names) if labelled else 0)
    codes = assign_splits(label_ids, keys, len(index), fractions)
    with (
        rows_path.open(encoding="utf-8") as rows,
        (directory / EXAMPLES_FILE).open("w", encoding="utf-8") as sink,
    ):
        for code, line in zip(codes.tolist(), rows, strict=True):
            sink.write(f'{line.rstrip()[:-1]}, "split": "{SPLITS[code]}"}}\n')
    rows_path.unlink()
    width = max(len(index), 1)
    counts = np.bincount(
        codes.astype(np.int64) * width + np.asarray(label_ids, dtype=np.uint32),
        minlength=len(SPLITS) * width,
    ).reshape(len(SPLITS), width)
    return BuiltVersion(total, names, _statistics(counts, index, names))


def _statistics(counts, index: dict, names: list[str]) -> dict:
    """Rows per split and label, from the (split × label index) counts."""
    splits = {}
    for code, split in enumerate(SPLITS):
        splits[split] = {
            "rows": int(counts[code].sum()),
            "labels": {label: int(counts[code][index[label]]) for label in names},
        }
    totals = {label: sum(splits[split]["labels"][label] for split in SPLITS) for label in names}
    return {"rows": int(counts.sum()), "labels": totals, "splits": splits}
