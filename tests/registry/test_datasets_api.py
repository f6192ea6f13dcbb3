"""Dataset uploads through the API: validation reports, immutable versions, seeded splits, statistics."""

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.registry.factories import REVIEWS, csv_bytes, png_bytes, zip_bytes
from verticals.registry import storage
from verticals.registry.models import Dataset, DatasetVersion

pytestmark = pytest.mark.django_db


def upload(client, world, filename: str, content: bytes, **fields):
    url = f"/api/v1/projects/{world.project.public_id}/datasets/"
    return client.post(
        url, {"file": SimpleUploadedFile(filename, content), **fields}, format="multipart"
    )


def stored_prefixes(artifacts_dir) -> list[str]:
    root = artifacts_dir / "datasets"
    return [str(p) for p in root.rglob("*") if p.is_file()] if root.exists() else []


def many_reviews(n=40):
    return [
        (f"{text} number {i}", label)
        for i in range(n // len(REVIEWS) + 1)
        for text, label in REVIEWS
    ][:n]


def test_csv_upload_makes_a_split_counted_version(world_a):
    answer = upload(
        world_a.client(), world_a, "reviews.csv", csv_bytes(many_reviews(40)), task="sentiment"
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["name"] == "reviews" and body["task"] == "sentiment"
    version = body["versions"][0]
    assert (
        version["version"] == 1
        and version["rows"] == 40
        and version["labels"] == ["negative", "positive"]
    )
    splits = version["stats"]["splits"]
    assert {k: v["rows"] for k, v in splits.items()} == {"train": 32, "validation": 4, "test": 4}
    # Stratified: each split holds both labels in the upload's proportion.
    assert splits["test"]["labels"] == {"negative": 2, "positive": 2}
    assert version["stats"]["labels"] == {
        "negative": 19,
        "positive": 21,
    }  # as many_reviews(40) holds them


def test_jsonl_upload_and_new_versions_leave_earlier_ones_unchanged(world_a):
    rows = "\n".join(json.dumps({"text": t, "label": label}) for t, label in many_reviews(12))
    client = world_a.client()
    first = upload(client, world_a, "mixed.jsonl", rows.encode(), task="sentiment", name="mixed")
    assert first.status_code == 201, first.json()
    dataset_id = first.json()["id"]
    second = client.post(
        f"/api/v1/projects/{world_a.project.public_id}/datasets/{dataset_id}/versions/",
        {"file": SimpleUploadedFile("more.csv", csv_bytes(many_reviews(20)))},
        format="multipart",
    )
    assert second.status_code == 201, second.json()
    assert second.json()["version"] == 2 and second.json()["rows"] == 20
    detail = client.get(
        f"/api/v1/projects/{world_a.project.public_id}/datasets/{dataset_id}/"
    ).json()
    assert [v["rows"] for v in detail["versions"]] == [20, 12]
    assert detail["latest_version"]["version"] == 2
    # The first version's file is still the one uploaded first.
    old = client.get(
        f"/api/v1/projects/{world_a.project.public_id}/datasets/{dataset_id}/download/?version=1"
    )
    assert old.status_code == 200 and b"".join(old.streaming_content) == rows.encode()


def test_the_split_is_deterministic_for_a_seed_and_changes_with_it(world_a):
    from verticals.registry.services import dataset_splits
    from verticals.tenancy.scoping import tenant_context

    client = world_a.client()
    data = csv_bytes(many_reviews(60))
    made = [
        upload(client, world_a, "r.csv", data, task="sentiment", name=f"r{i}", seed=seed).json()
        for i, seed in enumerate((7, 7, 8))
    ]
    with tenant_context(world_a.tenant):
        tests = [
            sorted(
                e.input
                for e in dataset_splits(
                    DatasetVersion.objects.get(public_id=m["versions"][0]["id"])
                )["test"]
            )
            for m in made
        ]
    assert tests[0] == tests[1]
    assert tests[0] != tests[2]


@pytest.mark.parametrize(
    "content,where,fragment",
    [
        (b"text,label\nfine,positive\n,negative\n", "line 3", "'text' is empty"),
        (b"text,label\nfine,positive\nno label here,\n", "line 3", "the label is empty"),
        (b'text,label\n"a",positive,extra\n', "line 2", "fields"),
    ],
)
def test_a_bad_csv_is_refused_with_its_problems_by_line(world_a, content, where, fragment):
    answer = upload(world_a.client(), world_a, "bad.csv", content, task="sentiment")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_upload"
    problems = error["details"]["problems"]
    assert any(p["where"] == where and fragment in p["message"] for p in problems), problems
    assert Dataset.dangerously_unscoped.count() == 0


def test_a_csv_without_the_columns_names_them(world_a):
    answer = upload(world_a.client(), world_a, "bad.csv", b"review,stars\nok,5\n", task="sentiment")
    assert answer.status_code == 400
    assert "'text' and 'label'" in answer.json()["error"]["message"]


def test_bad_jsonl_lines_are_reported(world_a):
    content = (
        b'{"text": "good", "label": "positive"}\nnot json\n[1, 2]\n{"text": 5, "label": "x"}\n'
    )
    problems = upload(world_a.client(), world_a, "bad.jsonl", content, task="sentiment").json()[
        "error"
    ]["details"]["problems"]
    assert [p["where"] for p in problems] == ["line 2", "line 3", "line 4"]


@pytest.mark.parametrize(
    "name,content,fragment",
    [
        ("reviews.txt", b"hello", "takes .csv, .jsonl"),
        ("empty.csv", b"", "empty"),
        ("latin.csv", "text,label\ncafé,positive\n".encode("latin-1"), "not UTF-8"),
        ("one.csv", b"text,label\nonly one,positive\n", "at least"),
    ],
)
def test_unusable_files_get_a_message(world_a, name, content, fragment):
    answer = upload(world_a.client(), world_a, name, content, task="sentiment")
    assert answer.status_code == 400, answer.json()
    assert fragment in answer.json()["error"]["message"]


def test_an_oversized_upload_is_refused_before_it_is_stored(world_a, settings, artifacts_dir):
    settings.REGISTRY_MAX_UPLOAD_BYTES = 1000
    answer = upload(
        world_a.client(),
        world_a,
        "big.csv",
        csv_bytes(many_reviews(40)) + b"x" * 70_000,
        task="sentiment",
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert "at most 1000 bytes" in answer.json()["error"]["message"]
    # Just over the limit (the envelope allowance lets the body in): the file itself is checked.
    answer = upload(
        world_a.client(), world_a, "big.csv", csv_bytes(many_reviews(40)), task="sentiment"
    )
    assert answer.status_code == 413 and "1000" in answer.json()["error"]["message"]
    assert Dataset.dangerously_unscoped.count() == 0 and stored_prefixes(artifacts_dir) == []


def test_zip_bytes_of_class_folders_and_a_corrupt_image(world_a, artifacts_dir):
    red, blue = png_bytes((220, 20, 20)), png_bytes((20, 20, 220))
    members = {f"shapes/red/{i}.png": red for i in range(6)} | {
        f"shapes/blue/{i}.png": blue for i in range(6)
    }
    answer = upload(
        world_a.client(), world_a, "shapes.zip", zip_bytes(members), task="image-classification"
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["versions"][0]["labels"] == ["blue", "red"]
    broken = dict(members) | {"shapes/red/broken.png": red[:40]}
    before = stored_prefixes(artifacts_dir)
    answer = upload(
        world_a.client(), world_a, "broken.zip", zip_bytes(broken), task="image-classification"
    )
    assert answer.status_code == 400
    problems = answer.json()["error"]["details"]["problems"]
    assert problems[0]["where"] == "shapes/red/broken.png"
    assert "corrupt" in problems[0]["message"] or "not an image" in problems[0]["message"]
    assert stored_prefixes(artifacts_dir) == before, "a refused upload left files behind"


def test_zip_bytes_with_a_labels_csv(world_a):
    red, blue = png_bytes((220, 20, 20)), png_bytes((20, 20, 220))
    members = {f"img/{i}.png": (red if i % 2 else blue) for i in range(10)}
    members["labels.csv"] = (
        "path,label\n" + "".join(f"img/{i}.png,{'red' if i % 2 else 'blue'}\n" for i in range(10))
    ).encode()
    answer = upload(
        world_a.client(), world_a, "listed.zip", zip_bytes(members), task="image-classification"
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["versions"][0]["stats"]["labels"] == {"blue": 5, "red": 5}
    members["labels.csv"] += b"img/missing.png,red\n"
    answer = upload(
        world_a.client(), world_a, "listed2.zip", zip_bytes(members), task="image-classification"
    )
    assert answer.status_code == 400
    assert (
        "no file 'img/missing.png'" in answer.json()["error"]["details"]["problems"][0]["message"]
    )


def test_zip_paths_leaving_the_archive_are_refused(world_a):
    bundle = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(bundle, "w") as z:
        z.writestr("../evil/a.png", png_bytes())
    answer = upload(
        world_a.client(), world_a, "evil.zip", bundle.getvalue(), task="image-classification"
    )
    assert answer.status_code == 400 and "unsafe path" in answer.json()["error"]["message"]


def test_unknown_task_and_missing_file(world_a):
    client = world_a.client()
    answer = upload(client, world_a, "r.csv", csv_bytes(REVIEWS), task="no-such-task")
    assert (
        answer.status_code == 400
        and "Unknown task 'no-such-task'" in answer.json()["error"]["message"]
    )
    answer = client.post(
        f"/api/v1/projects/{world_a.project.public_id}/datasets/",
        {"task": "sentiment"},
        format="multipart",
    )
    assert answer.status_code == 400 and "file" in answer.json()["error"]["message"]


def test_delete_removes_the_files(world_a, artifacts_dir, django_capture_on_commit_callbacks):
    client = world_a.client()
    made = upload(client, world_a, "r.csv", csv_bytes(many_reviews(12)), task="sentiment").json()
    assert stored_prefixes(artifacts_dir)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.delete(
            f"/api/v1/projects/{world_a.project.public_id}/datasets/{made['id']}/"
        )
    assert answer.status_code == 204
    assert stored_prefixes(artifacts_dir) == []
    assert not DatasetVersion.dangerously_unscoped.exists()


def test_tenant_files_are_not_under_the_served_media_root(world_a, settings):
    from pathlib import Path

    made = upload(
        world_a.client(), world_a, "r.csv", csv_bytes(many_reviews(12)), task="sentiment"
    ).json()
    prefix = DatasetVersion.dangerously_unscoped.get(
        public_id=made["versions"][0]["id"]
    ).storage_prefix
    assert prefix.startswith(f"datasets/{world_a.tenant.public_id}/")
    stored = Path(storage.artifacts().path(prefix)).resolve()
    assert stored.is_dir() and Path(settings.MEDIA_ROOT).resolve() not in stored.parents


@pytest.mark.parametrize(
    "line, problem",
    [
        (
            '{"text": "Great value", "label": ' + "1" * 5001 + "}",
            "more digits than any value holds",
        ),  # once a 500
        (
            '{"text": "Great value", "label": "pos\\ud800"}',
            "half of a surrogate pair",
        ),  # once a 500 on PostgreSQL
    ],
)
def test_a_jsonl_value_no_database_holds_is_a_problem_of_its_line(world_a, line, problem):
    rows = [json.dumps({"text": text, "label": label}) for text, label in REVIEWS] + [line]
    answer = upload(
        world_a.client(), world_a, "reviews.jsonl", "\n".join(rows).encode(), task="sentiment"
    )
    assert answer.status_code == 400, answer.json()
    found = answer.json()["error"]["details"]["problems"]
    assert (
        found == [{"where": f"line {len(rows)}", "message": found[0]["message"]}]
        and problem in found[0]["message"]
    )
