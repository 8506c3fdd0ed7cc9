"""The production stack in docker/, checked without a Docker engine.

The compose file is parsed, the entrypoint is run for real with stub gunicorn/celery/python programs, the
names it hands to gunicorn, Celery and manage.py are resolved in this project, and the Dockerfile's stages
are read instruction by instruction.
"""

from __future__ import annotations

import collections
import functools
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from celery import Celery
from celery.app.utils import find_app
from django.conf import settings
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENTRYPOINT = DOCKER / "entrypoint.sh"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
README = DOCKER / "README.md"

BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|libc6-dev|python3-dev|libpq-dev)\b")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# --- Parsing helpers ------------------------------------------------------------------------------------


@functools.cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def app_services() -> dict[str, dict]:
    """Services that run the supplychain image (built from docker/Dockerfile)."""
    return {
        name: service
        for name, service in services().items()
        if isinstance(service.get("build"), dict) and service["build"].get("dockerfile") == "docker/Dockerfile"
    }


def command(service: dict) -> list[str]:
    value = service.get("command", [])
    return shlex.split(value) if isinstance(value, str) else list(value)


def worker_services() -> dict[str, dict]:
    return {name: service for name, service in app_services().items() if command(service)[:1] == ["worker"]}


def worker_queues(service: dict) -> list[str]:
    args = command(service)
    assert len(args) == 2, f"a worker command is ['worker', 'QUEUE[,QUEUE...]'], got {args}"
    return args[1].split(",")


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test", [])
    return test if isinstance(test, str) else " ".join(test)


def entrypoint_roles() -> set[str]:
    """The labels of the ``case "$role" in ... esac`` that dispatches the first argument."""
    text = ENTRYPOINT.read_text()
    match = re.search(r'^case "\$role" in\n(.*?)^esac', text, re.S | re.M)
    assert match, 'entrypoint.sh has no `case "$role" in ... esac`'
    roles: set[str] = set()
    for label in re.findall(r"^ {4}([^\s()][^()\n]*)\)\s*$", match.group(1), re.M):
        roles.update(part.strip() for part in label.split("|"))
    return roles


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def dockerfile_args() -> dict[str, str]:
    """ARG defaults declared before the first FROM (usable in FROM lines)."""
    args = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
    return args


def base_image(from_args: str) -> str:
    image = from_args.split()[0]
    return re.sub(r"\$\{?(\w+)\}?", lambda m: dockerfile_args().get(m.group(1), m.group(0)), image)


def stage_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (enough for this file), then $$ -> $."""

    def replace(match: re.Match) -> str:
        name, operator, argument = match.groups()
        if operator in (":-", "-"):
            return env.get(name) or argument
        if operator in (":?", "?"):
            if not env.get(name):
                raise KeyError(f"{name}: {argument}")
            return env[name]
        return env.get(name, "")

    return INTERPOLATION.sub(replace, value).replace("$$", "$")


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run entrypoint.sh with gunicorn, celery and python replaced by stubs that print their argv."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for program in ("gunicorn", "celery", "python"):
        stub = stubs / program
        stub.write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\necho "REMAP_SIGTERM=${REMAP_SIGTERM:-}"\n')
        stub.chmod(0o755)
    environment = {
        "PATH": f"{stubs}:/usr/local/bin:/usr/bin:/bin",
        "SUPPLYCHAIN_APP_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        **env,
    }
    return subprocess.run(
        [shutil.which("bash"), str(ENTRYPOINT), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def argv_of(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[:-1]


# --- compose.yaml: the stack ----------------------------------------------------------------------------


def test_compose_defines_databases_migrate_web_a_worker_per_queue_beat_and_flower():
    expected = {"postgres", "redis", "migrate", "web", "beat", "flower"}
    expected |= {f"worker-{queue}" for queue in settings.CELERY_QUEUES}
    assert expected <= set(services()), f"missing services: {sorted(expected - set(services()))}"
    assert {"migrate", "web", "beat", "flower", *worker_services()} <= set(app_services())


def test_every_celery_queue_is_consumed_by_exactly_one_worker_service():
    consumers = collections.Counter(queue for service in worker_services().values() for queue in worker_queues(service))
    for queue in settings.CELERY_QUEUES:
        assert consumers[queue] == 1, f"queue {queue!r} is consumed by {consumers[queue]} worker services"
    for name, service in worker_services().items():
        assert name == "worker-" + "-".join(worker_queues(service)), f"{name} is not named after its queues"


def test_no_worker_service_names_a_queue_celery_does_not_route_to():
    known = set(settings.CELERY_QUEUES)
    for name, service in worker_services().items():
        unknown = set(worker_queues(service)) - known
        assert not unknown, f"{name} consumes unknown queues {sorted(unknown)}"


def test_exactly_one_beat_runs():
    beats = [name for name, service in app_services().items() if command(service)[:1] == ["beat"]]
    assert beats == ["beat"]
    replicas = (services()["beat"].get("deploy") or {}).get("replicas", 1)
    assert replicas == 1


def test_every_app_service_but_the_one_shot_migrate_has_a_healthcheck():
    for name, service in app_services().items():
        healthcheck = service.get("healthcheck") or {}
        if name == "migrate":
            assert command(service) == ["migrate"]
            assert service.get("restart") == "no", "migrate runs once; restarting it would loop"
            continue
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
        assert healthcheck.get("test"), f"{name} has no healthcheck"
    for name in ("postgres", "redis"):
        assert services()[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_worker_healthchecks_ping_the_node_name_the_entrypoint_gives_the_worker(tmp_path):
    for name, service in worker_services().items():
        queues = command(service)[1]
        argv = argv_of(run_entrypoint(tmp_path, "worker", queues))
        node = argv[argv.index("-n") + 1]  # QUEUES@%h; %h is the container's hostname, $HOSTNAME in a shell
        prefix, _, host = node.partition("@")
        assert host == "%h"
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL", f"{name}: $HOSTNAME needs a shell"
        assert re.search(
            rf"celery -A supplychain inspect ping (-d|--destination) {re.escape(prefix)}@\$\$HOSTNAME\b", test[1]
        ), f"{name} pings something else than {prefix}@$$HOSTNAME: {test[1]}"


def test_compose_escapes_every_dollar_it_does_not_interpolate():
    text = re.sub(r"#.*", "", COMPOSE.read_text()).replace("$$", "")
    stray = [text[i : i + 12] for i in range(len(text)) if text[i] == "$" and text[i + 1 : i + 2] != "{"]
    assert not stray, f"unescaped $ would be interpolated by compose: {stray}"


def test_migrate_waits_for_healthy_databases_and_everything_else_for_migrate():
    migrate_deps = services()["migrate"]["depends_on"]
    assert migrate_deps["postgres"]["condition"] == "service_healthy"
    assert migrate_deps["redis"]["condition"] == "service_healthy"
    for name in ("web", "beat", *worker_services()):
        assert services()[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_all_app_services_share_one_image_built_from_the_repository_root():
    images = {service.get("image") for service in app_services().values()}
    assert len(images) == 1 and None not in images
    for name, service in app_services().items():
        build = service["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, f"{name} builds from {context}"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_web_and_flower_publish_their_ports_and_nothing_else_does():
    def container_ports(service):
        return {str(port).rsplit(":", 1)[-1] for port in service.get("ports", [])}

    assert container_ports(services()["web"]) == {"8000"}
    assert container_ports(services()["flower"]) == {"5555"}
    for name in set(services()) - {"web", "flower"}:
        assert not services()[name].get("ports"), f"{name} publishes ports"


def test_redis_persists_every_write_and_never_evicts_and_postgres_is_15():
    redis = services()["redis"]
    redis_command = " ".join(command(redis))
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert "redis-cli ping" in healthcheck_text(redis)
    assert services()["postgres"]["image"].startswith("postgres:15")
    assert "pg_isready" in healthcheck_text(services()["postgres"])


def test_postgres_redis_and_app_var_keep_their_data_in_named_volumes():
    volumes = set(compose()["volumes"])

    def mounted(service):
        return {str(mount).split(":")[0]: str(mount).split(":")[1] for mount in service.get("volumes", [])}

    assert mounted(services()["postgres"])[next(v for v in volumes if "postgres" in v)] == "/var/lib/postgresql/data"
    assert mounted(services()["redis"])[next(v for v in volumes if "redis" in v)] == "/data"
    for name, service in app_services().items():
        targets = {target for source, target in mounted(service).items() if source in volumes}
        assert "/app/var" in targets, f"{name} does not mount a named volume on /app/var"


def test_secrets_are_required_and_the_environment_is_production():
    env = app_services()["web"]["environment"]
    assert env["SUPPLYCHAIN_ENV"] == "production"
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:?" in services()["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert services()["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert env["SECURE_SSL_REDIRECT"] == "${SECURE_SSL_REDIRECT:-false}"
    for service in app_services().values():
        assert service["environment"]["SECRET_KEY"] == env["SECRET_KEY"]


def test_env_example_sets_every_variable_compose_reads():
    documented = env_example()
    used = {name for name, _, _ in INTERPOLATION.findall(COMPOSE.read_text())}
    assert used, "compose.yaml interpolates nothing?"
    assert not used - set(documented), f"missing from .env.example: {sorted(used - set(documented))}"


def test_compose_environment_configures_django_for_production(tmp_path):
    """The environment compose gives the app (with .env.example's values) loads the production settings."""
    values = env_example()
    environment = {
        name: interpolate(str(value), values) for name, value in app_services()["web"]["environment"].items()
    }
    script = (
        "import json, django; from django.conf import settings; django.setup(); db = settings.DATABASES['default'];"
        "print(json.dumps({'engine': db['ENGINE'], 'host': db['HOST'], 'name': db['NAME'], 'user': db['USER'],"
        "'broker': settings.CELERY_BROKER_URL, 'backend': settings.CELERY_RESULT_BACKEND, 'debug': settings.DEBUG,"
        "'production': settings.PRODUCTION, 'ssl_redirect': settings.SECURE_SSL_REDIRECT,"
        "'allowed_hosts': settings.ALLOWED_HOSTS, 'log_format': settings.LOG_FORMAT}))"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "supplychain.settings",
        "SUPPLYCHAIN_VAR_DIR": str(tmp_path / "var"),
        "STATIC_ROOT": str(tmp_path / "static"),
        **environment,
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == {
        "engine": "django.db.backends.postgresql",
        "host": "postgres",
        "name": "supplychain",
        "user": "supplychain",
        "broker": "redis://redis:6379/0",
        "backend": "django-db",
        "debug": False,
        "production": True,
        "ssl_redirect": False,
        "allowed_hosts": ["localhost"],
        "log_format": "json",
    }


# --- entrypoint.sh ----------------------------------------------------------------------------------------


def test_entrypoint_handles_every_first_argument_compose_and_the_image_use():
    roles = entrypoint_roles()
    assert {"web", "worker", "beat", "flower", "migrate", "manage"} <= roles
    assert "*" in roles, "anything else must run as given"
    used = {command(service)[0] for service in app_services().values()}
    cmd = [rest for keyword, rest in dockerfile_stages()[-1] if keyword == "CMD"]
    used.add(json.loads(cmd[-1])[0])
    assert used <= roles, f"no case for {sorted(used - roles)}"


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["web"],
            {},
            [
                "gunicorn",
                "supplychain.wsgi:application",
                "--bind",
                "0.0.0.0:8000",
                "--workers",
                "3",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
            ],
        ),
        (
            ["web"],
            {"WEB_CONCURRENCY": "7", "WEB_THREADS": "16"},
            [
                "gunicorn",
                "supplychain.wsgi:application",
                "--bind",
                "0.0.0.0:8000",
                "--workers",
                "7",
                "--worker-class",
                "gthread",
                "--threads",
                "16",
            ],
        ),
        (
            ["worker", "events,dispatch"],
            {},
            [
                "celery",
                "-A",
                "supplychain",
                "worker",
                "-Q",
                "events,dispatch",
                "-n",
                "events-dispatch@%h",
                "-c",
                "2",
                "-l",
                "INFO",
            ],
        ),
        (
            ["worker", "ingest"],
            {"WORKER_CONCURRENCY": "5", "LOG_LEVEL": "DEBUG"},
            ["celery", "-A", "supplychain", "worker", "-Q", "ingest", "-n", "ingest@%h", "-c", "5", "-l", "DEBUG"],
        ),
        (["beat"], {}, ["celery", "-A", "supplychain", "beat", "-l", "INFO", "-s", "/app/var/celerybeat-schedule"]),
        (["flower"], {"FLOWER_BASIC_AUTH": "ops:s3cret"}, ["celery", "-A", "supplychain", "flower"]),
        (["migrate"], {}, ["python", "manage.py", "migrate", "--noinput"]),
        (["manage", "createsuperuser", "--noinput"], {}, ["python", "manage.py", "createsuperuser", "--noinput"]),
    ],
)
def test_entrypoint_execs_the_process_each_first_argument_names(tmp_path, args, env, expected):
    argv = argv_of(run_entrypoint(tmp_path, *args, **env))
    assert argv[: len(expected)] == expected
    if args[0] == "web":
        assert argv[argv.index("--access-logfile") + 1] == "-"
    if args[0] == "flower":
        assert "--basic-auth=ops:s3cret" in argv
        assert "--port=5555" in argv


def test_entrypoint_runs_anything_else_as_given(tmp_path):
    result = run_entrypoint(tmp_path, "echo", "hello", "world")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world\n"


def test_worker_stop_signal_becomes_celery_soft_shutdown(tmp_path):
    result = run_entrypoint(tmp_path, "worker", "events")
    assert result.stdout.splitlines()[-1] == "REMAP_SIGTERM=SIGQUIT"


@pytest.mark.parametrize("auth", [None, ""])
def test_flower_refuses_to_start_without_basic_auth_and_says_why(tmp_path, auth):
    result = run_entrypoint(tmp_path, "flower", **({} if auth is None else {"FLOWER_BASIC_AUTH": auth}))
    assert result.returncode != 0
    assert "refusing to start Flower without FLOWER_BASIC_AUTH" in result.stderr
    assert result.stdout == "", "celery flower must not have been started"


def test_worker_refuses_to_start_without_queues(tmp_path):
    result = run_entrypoint(tmp_path, "worker")
    assert result.returncode != 0
    assert "usage: worker" in result.stderr
    assert result.stdout == ""


def test_entrypoint_empties_the_metrics_folder_of_a_previous_run(tmp_path):
    stale = tmp_path / "prometheus" / "counter_7.db"
    stale.parent.mkdir()
    stale.write_text("old")
    argv_of(run_entrypoint(tmp_path, "web"))
    assert not stale.exists()


def test_entrypoint_is_valid_bash():
    result = subprocess.run(
        [shutil.which("bash"), "-n", str(ENTRYPOINT)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") or text.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in text


def test_entrypoint_is_executable():
    assert os.access(ENTRYPOINT, os.X_OK)


def test_gunicorn_target_in_the_entrypoint_is_an_importable_wsgi_callable():
    targets = re.findall(r"gunicorn\s+([\w.]+):(\w+)", ENTRYPOINT.read_text())
    assert targets == [("supplychain.wsgi", "application")]
    module, attribute = targets[0]
    application = getattr(importlib.import_module(module), attribute)
    assert callable(application)


def test_celery_app_named_in_entrypoint_and_healthchecks_resolves():
    names = set(re.findall(r"celery -A (\S+)", ENTRYPOINT.read_text()))
    names |= {
        name for service in services().values() for name in re.findall(r"celery -A (\S+)", healthcheck_text(service))
    }
    assert names == {"supplychain"}
    found = find_app("supplychain", imp=importlib.import_module)
    assert isinstance(found, Celery)
    assert found is importlib.import_module("supplychain.celery").app


def test_every_manage_py_command_the_stack_uses_is_a_real_django_command():
    texts = [ENTRYPOINT.read_text(), README.read_text()]
    texts += [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    for service in app_services().values():
        texts += [" ".join(command(service)), healthcheck_text(service)]
    used = set()
    for text in texts:
        used.update(re.findall(r"\bmanage(?:\.py)?\s+([a-z][a-z0-9_]*)\b", text))
    assert {"migrate", "collectstatic", "createsuperuser"} <= used
    unknown = used - set(get_commands())
    assert not unknown, f"not Django management commands: {sorted(unknown)}"


def test_healthcheck_python_snippets_compile():
    snippets = []
    for service in app_services().values():
        test = (service.get("healthcheck") or {}).get("test") or []
        if "python" in test and "-c" in test:
            snippets.append(test[test.index("-c") + 1])
    for keyword, rest in dockerfile_stages()[-1]:
        if keyword == "HEALTHCHECK":
            exec_form = json.loads(rest[rest.index("CMD") + 3 :].strip())
            snippets.append(exec_form[exec_form.index("-c") + 1])
    assert len(snippets) >= 3
    for snippet in snippets:
        compile(snippet, "<healthcheck>", "exec")


# --- Dockerfile ---------------------------------------------------------------------------------------------


def test_dockerfile_has_a_build_stage_and_a_runtime_stage_on_the_same_slim_base():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    bases = [base_image(stage[0][1]) for stage in stages]
    assert bases[0] == bases[-1], f"build and runtime stages differ: {bases}"
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", bases[-1]), bases[-1]


def test_final_stage_runs_as_the_non_root_user_10001():
    final = dockerfile_stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    created = " ".join(rest for keyword, rest in final if keyword == "RUN")
    assert user == "10001" or re.search(rf"useradd\b.*--uid 10001\b.*\b{re.escape(user)}\b", created)


def test_final_stage_installs_no_compilers_or_build_tools():
    for keyword, rest in dockerfile_stages()[-1]:
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(rest), f"build tools in the runtime stage: {rest}"
    build_runs = " ".join(rest for keyword, rest in dockerfile_stages()[0] if keyword == "RUN")
    assert "build-essential" in build_runs, "the build stage is where compilers belong"


def test_build_stage_installs_the_project_without_editable_mode_or_dev_extras():
    runs = [rest for keyword, rest in dockerfile_stages()[0] if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert any(re.search(r"pip install (--no-deps )?\.(\s|$)", run) for run in installs), installs
    for run in installs:
        assert "-e " not in run and "--editable" not in run and "[dev]" not in run, run
    assert any("/opt/venv" in run and "venv" in run for run in runs)


def test_build_stage_copies_every_package_pyproject_installs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.name
        for path in ROOT.iterdir()
        if (path / "__init__.py").exists() and any(fnmatch(path.name, pattern) for pattern in patterns)
    }
    sources = {
        word.rstrip("/").removeprefix("./")
        for keyword, rest in dockerfile_stages()[0]
        if keyword == "COPY"
        for word in rest.split()[:-1]
        if not word.startswith("--")
    }
    assert packages, "no packages found?"
    assert packages <= sources, f"not copied into the image: {sorted(packages - sources)}"
    assert {"manage.py", "pyproject.toml", "README.md"} <= sources


def test_static_files_are_collected_at_build_time_with_a_throwaway_key():
    build = " ".join(rest for stage in dockerfile_stages()[:-1] for keyword, rest in stage if keyword == "RUN")
    assert "manage.py collectstatic --noinput" in build
    assert "SUPPLYCHAIN_ENV=production" in build and "SECRET_KEY=" in build
    for stage in dockerfile_stages():
        assert "SECRET_KEY" not in stage_env(stage), "a SECRET_KEY in ENV would ship inside the image"
    final = dockerfile_stages()[-1]
    assert any(keyword == "COPY" and "--from=" in rest for keyword, rest in final)


def test_final_stage_sets_the_production_environment():
    env = stage_env(dockerfile_stages()[-1])
    assert env["SUPPLYCHAIN_ENV"] == "production"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["STATIC_ROOT"] == "/app/staticfiles"
    assert env["SUPPLYCHAIN_VAR_DIR"] == "/app/var"
    runs = " ".join(rest for keyword, rest in dockerfile_stages()[-1] if keyword == "RUN")
    assert re.search(r"install -d -o (10001|supplychain)\b.*/app/var", runs), "/app/var must be the app user's"


def test_image_exposes_web_and_flower_and_starts_web_through_the_entrypoint():
    final = dict(dockerfile_stages()[-1])
    assert set(final["EXPOSE"].split()) == {"8000", "5555"}
    assert json.loads(final["ENTRYPOINT"])[0].endswith("entrypoint.sh")
    assert json.loads(final["CMD"]) == ["web"]
    assert "/healthz" in final["HEALTHCHECK"] and "urllib" in final["HEALTHCHECK"]


def test_dockerignore_keeps_local_state_tests_and_secrets_out_of_the_build_context():
    ignored = {
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    }
    assert {".venv", "var", ".git", "tests", "bench", ".env", "docker/.env"} <= ignored
    copied = {
        word
        for keyword, rest in dockerfile_instructions()
        if keyword == "COPY" and "--from" not in rest
        for word in rest.split()[:-1]
    }
    assert not copied & ignored, f"the Dockerfile copies ignored paths: {sorted(copied & ignored)}"
