"""docker/: every command the compose file and the Dockerfile run names an entry point that
exists in this project, and the environment they give the web service passes
`manage.py check --deploy`. No Docker engine is needed: the files are parsed and their
commands checked against the installed project."""

import contextlib
import importlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.processes import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"

BACKING_SERVICES = {"postgres", "redis"}
REQUIRED_SERVICES = {"web", "worker", "system-worker", "beat"} | BACKING_SERVICES
WORKER_QUEUES = {"train", "optimize", "inference", "default"}
# What compose gives the web service beyond the image's ENV: settings read these.
SETTINGS_ENV = (
    "DEBUG",
    "SECRET_KEY",
    "DATABASE_URL",
    "DATABASE_APP_USER",
    "DATABASE_APP_PASSWORD",
    "CELERY_BROKER_URL",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "PORTAL_BASE_URL",
)


# --- reading the files ------------------------------------------------------------------


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def our_services(compose: dict) -> dict:
    """Services built from this repository's Dockerfile (not postgres, redis, ...)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: str, secret_key: str) -> str:
    """Compose's variable substitution, with no variable set in the shell except SECRET_KEY."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        if name == "SECRET_KEY":
            return secret_key
        if match.group(2) and match.group(2).endswith("?"):
            raise AssertionError(f"compose requires ${name}: the test only provides SECRET_KEY")
        return (match.group(3) or "") if match.group(2) else ""

    return _VAR.sub(one, str(value))


def as_argv(command) -> list[str]:
    if isinstance(command, str):
        return shlex.split(command.replace("$$", "$"))
    return [str(part) for part in command]


def healthcheck_argv(test) -> list[str] | None:
    """The command a compose health check runs, or None when it is disabled."""
    if isinstance(test, str):
        return shlex.split(test.replace("$$", "$"))
    kind, *rest = test
    if kind == "NONE":
        return None
    if kind == "CMD":
        return [str(part) for part in rest]
    assert kind == "CMD-SHELL", f"unknown health check form {kind!r}"
    return shlex.split(rest[0].replace("$$", "$"))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def dockerfile_exec_form(keyword: str) -> list[str]:
    (args,) = [args for kw, args in dockerfile_instructions() if kw == keyword][-1:]
    if keyword == "HEALTHCHECK":
        args = args[args.index("CMD ") + len("CMD ") :]
    argv = json.loads(args)
    assert isinstance(argv, list), f"{keyword} must use the exec (JSON) form"
    return argv


# --- checking one command ---------------------------------------------------------------


def venv_which(executable: str) -> str | None:
    """Where the running interpreter's environment (the venv) has `executable`."""
    dirs = dict.fromkeys([str(Path(sys.executable).parent), sysconfig.get_path("scripts")])
    return shutil.which(executable, path=os.pathsep.join(dirs))


def _import_attr(dotted: str, separator: str) -> tuple[object | None, str | None]:
    module_name, _, attr = dotted.rpartition(separator)
    if not module_name or not attr:
        return None, f"{dotted!r} is not of the form module{separator}attribute"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an entry point that cannot even be imported
        return None, f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
    if not hasattr(module, attr):
        return None, f"module {module_name!r} has no attribute {attr!r}"
    return getattr(module, attr), None


def _check_gunicorn(args: list[str]) -> list[str]:
    from gunicorn.config import Config

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = Config().parser().parse_args(args)
    except SystemExit:
        return [f"gunicorn rejects its arguments: {stderr.getvalue().strip().splitlines()[-1]}"]
    if len(parsed.args) != 1:
        return [f"gunicorn needs exactly one application (module:attribute), got {parsed.args}"]
    problems = []
    app, problem = _import_attr(parsed.args[0], ":")
    if problem:
        problems.append(f"gunicorn application: {problem}")
    elif not callable(app):
        problems.append(f"gunicorn application {parsed.args[0]!r} is not callable")
    if parsed.worker_class and "." in parsed.worker_class:
        _, problem = _import_attr(parsed.worker_class, ".")
        if problem:
            problems.append(f"gunicorn worker class: {problem}")
    return problems


def _check_celery(args: list[str]) -> list[str]:
    import click
    from celery import Celery
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery as celery_cli

    try:
        with celery_cli.make_context("celery", list(args)) as ctx:
            app_name = ctx.params.get("app")
            if not app_name:
                return ["celery is run without -A/--app"]
            try:
                app = find_app(app_name)
            except Exception as exc:
                return [f"celery -A {app_name}: no Celery app found ({type(exc).__name__}: {exc})"]
            if not isinstance(app, Celery):
                return [f"celery -A {app_name} finds {app!r}, not a celery.Celery"]
            # The subcommand and its options, parsed by Celery's own command line.
            ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
            rest = [
                *ctx.__dict__.get("_protected_args", ctx.__dict__.get("protected_args", [])),
                *ctx.args,
            ]
            if not rest:
                return [f"celery -A {app_name} is run without a subcommand (worker, beat, ...)"]
            name, command, rest = celery_cli.resolve_command(ctx, rest)
            command.make_context(name, rest, parent=ctx).close()
    except click.UsageError as exc:
        return [f"celery rejects its arguments: {exc.format_message().splitlines()[0]}"]
    return []


def _check_python(args: list[str]) -> list[str]:
    if args[:1] == ["manage.py"]:
        from django.core.management import get_commands, load_command_class
        from django.core.management.base import CommandError

        if not (REPO / "manage.py").is_file():
            return ["manage.py is not at the repository root"]
        if len(args) < 2:
            return ["`python manage.py` is run without a management command"]
        name, options = args[1], args[2:]
        commands = get_commands()
        if name not in commands:
            return [f"manage.py has no command {name!r}"]
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        try:
            parser.parse_args(options)
        except (CommandError, SystemExit) as exc:
            return [f"manage.py {name} rejects {options}: {exc}"]
        return []
    if args[:1] == ["-c"] and len(args) >= 2:
        try:
            compile(args[1], "<python -c>", "exec")
        except SyntaxError as exc:
            return [f"python -c code does not compile: {exc}"]
        return []
    if args[:1] == ["-m"] and len(args) >= 2:
        if importlib.util.find_spec(args[1]) is None:
            return [f"python -m {args[1]}: no such module"]
        return []
    return [f"python is run with {args}: expected `manage.py COMMAND`, `-c CODE` or `-m MODULE`"]


CHECKERS = {"gunicorn": _check_gunicorn, "celery": _check_celery, "python": _check_python}


def command_problems(where: str, argv: list[str]) -> list[str]:
    """What is wrong with `argv` (run by `where`): each problem names `where`."""
    if not argv:
        return [f"{where}: empty command"]
    executable, *args = argv
    problems = []
    if venv_which(executable) is None:
        problems.append(
            f"executable {executable!r} is not installed in this environment ({sys.prefix})"
        )
    checker = CHECKERS.get(executable)
    if checker is None:
        problems.append(
            f"no check knows the executable {executable!r}: run gunicorn, celery or python, "
            "or teach tests/config/test_docker.py to check it"
        )
    else:
        problems.extend(checker(args))
    return [f"{where}: `{shlex.join(argv)}`: {problem}" for problem in problems]


# --- the compose file -------------------------------------------------------------------

SERVICES = sorted(our_services(load_compose())) if COMPOSE.exists() else []


def test_compose_declares_the_services():
    compose = load_compose()
    missing = REQUIRED_SERVICES - set(compose["services"])
    assert not missing, f"docker/compose.yaml lacks the services {sorted(missing)}"
    ours = our_services(compose)
    for name in ("web", "worker", "beat"):
        assert name in ours, f"service {name!r} is not built from docker/Dockerfile"
    for name, svc in ours.items():
        build = svc["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == REPO, f"service {name!r} builds from {context}, not the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, (
            f"service {name!r} builds from {build['dockerfile']!r}, not docker/Dockerfile"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_service_commands_name_entry_points_that_exist(service):
    svc = load_compose()["services"][service]
    assert "command" in svc, (
        f"service {service!r} has no command (the image's CMD is the web server)"
    )
    problems = command_problems(f"service {service!r}", as_argv(svc["command"]))
    health = svc.get("healthcheck", {})
    if not health.get("disable") and "test" in health:
        argv = healthcheck_argv(health["test"])
        if argv is not None:
            problems += command_problems(f"service {service!r} health check", argv)
    assert not problems, "\n".join(problems)


def test_the_checks_catch_commands_that_name_nothing():
    """The checks above fail, naming the service, when a command names nothing real."""
    wrong = {
        "web": [
            "gunicorn",
            "verticals.config.asgi:no_such_app",
            "-k",
            "uvicorn_worker.UvicornWorker",
        ],
        "web2": ["gunicorn", "verticals.config.asgi:application", "-k", "no_such_module.Worker"],
        "web3": ["gunicorn", "verticals.config.asgi:application", "--no-such-flag"],
        "worker": ["celery", "-A", "no_such_package_xyz", "worker"],
        "worker2": ["celery", "-A", "verticals", "wrker"],
        "worker3": ["celery", "-A", "verticals", "worker", "--no-such-flag"],
        "migrate": ["python", "manage.py", "no_such_command"],
        "migrate2": ["python", "manage.py", "migrate", "--no-such-flag"],
        "other": ["no-such-executable-xyz", "serve"],
    }
    for service, argv in wrong.items():
        problems = command_problems(f"service {service!r}", argv)
        assert problems, f"{argv} names something that does not exist, yet passed the check"
        assert all(f"service {service!r}" in problem for problem in problems), problems
    assert not command_problems("service 'ok'", ["celery", "-A", "verticals", "beat", "-l", "info"])


def test_web_runs_gunicorn_with_uvicorn_workers_and_worker_takes_every_queue():
    services = load_compose()["services"]
    web = as_argv(services["web"]["command"])
    assert web[:2] == ["gunicorn", "verticals.config.asgi:application"], web
    assert web[web.index("-k") + 1] == "uvicorn_worker.UvicornWorker", web
    assert web[web.index("-b") + 1] == "0.0.0.0:8000", web
    worker = as_argv(services["worker"]["command"])
    assert worker[:4] == ["celery", "-A", "verticals", "worker"], worker
    queues = set(worker[worker.index("-Q") + 1].split(","))
    assert WORKER_QUEUES <= queues, (
        f"service 'worker' does not consume {sorted(WORKER_QUEUES - queues)}"
    )
    beat = as_argv(services["beat"]["command"])
    assert beat[:4] == ["celery", "-A", "verticals", "beat"], beat
    system = as_argv(services["system-worker"]["command"])
    assert (
        system[:4] == ["celery", "-A", "verticals", "worker"]
        and system[system.index("-Q") + 1] == "system"
    ), system


def test_migrations_run_before_the_platform_starts():
    compose = load_compose()
    ours = our_services(compose)
    runners = [
        name
        for name, svc in ours.items()
        if as_argv(svc["command"])[:3] == ["python", "manage.py", "migrate"]
    ]
    web_argv = as_argv(ours["web"]["command"])
    if not runners:
        assert "migrate" in " ".join(web_argv), "nothing runs `python manage.py migrate`"
        return
    (migrate,) = runners
    for name in ("web", "worker", "system-worker", "beat"):
        assert migrate in ours[name].get("depends_on", {}), (
            f"service {name!r} does not wait for {migrate!r}"
        )


def test_backing_services_have_health_checks_and_volumes():
    services = load_compose()["services"]
    for name, probe in (("postgres", "pg_isready"), ("redis", "redis-cli ping")):
        svc = services[name]
        assert "healthcheck" in svc and not svc["healthcheck"].get("disable"), (
            f"service {name!r} has no health check"
        )
        argv = healthcheck_argv(svc["healthcheck"]["test"])
        assert probe in " ".join(argv or []), f"service {name!r}: health check does not run {probe}"
        assert svc.get("volumes"), f"service {name!r} keeps its data in no volume"
    assert services["postgres"]["image"].startswith("postgres:16"), services["postgres"]["image"]
    assert services["redis"]["image"].startswith("redis:7"), services["redis"]["image"]


def test_web_health_check_calls_healthz():
    web = load_compose()["services"]["web"]
    argv = healthcheck_argv(web["healthcheck"]["test"])
    assert argv and argv[:2] == ["python", "-c"] and "/healthz" in argv[2], argv


def test_dependencies_wait_until_healthy():
    services = load_compose()["services"]
    for name, svc in services.items():
        depends_on = svc.get("depends_on", {})
        assert isinstance(depends_on, dict), (
            f"service {name!r}: depends_on is a list; give each dependency a condition"
        )
        for dep, spec in depends_on.items():
            assert dep in services, (
                f"service {name!r} depends on {dep!r}, which compose does not define"
            )
            condition = (spec or {}).get("condition")
            target = services[dep]
            one_shot = str(target.get("restart", "no")) == "no" and target.get(
                "healthcheck", {}
            ).get("disable")
            if one_shot:
                # A one-shot (migrate) is never "healthy": wait until it has finished, successfully.
                assert condition == "service_completed_successfully", (
                    f"service {name!r} waits for one-shot {dep!r} with {condition!r}, "
                    "not service_completed_successfully"
                )
                continue
            assert condition == "service_healthy", (
                f"service {name!r} waits for {dep!r} with condition {condition!r}, not service_healthy"
            )
            health = target.get("healthcheck", {})
            assert health.get("test") and not health.get("disable"), (
                f"service {name!r} waits for {dep!r} to be healthy, but {dep!r} has no health check"
            )


def test_shared_environment_and_volumes():
    compose = load_compose()
    env = compose["x-env"]
    assert env["DEBUG"] == "0"
    assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"]), env["SECRET_KEY"]
    assert env["DATABASE_URL"] == "postgres://verticals:verticals@postgres:5432/verticals"
    assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    for name in SETTINGS_ENV:
        assert name in env, f"x-env does not set {name}"
    declared = set(compose.get("volumes") or {})
    for name, svc in our_services(compose).items():
        own = {
            key: value
            for key, value in svc["environment"].items()
            if key not in env or value != env[key]
        }
        assert {key: svc["environment"].get(key) for key in env} == env, (
            f"service {name!r} does not use the shared x-env environment"
        )
        # Only web adds to it: its request threads are long-lived, so it keeps database connections.
        assert own == ({"DB_CONN_MAX_AGE": "60"} if name == "web" else {}), (
            f"service {name!r} adds {own}"
        )
        mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in svc.get("volumes", [])}
        for variable in ("VERTICALS_VAR_DIR", "MEDIA_ROOT"):
            path = env.get(variable) or dockerfile_env()[variable]
            assert path in mounts, f"service {name!r}: {variable}={path} is not on a volume"
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, (
                    f"service {name!r} mounts volume {source!r}, not declared"
                )


# --- the Dockerfile ---------------------------------------------------------------------


def test_dockerfile_builds_a_slim_non_root_image_with_the_project_installed():
    instructions = dockerfile_instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms and froms[-1].split()[0] == "python:3.11-slim", froms
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"the image runs as {users[-1:] or 'root'}"
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    assert "pip install --no-cache-dir -e ." in runs
    env = dockerfile_env()
    assert env.get("DJANGO_SETTINGS_MODULE") == "verticals.config.settings"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("VERTICALS_VAR_DIR") == "/app/var"
    assert "8000" in [args for keyword, args in instructions if keyword == "EXPOSE"]
    assert [args for keyword, args in instructions if keyword == "WORKDIR"][-1] == "/app"


def test_dockerfile_copies_everything_the_project_needs():
    copied = set()
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY":
            *sources, _ = shlex.split(args)
            copied.update(source.rstrip("/") for source in sources if not source.startswith("--"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", "manage.py", "templates", "static"}
    needed.update(pyproject["tool"]["setuptools"]["packages"]["find"]["where"])
    missing = needed - copied
    assert not missing, f"docker/Dockerfile does not COPY {sorted(missing)} into the image"
    assert "." not in copied, (
        "COPY . would put .venv and var/ (a development secret key) in the image"
    )


def test_dockerfile_cmd_and_health_check_name_entry_points_that_exist():
    cmd = dockerfile_exec_form("CMD")
    problems = command_problems("Dockerfile CMD", cmd)
    problems += command_problems("Dockerfile HEALTHCHECK", dockerfile_exec_form("HEALTHCHECK"))
    assert not problems, "\n".join(problems)
    assert cmd == as_argv(load_compose()["services"]["web"]["command"]), (
        "the image's default CMD is not the web service's command"
    )
    assert "/healthz" in " ".join(dockerfile_exec_form("HEALTHCHECK"))


def _build_secret_key() -> str:
    (run,) = [
        args
        for keyword, args in dockerfile_instructions()
        if keyword == "RUN" and "collectstatic" in args
    ]
    match = re.search(r"\bSECRET_KEY=(\S+)", run)
    assert match, "collectstatic runs without a build-time SECRET_KEY"
    return match.group(1)


def test_build_time_secret_key_is_fit_for_debug_off():
    from verticals.config.settings import secret_key_problem

    key = _build_secret_key()
    assert len(key) == 64, f"the build-time SECRET_KEY has {len(key)} characters, not 64"
    assert secret_key_problem(key) is None, secret_key_problem(key)


# --- the settings in the environment compose gives --------------------------------------


def _base_env(tmp_path: Path) -> dict[str, str]:
    """The image's ENV on top of a bare process environment, with files under tmp_path."""
    env = {
        name: os.environ[name]
        for name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        if name in os.environ
    }
    env.update(dockerfile_env())
    env.update(
        VERTICALS_VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "media"),
        STATIC_ROOT=str(tmp_path / "static"),
    )
    return env


def compose_web_env(tmp_path: Path) -> dict[str, str]:
    """What the web container's process sees, with SQLite in tmp_path instead of PostgreSQL."""
    secret_key = secrets.token_urlsafe(48)  # 64 characters
    env = _base_env(tmp_path)
    for name, value in load_compose()["services"]["web"]["environment"].items():
        env[name] = interpolate(value, secret_key)
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VERTICALS_VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    return env


def manage(env: dict[str, str], *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_check_deploy_reports_nothing_with_the_compose_environment(tmp_path):
    env = compose_web_env(tmp_path)
    assert env["DEBUG"] == "0" and len(env["SECRET_KEY"]) == 64
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"manage.py check --deploy with docker/compose.yaml's environment:\n{output}"
    )
    assert "no issues" in output, output


@pytest.mark.parametrize(
    "secret_key",
    [None, "django-insecure-" + secrets.token_urlsafe(48)],
    ids=["no-secret-key-development-fallback", "django-insecure-key"],
)
def test_debug_off_refuses_a_development_secret_key(tmp_path, secret_key):
    env = _base_env(tmp_path)
    env["DEBUG"] = "0"
    env.pop("SECRET_KEY", None)
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    result = manage(env, "check")
    assert result.returncode != 0, (
        f"manage.py check accepted a development key with DEBUG=0:\n{result.stdout}"
    )
    assert "SECRET_KEY is unfit for production" in result.stderr, result.stderr


def test_collectstatic_runs_as_the_dockerfile_runs_it(tmp_path):
    """The build's collectstatic (DEBUG off: compressed, hashed files) works from this tree."""
    env = _base_env(tmp_path)
    env["SECRET_KEY"] = _build_secret_key()
    result = manage(env, "collectstatic", "--noinput", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "static" / "staticfiles.json").is_file(), (
        "no manifest: DEBUG=0 storage was not used"
    )


@pytest.mark.slow
def test_web_command_serves_healthz_to_the_health_check(tmp_path):
    """The web service's command starts with compose's environment, and its health check
    (plain HTTP to 127.0.0.1, DEBUG off, HTTPS redirect on) gets {"status": "ok"}."""
    services = load_compose()["services"]
    env = compose_web_env(tmp_path)
    port = free_port()
    argv = as_argv(services["web"]["command"])
    argv[argv.index("-b") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("--workers") + 1] = "1"
    argv[0] = venv_which(argv[0])
    health = healthcheck_argv(services["web"]["healthcheck"]["test"])
    probe = [sys.executable, "-c", health[2].replace("127.0.0.1:8000", f"127.0.0.1:{port}")]
    assert probe[2] != health[2], "the health check does not call http://127.0.0.1:8000"
    server = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            result = subprocess.run(
                probe, cwd=REPO, env=env, capture_output=True, text=True, timeout=30
            )
            if result.returncode == 0:
                break
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(
                    f"the health check never passed:\n{result.stderr}\nserver:\n{server.communicate()[0]}"
                )
            time.sleep(0.5)
        # And /healthz is the route the image and compose probe: it answers JSON.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok"}
    finally:
        stop_process(server)
