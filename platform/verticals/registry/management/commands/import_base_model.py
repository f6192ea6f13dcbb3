"""Add pretrained models to the model garden.

    manage.py import_base_model --shipped                  # every model shipped in an installed package
    manage.py import_base_model --shipped --name NAME      # one of them (e.g. smollm2-135m-instruct)
    manage.py import_base_model PATH --name NAME [--title T --description D --license L] [--replace]

PATH is a Hugging Face or torchvision model directory, or a .zip/.tar.gz of one (safetensors only).
A shipped model in another format (SmolLM2's GGUF) is converted to safetensors once, here; a base
model already in the garden is kept as it is (and not converted again) unless --replace.
"""

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from verticals.registry import garden, services, storage
from verticals.registry.models import BaseModel
from verticals.sdk.ingestion import Refused


class Command(BaseCommand):
    help = (
        "Import a pretrained model (directory or archive, safetensors only) into the model garden."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", help="Model directory or archive.")
        parser.add_argument(
            "--name",
            help="Slug of the base model (e.g. minilm-l6); with --shipped, import only that one.",
        )
        parser.add_argument("--title", default="")
        parser.add_argument("--description", default="")
        parser.add_argument("--license", default="")
        parser.add_argument(
            "--replace", action="store_true", help="Replace a base model of the same name."
        )
        parser.add_argument(
            "--shipped",
            action="store_true",
            help="Import the models shipped in installed packages.",
        )

    def handle(self, *args, **options):
        imported = []
        if options["shipped"]:
            chosen = [m for m in garden.SHIPPED if not options["name"] or m.name == options["name"]]
            if not chosen:
                raise CommandError(
                    f"No shipped model is named {options['name']!r}; shipped: "
                    f"{', '.join(m.name for m in garden.SHIPPED)}."
                )
            for shipped in chosen:
                path = garden.shipped_path(shipped)
                if path is None:
                    self.stderr.write(
                        f"{shipped.name}: the package {shipped.distribution} is not installed; skipped."
                    )
                    continue
                existing = BaseModel.objects.filter(name=shipped.name).first()
                if existing is not None and not options["replace"]:
                    imported.append(self._describe(existing))
                    continue
                started = time.monotonic()
                with storage.workspace("shipped") as work:
                    try:
                        source = garden.prepare(shipped, path, work)
                    except (OSError, ValueError, ImportError) as exc:
                        raise CommandError(
                            f"{shipped.name}: {path.name} could not be converted: {exc}"
                        ) from exc
                    imported.append(
                        self._import(
                            source,
                            shipped.name,
                            shipped.title,
                            shipped.description,
                            shipped.license,
                            f"pypi:{shipped.distribution}",
                            options["replace"],
                        )
                    )
                self.stderr.write(
                    f"{shipped.name}: imported in {time.monotonic() - started:.1f} s"
                    + (f" (converted from {path.name})" if shipped.convert else "")
                    + "."
                )
        elif options["path"]:
            if not options["name"]:
                raise CommandError("Give --name (a slug such as minilm-l6).")
            path = Path(options["path"])
            if not path.exists():
                raise CommandError(f"{path} does not exist.")
            imported.append(
                self._import(
                    path,
                    options["name"],
                    options["title"],
                    options["description"],
                    options["license"],
                    str(path),
                    options["replace"],
                )
            )
        else:
            raise CommandError("Give a PATH (with --name), or --shipped.")
        self.stdout.write(json.dumps(imported, indent=2))

    def _import(self, path, name, title, description, license, origin, replace) -> dict:
        try:
            base = services.base_model_import(
                source=path,
                name=name,
                title=title,
                description=description,
                origin=origin,
                license=license,
                replace=replace,
            )
        except Refused as exc:
            raise CommandError(f"{name}: {exc}") from exc
        dropped = getattr(base, "dropped_files", [])
        if dropped:
            self.stderr.write(
                f"{name}: not stored (no installed task loads them): {', '.join(dropped)}."
            )
        return self._describe(base)

    @staticmethod
    def _describe(base) -> dict:
        return {
            "id": base.public_id,
            "name": base.name,
            "family": base.family,
            "architecture": base.architecture,
            "size_bytes": base.size_bytes,
            "tasks": services.tasks_for_base(base),
        }
