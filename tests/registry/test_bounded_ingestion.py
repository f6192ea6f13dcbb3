"""Every upload bounded in memory and disk: the hostile uploads measured in issue 14.

The memory tests ingest the real hostile files (a 2.1 MB zip of a 2 GiB zero "png", a 3.1 MB zip
of a 3 GiB zero model.safetensors, 200,000 CSV rows) through the services in one fresh process
(tests.registry.hostile.bounded_run) that may write no file past 64 MiB, and read its resident
memory: idle, its peak while ingesting, and after. The API tests check what the customer sees:
a 400 that says what is wrong, and nothing stored.
"""

import hashlib
import io
import json
import math
import tarfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.registry.factories import tiny_model_dir
from tests.registry.hostile import (
    CLAIMS_40_GB,
    HUGE_HEADER_LENGTH,
    PICKLE_BYTES,
    GiB,
    MiB,
    Zeros,
    big_weights_zip,
    bounded_run,
    image_bomb_zip,
    safetensors_file,
    safetensors_head,
    text_csv,
    zeros_weights_zip,
    zip_file,
)
from verticals.registry.models import Dataset, ModelVersion
from verticals.tenancy.models import AuditEvent

pytestmark = pytest.mark.django_db

# The target is 512 MB above idle; what these inputs need is far less, so a regression
# shows long before that.
BUDGET_MB = 64
FILE_LIMIT = 64 * MiB
CSV_ROWS = 200_000
RESNET = json.dumps({"architecture": "resnet18", "num_classes": 2}).encode()


def above_idle_mb(result: dict, key: str = "peak_kb") -> float:
    return (result[key] - result["idle_kb"]) / 1024


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    forged_head = safetensors_head({"weight": ("U8", [16 * MiB - 200])})
    return {
        "one_bomb": image_bomb_zip(folder / "one-bomb.zip"),
        "two_bombs": image_bomb_zip(folder / "two-bombs.zip", bombs=2),
        "rows": text_csv(folder / "reviews.csv", rows=CSV_ROWS),
        "zero_weights": zeros_weights_zip(folder / "zero-weights.zip", RESNET),
        "big_weights": big_weights_zip(folder / "big-weights.zip", RESNET),
        # Its headers say 16 MiB (and its safetensors header agrees); its deflated data holds 3 GiB.
        "forged": zip_file(
            folder / "forged.zip",
            {"config.json": RESNET, "model.safetensors": Zeros(3 * GiB, forged_head)},
            declared={"model.safetensors": len(forged_head) + 16 * MiB - 200},
        ),
        "huge_config": zip_file(folder / "huge-config.zip", huge_config_files()),
    }


def huge_config_files() -> dict[str, bytes]:
    """The tiny sentiment model, its config asking for a 6,000,000-token embedding (1.5 GB to build)."""
    files = sentiment_files()
    config = json.loads(files["config.json"])
    config["model"]["vocab_size"] = 6_000_000
    return files | {"config.json": json.dumps(config).encode()}


@pytest.fixture(scope="module")
def ingested(hostile) -> dict[str, dict]:
    """Each hostile file ingested in one fresh process, by name (see bounded_run)."""
    cases = {
        "one_bomb": {"kind": "dataset", "task": "image-classification"},
        "two_bombs": {"kind": "dataset", "task": "image-classification"},
        "rows": {"kind": "dataset", "task": "sentiment"},
        "zero_weights": {"kind": "model", "task": "image-classification"},
        "big_weights": {
            "kind": "model",
            "task": "image-classification",
            "settings": {"REGISTRY_MAX_EXTRACTED_BYTES": GiB},
        },
        "forged": {"kind": "model", "task": "image-classification"},
        "huge_config": {"kind": "model", "task": "sentiment"},
    }
    found = {}
    for kind in (
        "dataset",
        "model",
    ):  # two processes: a model case killed for writing past the limit spares the others
        chosen = {name: case for name, case in cases.items() if case["kind"] == kind}
        results = bounded_run(
            [{**case, "path": str(hostile[name])} for name, case in chosen.items()],
            file_limit=FILE_LIMIT,
        )
        found.update(zip(chosen, results, strict=True))
    return found


def refused(result: dict) -> str:
    assert not result["stored"] and "error" not in result, result.get("error") or result
    return result["message"]


# --- memory and disk, in a process of their own -----------------------------------------------------


@pytest.mark.parametrize("name,bombs", [("one_bomb", 1), ("two_bombs", 2)])
def test_an_image_zip_of_2_gib_zero_pngs_is_refused_without_reading_them(
    ingested, hostile, name, bombs
):
    result = ingested[name]
    assert hostile[name].stat().st_size < 2.2 * MiB * bombs
    refused(result)
    assert [p["where"] for p in result["problems"]] == [f"cats/bomb-{i}.png" for i in range(bombs)]
    assert all("2147483648 bytes" in p["message"] for p in result["problems"])
    assert above_idle_mb(result) < BUDGET_MB, result  # was 4.3 GB (one) and 6.9 GB (two)


def test_a_csv_of_200_000_rows_is_stored_in_bounded_memory(ingested):
    result = ingested["rows"]
    assert result.get("stored") and result["rows"] == CSV_ROWS, result
    assert above_idle_mb(result) < BUDGET_MB, (
        result
    )  # was ~1.25 kB a row: 250 MB here, 1.5 GB for 1.2 M rows
    assert above_idle_mb(result, "after_kb") < BUDGET_MB / 2, result


def test_a_3_gib_zero_model_safetensors_stops_at_its_header(ingested, hostile):
    result = ingested["zero_weights"]
    assert hostile["zero_weights"].stat().st_size < 3.2 * MiB
    message = refused(result)  # the process wrote no file past 64 MiB (it would have been killed)
    assert (
        "'model.safetensors' is not a safetensors file" in message
        and "header of 0 bytes" in message
    )
    assert above_idle_mb(result) < BUDGET_MB


def test_a_well_formed_3_gib_safetensors_stops_at_the_extraction_limit(ingested):
    message = refused(ingested["big_weights"])
    assert "expands to more than 1073741824 bytes" in message and "model.safetensors" in message
    assert above_idle_mb(ingested["big_weights"]) < BUDGET_MB


def test_a_member_holding_more_than_its_header_declares_stops_at_the_declared_size(ingested):
    message = refused(ingested["forged"])  # 3 GiB of data; nothing past 64 MiB was written
    assert "'model.safetensors' cannot be read from the archive" in message and "CRC" in message
    assert above_idle_mb(ingested["forged"]) < BUDGET_MB


def test_a_config_asking_for_gigabytes_is_loaded_outside_the_web_process(ingested):
    message = refused(
        ingested["huge_config"]
    )  # the load check's own process built the 1.5 GB embedding
    assert (
        message.startswith("The model does not load as a 'sentiment' model:")
        and "size mismatch" in message
    )
    assert above_idle_mb(ingested["huge_config"]) < BUDGET_MB


# --- what the customer sees ------------------------------------------------------------------------


def upload(client, world, filename, content, **fields):
    return client.post(
        f"/api/v1/projects/{world.project.public_id}/datasets/",
        {"file": SimpleUploadedFile(filename, content), **fields},
        format="multipart",
    )


def import_model(client, world, filename, content, task="sentiment"):
    return client.post(
        f"/api/v1/projects/{world.project.public_id}/models/",
        {"file": SimpleUploadedFile(filename, content), "task": task},
        format="multipart",
    )


def nothing_stored(artifacts_dir) -> bool:
    return (
        not [p for p in artifacts_dir.rglob("*") if p.is_file()]
        and not ModelVersion.dangerously_unscoped.exists()
        and not Dataset.dangerously_unscoped.exists()
    )


def sentiment_files() -> dict[str, bytes]:
    root = tiny_model_dir("sentiment")
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_bomb_zip_through_the_api_is_a_400_naming_the_file(world_a, hostile, artifacts_dir):
    answer = upload(
        world_a.client(),
        world_a,
        "pets.zip",
        hostile["two_bombs"].read_bytes(),
        task="image-classification",
    )
    assert answer.status_code == 400, answer.json()
    error = answer.json()["error"]
    assert error["code"] == "invalid_upload"
    assert [p["where"] for p in error["details"]["problems"]] == [
        "cats/bomb-0.png",
        "cats/bomb-1.png",
    ]
    assert (
        "an image of at most 40000000 pixels takes at most"
        in error["details"]["problems"][0]["message"]
    )
    assert nothing_stored(artifacts_dir)


@pytest.mark.parametrize(
    "weights,fragments",
    [
        (
            PICKLE_BYTES,
            ["more than the file holds", "looks like a PyTorch checkpoint", "save_file"],
        ),
        (HUGE_HEADER_LENGTH, ["header of 4611686018427387904 bytes, more than the file holds"]),
        (CLAIMS_40_GB, ["describes 40000000000 bytes of tensor data, but the file holds 1024"]),
        (b"PK\x03\x04" + bytes(60), ["looks like a PyTorch checkpoint"]),
        (
            safetensors_file({"w": ("F32", [4])}, data=12),
            ["describes 16 bytes of tensor data, but the file holds 12"],
        ),
        (
            b'\x3e\x00\x00\x00\x00\x00\x00\x00{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}'
            + bytes(12),
            ["tensor 'w' is F32 of shape [4] (16 bytes), but its offsets span 12 bytes"],
        ),
        (
            b'\x10\x00\x00\x00\x00\x00\x00\x00{"w": 1}' + b" " * 8,
            ["tensor 'w' is described by int"],
        ),
        (b"\x0c\x00\x00\x00\x00\x00\x00\x00not json ok!", ["not a JSON object"]),
    ],
)
def test_corrupt_weights_are_a_400_that_says_what_is_wrong(
    world_a, artifacts_dir, tmp_path, weights, fragments
):
    files = sentiment_files() | {"model.safetensors": weights}
    answer = import_model(
        world_a.client(), world_a, "m.zip", zip_file(tmp_path / "m.zip", files).read_bytes()
    )
    assert answer.status_code == 400, answer.json()
    message = answer.json()["error"]["message"]
    assert message.startswith("'model.safetensors' is not a safetensors file: ")
    assert all(f in message for f in fragments), message
    assert answer.json()["error"]["details"]["problems"][0]["where"] == "model.safetensors"
    assert nothing_stored(artifacts_dir)


def test_a_decoy_weights_file_beside_a_valid_model_is_refused(world_a, artifacts_dir, tmp_path):
    files = sentiment_files() | {"extra_weights.safetensors": PICKLE_BYTES}
    answer = import_model(
        world_a.client(), world_a, "m.zip", zip_file(tmp_path / "m.zip", files).read_bytes()
    )
    assert answer.status_code == 400, answer.json()
    assert answer.json()["error"]["message"].startswith(
        "'extra_weights.safetensors' is not a safetensors file"
    )
    assert nothing_stored(artifacts_dir)


def manifest_digest(files: dict[str, bytes]) -> str:
    """What `sha256sum` of every file, sorted by name, piped into `sha256sum` prints."""
    lines = "".join(
        f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n"
        for name in sorted(files, key=str.encode)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def test_the_version_digest_covers_every_stored_file(world_a, tmp_path):
    client = world_a.client()
    files = sentiment_files()
    first = import_model(
        client, world_a, "a.zip", zip_file((tmp_path / "a.zip"), files).read_bytes()
    )
    extra = safetensors_file({"adapter": ("F32", [3])})
    second = import_model(
        client,
        world_a,
        "b.zip",
        zip_file((tmp_path / "b.zip"), files | {"extra.safetensors": extra}).read_bytes(),
    )
    tokenizer = json.loads(files["tokenizer.json"])
    tokenizer.setdefault("added_tokens", [])
    third = import_model(
        client,
        world_a,
        "c.zip",
        zip_file(
            (tmp_path / "c.zip"),
            files | {"tokenizer.json": json.dumps(tokenizer, indent=1).encode()},
        ).read_bytes(),
    )
    assert [a.status_code for a in (first, second, third)] == [201, 201, 201], [
        a.json() for a in (first, second, third)
    ]
    digests = [a.json()["sha256"] for a in (first, second, third)]
    assert (
        len(set(digests)) == 3
    )  # the weights file is the same in all three: the other files count too
    assert digests[0] == manifest_digest(files)
    assert digests[1] == manifest_digest(files | {"extra.safetensors": extra})
    assert {f["name"] for f in second.json()["files"]} == set(files) | {"extra.safetensors"}


def test_files_the_task_does_not_load_are_dropped_and_reported(world_a, tmp_path):
    files = sentiment_files()
    extras = {
        "README.md": b"# my model",
        ".gitattributes": b"*.bin lfs",
        "onnx/model.onnx": b"onnx",
        "1_Pooling/config.json": b"{}",
        "tf_model.h5": b"h5",
        "__MACOSX/._config.json": b"fork",
    }
    answer = import_model(
        world_a.client(),
        world_a,
        "snapshot.zip",
        zip_file(
            (tmp_path / "s.zip"), {f"snapshot/{k}": v for k, v in (files | extras).items()}
        ).read_bytes(),
    )
    assert answer.status_code == 201, answer.json()
    assert {f["name"] for f in answer.json()["files"]} == set(files)
    event = AuditEvent.dangerously_unscoped.get(action="model.import")
    assert sorted(event.details["dropped"]) == sorted(
        f"snapshot/{k}" for k in extras if not k.startswith("__MACOSX")
    )


def test_a_pickle_anywhere_in_the_archive_is_refused_before_anything_is_extracted(
    world_a, artifacts_dir, tmp_path
):
    files = sentiment_files() | {"old/pytorch_model.bin": PICKLE_BYTES}
    answer = import_model(
        world_a.client(), world_a, "m.zip", zip_file(tmp_path / "m.zip", files).read_bytes()
    )
    assert answer.status_code == 400
    assert (
        "'old/pytorch_model.bin' is a pickle-based checkpoint" in answer.json()["error"]["message"]
    )
    assert nothing_stored(artifacts_dir)


def test_a_tar_with_a_huge_header_extension_is_refused_before_it_is_read(world_a, artifacts_dir):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as bundle:
        info = tarfile.TarInfo("config.json")
        info.pax_headers = {"comment": "x" * (1024 * 1024)}
        info.size = 2
        bundle.addfile(info, io.BytesIO(b"{}"))
    answer = import_model(world_a.client(), world_a, "m.tar.gz", buffer.getvalue())
    assert answer.status_code == 400
    assert "header extension of" in answer.json()["error"]["message"]
    assert nothing_stored(artifacts_dir)


def test_an_archive_listing_too_many_files_is_refused_before_its_listing_is_parsed(
    world_a, settings, tmp_path
):
    settings.REGISTRY_MAX_ARCHIVE_FILES = 5
    members = {f"cats/{i}.png": b"x" for i in range(6)}
    answer = upload(
        world_a.client(),
        world_a,
        "many.zip",
        zip_file(tmp_path / "many.zip", members).read_bytes(),
        task="image-classification",
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "The archive holds 6 files; at most 5."
    answer = import_model(
        world_a.client(), world_a, "many.zip", zip_file(tmp_path / "m.zip", members).read_bytes()
    )
    assert answer.json()["error"]["message"] == "The model archive holds 6 files; at most 5."


def test_the_model_garden_goes_through_the_same_policy(tmp_path, artifacts_dir):
    from django.core.management import CommandError, call_command

    from verticals.registry.models import BaseModel

    folder = tmp_path / "garden-model"
    folder.mkdir()
    files = sentiment_files()
    for name, data in (files | {"README.md": b"# card", "onnx/model.onnx": b"onnx"}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    err = io.StringIO()
    call_command(
        "import_base_model", str(folder), "--name", "tiny", stdout=io.StringIO(), stderr=err
    )
    base = BaseModel.objects.get(name="tiny")
    assert {f["name"] for f in base.files} == set(files) and base.sha256 == manifest_digest(files)
    assert "not stored (no installed task loads them): README.md, onnx/model.onnx" in err.getvalue()
    (folder / "model.safetensors").write_bytes(HUGE_HEADER_LENGTH)
    with pytest.raises(CommandError, match="'model.safetensors' is not a safetensors file"):
        call_command("import_base_model", str(folder), "--name", "broken")
    assert not BaseModel.objects.filter(name="broken").exists()


# --- text read a line at a time --------------------------------------------------------------------


def test_a_line_longer_than_the_limit_is_named(world_a, settings, artifacts_dir):
    settings.REGISTRY_MAX_LINE_BYTES = 200
    content = b"text,label\nfine,positive\n" + b"x" * 300 + b",negative\n"
    answer = upload(world_a.client(), world_a, "long.csv", content, task="sentiment")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["message"].startswith("Line 3: longer than 200 bytes")
    assert error["details"]["problems"] == [{"where": "line 3", "message": "longer than 200 bytes"}]
    assert nothing_stored(artifacts_dir)


def test_a_quote_never_closed_is_stopped_at_the_record_limit(world_a, settings):
    settings.REGISTRY_MAX_LINE_BYTES = 200
    content = b'text,label\n"this quote never closes,positive\n' + b"more words,positive\n" * 50
    answer = upload(world_a.client(), world_a, "open.csv", content, task="sentiment")
    assert answer.status_code == 400
    assert (
        "a record longer than 200 characters; check for a quote that is never closed"
        in answer.json()["error"]["message"]
    )


def test_line_endings_a_byte_order_mark_and_quoted_line_breaks_are_read_as_written(world_a):
    from verticals.registry.models import DatasetVersion
    from verticals.registry.services import dataset_splits
    from verticals.tenancy.scoping import tenant_context

    rows = [
        f'"review {i}\r\nspans two lines",{"positive" if i % 2 else "negative"}' for i in range(12)
    ]
    content = "\ufefftext,label\r\n".encode() + "\r\n".join(rows).encode() + b"\r\n"
    answer = upload(world_a.client(), world_a, "crlf.csv", content, task="sentiment")
    assert answer.status_code == 201, answer.json()
    with tenant_context(world_a.tenant):
        version = DatasetVersion.objects.get(public_id=answer.json()["versions"][0]["id"])
        examples = [e for split in dataset_splits(version).values() for e in split]
    assert sorted(e.input for e in examples) == sorted(
        f"review {i}\r\nspans two lines" for i in range(12)
    )
    assert sorted(e.ref for e in examples) == sorted(
        f"line {2 * i + 3}" for i in range(12)
    )  # where each record ends
    mac = ("text,label\r" + "".join(f"old mac row {i},{'ab'[i % 2]}\r" for i in range(8))).encode()
    assert (
        upload(world_a.client(), world_a, "mac.csv", mac, task="sentiment").json()["versions"][0][
            "rows"
        ]
        == 8
    )
    # A JSON string may hold U+2028 (a line separator, not a line break in JSON lines).
    jsonl = "\n".join(
        json.dumps({"text": f"a\u2028b {i}", "label": "ab"[i % 2]}, ensure_ascii=False)
        for i in range(8)
    )
    assert (
        upload(world_a.client(), world_a, "sep.jsonl", jsonl.encode(), task="sentiment").json()[
            "versions"
        ][0]["rows"]
        == 8
    )


@pytest.mark.parametrize(
    "setting,value,content,fragment",
    [
        (
            "REGISTRY_MAX_ROWS",
            10,
            "\n".join(["text,label"] + [f"row {i},{'ab'[i % 2]}" for i in range(11)]),
            "more than 10 examples; at most 10 fit in one dataset version",
        ),
        (
            "REGISTRY_MAX_LABELS",
            3,
            "\n".join(["text,label"] + [f"row {i},label{i}" for i in range(5)]),
            "more than 3 distinct labels (line 5 adds one more)",
        ),
    ],
)
def test_rows_and_labels_are_bounded(
    world_a, settings, artifacts_dir, setting, value, content, fragment
):
    setattr(settings, setting, value)
    answer = upload(world_a.client(), world_a, "many.csv", content.encode(), task="sentiment")
    assert answer.status_code == 400
    assert fragment in answer.json()["error"]["message"]
    assert nothing_stored(artifacts_dir)


@pytest.mark.parametrize(
    "line,fragment",
    [
        (json.dumps({"text": "fine", "label": "a\u0000b"}), "control character"),
        (json.dumps({"text": "fine", "label": "x" * 201}), "201 characters; at most 200"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_bad_jsonl_lines_are_problems_not_errors(world_a, line, fragment):
    good = [json.dumps({"text": f"row {i}", "label": "ab"[i % 2]}) for i in range(6)]
    answer = upload(
        world_a.client(), world_a, "rows.jsonl", "\n".join(good + [line]).encode(), task="sentiment"
    )
    assert answer.status_code == 400, answer.json()
    assert answer.json()["error"]["details"]["problems"][0]["where"] == "line 7"
    assert fragment in answer.json()["error"]["details"]["problems"][0]["message"]


def test_bytes_that_are_not_utf8_are_named_by_line_and_byte(world_a):
    answer = upload(
        world_a.client(),
        world_a,
        "latin.csv",
        b"text,label\nfine,positive\ncaf\xe9,positive\n",
        task="sentiment",
    )
    assert answer.status_code == 400
    assert "not UTF-8 text (byte 28, line 3)" in answer.json()["error"]["message"]


def test_the_streamed_split_is_the_split_of_the_whole_list(world_a, tmp_path):
    from verticals.registry.datasets import DEFAULT_FRACTIONS, split_examples
    from verticals.registry.models import DatasetVersion
    from verticals.registry.services import dataset_splits
    from verticals.sdk import discovery
    from verticals.tenancy.scoping import tenant_context

    path = text_csv(tmp_path / "reviews.csv", rows=500)
    answer = upload(
        world_a.client(), world_a, "reviews.csv", path.read_bytes(), task="sentiment", seed=5
    )
    assert answer.status_code == 201
    listed = split_examples(
        discovery.get_task("sentiment").dataset.ingest(path, tmp_path),
        seed=5,
        fractions=DEFAULT_FRACTIONS,
    )
    with tenant_context(world_a.tenant):
        streamed = dataset_splits(
            DatasetVersion.objects.get(public_id=answer.json()["versions"][0]["id"])
        )
    assert {name: [e.ref for e in split] for name, split in streamed.items()} == {
        name: [e.ref for e in examples] for name, examples in listed.items()
    }
    assert [len(s) for s in streamed.values()] == [400, 50, 50]


# --- images checked by their header --------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000)))


def test_images_are_refused_from_their_header_and_first_bytes(world_a, artifacts_dir):
    from tests.registry.factories import png_bytes

    red, blue = png_bytes((220, 20, 20)), png_bytes((20, 20, 220))
    members = {f"red/{i}.png": red for i in range(4)} | {f"blue/{i}.png": blue for i in range(4)}
    members |= {
        "red/huge.png": png_header(10_000, 5_000),
        "red/bomb.png": png_header(100_000, 100_000),
        "blue/tiff.png": b"II*\x00" + bytes(64),
        "blue/text.png": b"hello, not an image",
    }
    answer = upload(
        world_a.client(),
        world_a,
        "pics.zip",
        zip_file(artifacts_dir.parent / "p.zip", members).read_bytes(),
        task="image-classification",
    )
    assert answer.status_code == 400
    problems = {p["where"]: p["message"] for p in answer.json()["error"]["details"]["problems"]}
    assert problems.pop("red/bomb.png").startswith(
        "more than 40000000 pixels (Image size (10000000000 pixels) exceeds limit"
    )
    assert problems == {
        "red/huge.png": "10000×5000 pixels; at most 40000000 pixels",
        "blue/tiff.png": "not an image Pillow can read (PNG, JPEG, BMP, GIF, WebP)",
        "blue/text.png": "not an image Pillow can read (PNG, JPEG, BMP, GIF, WebP)",
    }
    assert nothing_stored(artifacts_dir)


def test_a_model_that_needs_more_memory_than_an_import_may_take_is_refused(
    world_a, settings, tmp_path, artifacts_dir
):
    settings.REGISTRY_IMPORT_LOAD_MEMORY_BYTES = 512 * MiB
    answer = import_model(
        world_a.client(),
        world_a,
        "m.zip",
        zip_file(tmp_path / "m.zip", huge_config_files()).read_bytes(),
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(
        "The model needs more than 536870912 bytes of memory to load"
    )
    settings.REGISTRY_IMPORT_LOAD_SECONDS = 0.05
    answer = import_model(
        world_a.client(),
        world_a,
        "m.zip",
        zip_file(tmp_path / "m.zip", sentiment_files()).read_bytes(),
    )
    assert (
        answer.status_code == 400
        and answer.json()["error"]["message"] == "The model did not load within 0.05 s."
    )
    settings.REGISTRY_MAX_LABELS = 1
    answer = import_model(
        world_a.client(),
        world_a,
        "m.zip",
        zip_file(tmp_path / "m.zip", sentiment_files()).read_bytes(),
    )
    assert (
        answer.status_code == 400
        and answer.json()["error"]["message"] == "The model predicts 2 labels; at most 1."
    )
    assert nothing_stored(artifacts_dir)


def test_a_head_of_millions_of_classes_is_refused_before_its_labels_are_named(
    world_a, tmp_path, artifacts_dir
):
    from vision.networks import expected_shapes, head_keys

    # simple-cnn's shapes, its head given 5,000,000 rows (a 640 MB tensor of zeros: a 0.6 MB zip).
    weight, bias = head_keys("simple-cnn")
    shapes = expected_shapes("simple-cnn")
    shapes[weight], shapes[bias] = (5_000_000, shapes[weight][1]), (5_000_000,)
    dtype = {
        key: ("I64" if key.endswith("num_batches_tracked") else "F32", list(shape))
        for key, shape in shapes.items()
    }
    head = safetensors_head(dtype)
    size = len(head) + sum(
        4 * math.prod(shape) if kind == "F32" else 8 * math.prod(shape)
        for kind, shape in dtype.values()
    )
    archive = zip_file(
        tmp_path / "wide.zip",
        {
            "config.json": json.dumps({"architecture": "simple-cnn"}).encode(),
            "model.safetensors": Zeros(size, head),
        },
    )
    answer = import_model(
        world_a.client(), world_a, "wide.zip", archive.read_bytes(), task="image-classification"
    )
    assert answer.status_code == 400
    assert (
        answer.json()["error"]["message"]
        == "The task 'image-classification' cannot use this model: its head has 5000000 classes; at most 10000."
    )
    bert = {
        "config.json": json.dumps(
            {
                "model_type": "bert",
                "architectures": ["BertForSequenceClassification"],
                "num_labels": 10**9,
            }
        ).encode(),
        "model.safetensors": safetensors_file({"w": ("F32", [1])}),
        "vocab.txt": b"[PAD]\n[UNK]\n",
    }
    answer = import_model(
        world_a.client(), world_a, "bert.zip", zip_file(tmp_path / "bert.zip", bert).read_bytes()
    )
    assert answer.status_code == 400
    assert (
        answer.json()["error"]["message"]
        == "The task 'sentiment' cannot use this model: config.json's num_labels is 1000000000; at most 10000."
    )
    assert nothing_stored(artifacts_dir)
