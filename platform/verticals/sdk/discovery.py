"""Finding plugins (the `verticals.plugins` entry-point group) and checking them at start-up.

Settings add each entry point's AppConfig to INSTALLED_APPS (`plugin_app_paths`); when the
apps are ready, `load()` imports each app's `plugin`, validates every declared piece and
fills the task registry. A broken plugin stops start-up with a message naming the plugin and
the problem. Nothing registers after start-up.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from decimal import Decimal
from fnmatch import fnmatchcase
from importlib import import_module, metadata
from typing import NoReturn

import jsonschema
from django.core.exceptions import ImproperlyConfigured

from verticals.sdk.contracts import OPTIMIZATIONS, PLAYGROUNDS, Architecture, Plugin, Task
from verticals.sdk.datasets import DatasetSchema
from verticals.sdk.meters import CORE_METERS, Meter
from verticals.sdk.meters import KEY as METER_KEY
from verticals.sdk.params import problems, with_defaults

ENTRY_POINT_GROUP = "verticals.plugins"
# Parameters core adds to every train job: a task's own schema may not use these names.
RESERVED_PARAMS = frozenset(
    {"dataset", "architecture", "base_model", "parent", "seed", "name", "split"}
)
REQUIRED_METHODS = (
    "train",
    "evaluate",
    "save",
    "load",
    "predict",
    "example_dataset",
    "example_inputs",
)
SLUG = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
QUANTITY_PLACES = 6  # usage quantities are stored in micro-units (as billing.money.QUANTITY_PLACES)

_tasks: dict[str, Task] = {}
_task_plugin: dict[str, Plugin] = {}
_plugins: dict[str, Plugin] = {}
_loaded = False
CORE_KEYS = frozenset(meter.key for meter in CORE_METERS)


class PluginError(ImproperlyConfigured):
    """A plugin breaks the contract; the message names the plugin and the problem."""


def plugin_app_paths() -> list[str]:
    """The AppConfig paths the installed plugin packages declare (read by settings).

    Only the packages' top modules are located (not imported): an entry point whose package is
    gone stops start-up with a message naming it, rather than a bare ModuleNotFoundError.
    """
    from importlib.util import find_spec

    seen, paths = set(), []
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if entry.value in seen:
            continue
        top = entry.value.split(".")[0].split(":")[0]
        if find_spec(top) is None:
            dist = getattr(entry, "dist", None)
            raise PluginError(
                f"Plugin entry point '{entry.name} = {entry.value}'"
                + (f" of the package {dist.name}" if dist else "")
                + f" names the module '{top}', which is not installed; reinstall the plugin package or remove it."
            )
        seen.add(entry.value)
        paths.append(entry.value)
    return paths


def _resolve(path: str):
    module, _, attr = path.replace(":", ".").rpartition(".")
    return getattr(import_module(module), attr)


def validate_plugin(candidate, source: str) -> Plugin:
    """The plugin instance, or PluginError naming `source` and what is wrong."""
    plugin = candidate() if inspect.isclass(candidate) else candidate
    if not isinstance(plugin, Plugin):
        raise PluginError(f"Plugin {source}: {candidate!r} is not a verticals.sdk.Plugin subclass.")
    label = f"Plugin '{plugin.name or '?'}' ({source})"
    if not plugin.name or not SLUG.match(plugin.name):
        raise PluginError(
            f"{label}: `name` must be a lower-case slug (letters, digits, '-'), not {plugin.name!r}."
        )
    if not plugin.tasks:
        raise PluginError(f"{label}: declares no tasks; list at least one Task in `tasks`.")
    own_meters = list(plugin.meters)
    for meter in own_meters:
        if not isinstance(meter, Meter):
            raise PluginError(f"{label}: {meter!r} in `meters` is not a verticals.sdk.Meter.")
        if not METER_KEY.match(meter.key):
            raise PluginError(
                f"{label}: meter key {meter.key!r} must be dotted lower case, e.g. 'speech.audio_seconds'."
            )
        if meter.key in CORE_KEYS:
            raise PluginError(
                f"{label}: meter '{meter.key}' is core's; charge it from a task without declaring it."
            )
    known = CORE_KEYS | {meter.key for meter in own_meters}
    names = set()
    plugin.task_instances = []
    for declared in plugin.tasks:
        task = declared() if inspect.isclass(declared) else declared
        if not isinstance(task, Task):
            raise PluginError(
                f"{label}: {declared!r} in `tasks` is not a verticals.sdk.Task subclass."
            )
        validate_task(task, label)
        unknown = sorted(set(task.meters) - known)
        if unknown:
            raise PluginError(
                f"{label}, task '{task.name}': charges meters nobody declares {unknown}; "
                f"declare them in the plugin's `meters` or use core's {sorted(CORE_KEYS)}."
            )
        if task.name in names:
            raise PluginError(f"{label}: declares the task '{task.name}' twice.")
        names.add(task.name)
        plugin.task_instances.append(task)
    return plugin


def validate_task(task: Task, label: str) -> None:
    where = f"{label}, task '{task.name or type(task).__name__}'"

    def fail(problem: str) -> NoReturn:
        raise PluginError(f"{where}: {problem}")

    if not task.name or not SLUG.match(task.name):
        fail(f"`name` must be a lower-case slug (letters, digits, '-'), not {task.name!r}.")
    for attr in ("domain", "title"):
        if not isinstance(getattr(task, attr), str) or not getattr(task, attr):
            fail(f"`{attr}` is missing.")
    if not isinstance(getattr(task, "dataset", None), DatasetSchema):
        fail(
            "`dataset` must be a DatasetSchema instance (e.g. LabelledText() or LabelledImages())."
        )
    if type(task.dataset).read is DatasetSchema.read:
        fail(
            "`dataset` does not implement read(upload, files_dir), which yields the upload's examples as it reads them."
        )
    missing = [m for m in REQUIRED_METHODS if getattr(type(task), m) is getattr(Task, m)]
    if missing:
        fail(f"does not implement {', '.join(missing)}.")
    archs = list(task.architectures)
    if not archs or not all(isinstance(a, Architecture) for a in archs):
        fail("`architectures` must list at least one verticals.sdk.Architecture.")
    arch_names = [a.name for a in archs]
    if len(set(arch_names)) != len(arch_names):
        fail(f"architecture names repeat: {arch_names}.")
    default = task.architecture(task.default_architecture)
    if default is None:
        fail(f"`default_architecture` {task.default_architecture!r} is not one of {arch_names}.")
    if default.requires_base:
        fail(
            f"the default architecture {default.name!r} needs a base model; the default must train from scratch."
        )
    for attr in ("params_schema", "input_schema", "output_schema"):
        schema = getattr(task, attr)
        if not isinstance(schema, dict) or not schema:
            fail(f"`{attr}` must be a JSON Schema (a non-empty dict).")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            fail(f"`{attr}` is not a valid JSON Schema: {exc.message}.")
    if task.params_schema.get("type") != "object":
        fail('`params_schema` must describe an object ("type": "object").')
    clash = RESERVED_PARAMS & set(task.params_schema.get("properties") or {})
    if clash:
        fail(f"`params_schema` uses names core reserves for every train job: {sorted(clash)}.")

    defaults_bad = problems(task.params_schema, with_defaults(task.params_schema, {}))
    if defaults_bad:
        fail(f"the defaults of params_schema do not match it: {'; '.join(defaults_bad)}.")
    tiny_bad = problems(task.params_schema, with_defaults(task.params_schema, task.tiny_params))
    if tiny_bad:
        fail(f"`tiny_params` do not match params_schema: {'; '.join(tiny_bad)}.")
    if not task.metrics or not all(isinstance(m, str) for m in task.metrics):
        fail("`metrics` must name at least one metric.")
    if task.primary_metric not in task.metrics:
        fail(
            f"`primary_metric` {task.primary_metric!r} is not one of `metrics` {list(task.metrics)}."
        )
    unknown = set(task.optimizations) - set(OPTIMIZATIONS)
    if unknown:
        fail(f"`optimizations` names unknown ones {sorted(unknown)}; known: {list(OPTIMIZATIONS)}.")
    if (
        not isinstance(task.meters, dict)
        or not task.meters
        or not all(isinstance(k, str) for k in task.meters)
    ):
        fail("`meters` must map meter names to positive units per predicted input.")
    for meter, per_input in task.meters.items():
        _check_units(meter, per_input, fail)
    if task.playground not in PLAYGROUNDS:
        fail(f"`playground` must be one of {list(PLAYGROUNDS)}, not {task.playground!r}.")
    if not isinstance(task.max_batch, int) or task.max_batch < 1:
        fail("`max_batch` must be a positive integer.")
    files = task.model_files
    if (
        isinstance(files, str)
        or not isinstance(files, (list, tuple))
        or not all(isinstance(p, str) and p and "/" not in p for p in files)
    ):
        fail(
            "`model_files` must list patterns of file names (no folders), e.g. verticals.sdk.artifacts.MODEL_FILES."
        )
    for needed in ("config.json", "model.safetensors"):
        if not any(fnmatchcase(needed, p) for p in files):
            fail(f"`model_files` must match {needed!r}: core stores and loads a model by it.")


def _check_units(meter: str, per_input, fail: Callable[[str], NoReturn]) -> None:
    """Units per predicted input: a positive int, float or Decimal that micro-units hold exactly
    (usage quantities are stored as integers of millionths), so a call's quantity never has to be rounded."""
    if isinstance(per_input, bool) or not isinstance(per_input, (int, float, Decimal)):
        fail(
            f"`meters` must map meter names to positive units per predicted input; '{meter}' has {per_input!r} "
            f"({type(per_input).__name__}), give an int, float or Decimal."
        )
    units = Decimal(str(per_input))
    if not units.is_finite() or units <= 0:
        fail(
            f"`meters` must map meter names to positive units per predicted input; '{meter}' has {per_input!r}."
        )
    exponent: int  # finite (checked above): an int, not 'n', 'N' or 'F'
    _sign, digits, exponent = units.as_tuple()  # type: ignore[assignment]
    while exponent < 0 and digits[-1] == 0:
        # 0.5000000 is 0.5 (no rounding: exact at any precision)
        digits, exponent = digits[:-1], exponent + 1
    if exponent < -QUANTITY_PLACES:
        fail(
            f"`meters`: '{meter}' charges {per_input!r} units per input, which has more than {QUANTITY_PLACES} decimals; "
            f"usage is stored in millionths of a unit: round it to at most {QUANTITY_PLACES} decimals."
        )


def register_plugin(plugin: Plugin, source: str) -> None:
    if plugin.name in _plugins:
        raise PluginError(
            f"Plugin name '{plugin.name}' is used twice: by {_plugins[plugin.name].source} and by {source}."
        )
    for task in plugin.task_instances:
        if task.name in _tasks:
            other = _task_plugin[task.name]
            raise PluginError(
                f"Task '{task.name}' is declared twice: by plugin '{other.name}' ({other.source}) and by plugin '{plugin.name}' ({source})."
            )
    for meter in plugin.meters:
        owner = next(
            (p for p in _plugins.values() if any(m.key == meter.key for m in p.meters)), None
        )
        if owner is not None:
            raise PluginError(
                f"Meter '{meter.key}' is declared twice: by plugin '{owner.name}' ({owner.source}) and by plugin '{plugin.name}' ({source})."
            )
    plugin.source = source
    _plugins[plugin.name] = plugin
    for task in plugin.task_instances:
        _tasks[task.name] = task
        _task_plugin[task.name] = plugin


def load() -> None:
    """Fill the registry from the installed apps that name a `plugin` (once, when apps are ready)."""
    global _loaded
    if _loaded:
        return
    from django.apps import apps

    for config in apps.get_app_configs():
        declared = getattr(config, "plugin", None)
        if declared is None:
            continue
        source = f"app '{config.name}'"
        try:
            candidate = _resolve(declared) if isinstance(declared, str) else declared
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"Plugin of {source}: cannot import {declared!r}: {exc}.") from exc
        register_plugin(validate_plugin(candidate, source), source)
    _loaded = True


def tasks() -> dict[str, Task]:
    load()
    return dict(sorted(_tasks.items()))


def get_task(name: str) -> Task | None:
    load()
    return _tasks.get(name)


def plugin_of(task_name: str) -> Plugin | None:
    load()
    return _task_plugin.get(task_name)


def plugins() -> dict[str, Plugin]:
    load()
    return dict(sorted(_plugins.items()))


def meters() -> dict[str, tuple[Meter, str]]:
    """Every meter: core's and each plugin's, with who declares it ("core" or the plugin's name)."""
    load()
    found = {meter.key: (meter, "core") for meter in CORE_METERS}
    for plugin in _plugins.values():
        found.update({meter.key: (meter, plugin.name) for meter in plugin.meters})
    return found


_meter_keys: tuple[tuple, frozenset[str]] = ((), frozenset())


def meter_keys() -> frozenset[str]:
    """The keys of `meters()`, worked out again only when the installed plugins change (read on
    every metered call)."""
    global _meter_keys
    load()
    installed = tuple(_plugins.values())  # held, so the comparison is by the very objects
    known = _meter_keys[0]
    if (
        len(installed) != len(known)
        or any(a is not b for a, b in zip(installed, known, strict=True))
        or not _meter_keys[1]
    ):
        _meter_keys = (installed, frozenset(meters()))
    return _meter_keys[1]


def enabled_tasks(tenant=None) -> dict[str, Task]:
    """Installed is not enabled: tasks a tenant may use (all installed ones minus
    PLUGINS_DISABLED_TASKS; billing narrows this per plan)."""
    from django.conf import settings

    disabled = set(getattr(settings, "PLUGINS_DISABLED_TASKS", ()))
    return {name: task for name, task in tasks().items() if name not in disabled}
