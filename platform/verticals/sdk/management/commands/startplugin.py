"""`manage.py startplugin NAME`: write a new plugin package that works from the first minute.

The package (DIR/NAME/) holds a real example task — a small text classifier — that passes the
plugin conformance suite unmodified, so an author starts from green tests and changes one piece
at a time. The templates live in verticals/sdk/scaffold/plugin/ (see the README there).
"""

from __future__ import annotations

import keyword
import re
import secrets
import shutil
from importlib.util import find_spec
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from verticals.sdk import discovery
from verticals.sdk.discovery import (
    SLUG,  # the rule start-up validation applies to plugin and task names
)

TEMPLATES = Path(__file__).resolve().parents[2] / "scaffold" / "plugin"
TEMPLATE_SUFFIX = "-tpl"
PACKAGE_FOLDER = "package"  # the template folder that becomes NAME/
PLACEHOLDER = re.compile(r"\{\{ ?([a-z_]+) ?\}\}")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


def plugin_context(name: str, task_name: str | None = None) -> dict[str, str]:
    """The values the templates name ({{ name }}, {{ camel }}, …), or CommandError saying what to fix."""
    if not IDENTIFIER.match(name) or not name.isidentifier() or keyword.iskeyword(name):
        raise CommandError(
            f"'{name}' is not a valid plugin name: use a lower-case Python identifier (letters, digits and '_', "
            f"starting with a letter), e.g. legal_docs."
        )
    slug = name.replace("_", "-").strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    if not SLUG.match(slug):
        raise CommandError(
            f"'{name}' gives the plugin name '{slug}', which start-up validation refuses (a slug of at most "
            f"63 characters); pick another name."
        )
    task_name = task_name if task_name is not None else f"{slug}-classifier"
    if not SLUG.match(task_name):
        raise CommandError(
            f"'{task_name}' is not a valid task name: use a lower-case slug (letters, digits and '-', starting with a "
            f"letter, at most 63 characters), e.g. {slug}-classifier."
        )
    camel = "".join(part.capitalize() for part in name.split("_") if part)
    title = " ".join(part for part in name.split("_") if part).capitalize()
    return {
        "name": name,
        "camel": camel,
        "plugin_name": slug,
        "distribution": f"verticals-{slug}",
        "task_name": task_name,
        "title": title,
    }


def check_unused(context: dict[str, str]) -> None:
    """Refuse names that would clash with what is installed: a module, an app label, a plugin, a task."""
    from django.apps import apps

    name = context["name"]
    spec = find_spec(name)
    # A namespace package (a bare folder on the path, e.g. docs/ here) is not a module that would clash.
    if spec is not None and not (
        spec.origin is None and spec.submodule_search_locations is not None
    ):
        raise CommandError(
            f"A Python module named '{name}' already exists ({spec.origin}); the plugin's package would "
            f"clash with it. Pick another name."
        )
    if name in apps.app_configs:
        raise CommandError(
            f"A Django app labelled '{name}' is installed already ({apps.app_configs[name].name}); pick another name."
        )
    plugins = discovery.plugins()
    if context["plugin_name"] in plugins:
        raise CommandError(
            f"A plugin named '{context['plugin_name']}' is installed already "
            f"({getattr(plugins[context['plugin_name']], 'source', '?')}); pick another name."
        )
    owner = discovery.plugin_of(context["task_name"])
    if owner is not None:
        raise CommandError(
            f"The task '{context['task_name']}' is declared already, by the plugin '{owner.name}'; "
            f"task names are unique across plugins: choose another with --task."
        )


def render(text: str, context: dict[str, str], where: str) -> str:
    def value(match: re.Match) -> str:
        key = match.group(1)
        if key not in context:
            raise CommandError(
                f"The scaffold template {where} names an unknown placeholder {{{{ {key} }}}} (a bug in the SDK)."
            )
        return context[key]

    return PLACEHOLDER.sub(value, text)


def rendered_files(context: dict[str, str]) -> dict[Path, str]:
    """{path relative to the new package folder: text} for every template."""
    files = {}
    for template in sorted(TEMPLATES.rglob(f"*{TEMPLATE_SUFFIX}")):
        relative = template.relative_to(TEMPLATES)
        parts = [context["name"] if part == PACKAGE_FOLDER else part for part in relative.parts]
        parts[-1] = parts[-1][: -len(TEMPLATE_SUFFIX)]
        files[Path(*parts)] = render(
            template.read_text(encoding="utf-8"), context, relative.as_posix()
        )
    if not files:
        raise CommandError(
            f"No scaffold templates were found in {TEMPLATES}; the verticals installation is incomplete."
        )
    return files


class Command(BaseCommand):
    help = (
        "Create DIR/NAME/, a new Verticals plugin package with a working example task (a text classifier) "
        "and its tests, ready for `pip install -e DIR/NAME`."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "name", help="The plugin's Python package: a lower-case identifier, e.g. legal_docs."
        )
        parser.add_argument(
            "--directory",
            default=None,
            help="Where to create the NAME/ folder (default: the current directory).",
        )
        parser.add_argument(
            "--task",
            dest="task",
            default=None,
            help="The example task's name, a lower-case slug unique across plugins (default: NAME-classifier).",
        )

    def handle(
        self, *args, name: str, directory: str | None = None, task: str | None = None, **options
    ):
        context = plugin_context(name, task)
        parent = Path(directory).expanduser() if directory else Path.cwd()
        target = (parent / name).resolve()
        if target.exists() or target.is_symlink():
            raise CommandError(
                f"{target} exists already; startplugin never overwrites a folder. Remove it or choose "
                f"another --directory."
            )
        check_unused(context)
        files = rendered_files(context)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Everything is written into a hidden sibling first and moved into place at the end, so
            # a failure leaves no half-made plugin behind.
            staging = target.parent / f".{name}-{secrets.token_hex(6)}"
            staging.mkdir()
        except OSError as exc:
            raise CommandError(f"Cannot create the plugin in {target.parent}: {exc}") from exc
        try:
            for relative, text in files.items():
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            if target.exists():
                raise CommandError(
                    f"{target} appeared while the plugin was being written; nothing was overwritten."
                )
            staging.rename(target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise CommandError(f"Cannot write the plugin to {target}: {exc}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the plugin '{context['plugin_name']}' with the task '{context['task_name']}' in {target}"
            )
        )
        for relative in files:
            self.stdout.write(f"  {name}/{relative.as_posix()}")
        self.stdout.write(
            "\nNext:\n"
            f"  pip install -e {target}      # registers the entry point (verticals.plugins)\n"
            f"  cd {target} && python -m pytest   # the conformance suite and the task's own tests\n"
            f"Then read {target / 'README.md'} and docs/plugins.md to make the task your own."
        )
