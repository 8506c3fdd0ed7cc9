"""Settings come from the environment: the embedded default when unset, a hardened production profile."""

import json
import os
import subprocess
import sys
import textwrap

from tests.processes import ROOT

PRINT_SETTINGS = textwrap.dedent(
    """
    import json, django
    from django.conf import settings
    django.setup()
    db = settings.DATABASES["default"]
    print(json.dumps({
        "engine": db["ENGINE"], "options": db.get("OPTIONS", {}), "broker": settings.CELERY_BROKER_URL,
        "embedded": settings.USES_EMBEDDED_BROKER, "backend": settings.CELERY_RESULT_BACKEND,
        "debug": settings.DEBUG, "acks_late": settings.CELERY_TASK_ACKS_LATE,
        "reject_on_worker_lost": settings.CELERY_TASK_REJECT_ON_WORKER_LOST,
        "serializer": settings.CELERY_TASK_SERIALIZER, "accept": settings.CELERY_ACCEPT_CONTENT,
    }))
    """
)


def clean_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"}}
    env.update(SUPPLYCHAIN_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="supplychain.settings", **extra)
    return env


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_unset_environment_gives_the_embedded_default(tmp_path):
    result = run_python(PRINT_SETTINGS, clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["engine"] == "django.db.backends.sqlite3"
    assert found["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in found["options"]["init_command"]
    assert found["broker"].startswith("redis+socket://") and found["embedded"] is True
    assert found["backend"] == "django-db"
    assert found["acks_late"] and found["reject_on_worker_lost"]
    assert found["serializer"] == "json" and found["accept"] == ["json"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_database_and_broker_urls_come_from_the_environment(tmp_path):
    env = clean_env(
        tmp_path, DATABASE_URL="postgres://u:p@db.internal:5432/sc", CELERY_BROKER_URL="redis://broker:6379/2"
    )
    found = json.loads(run_python(PRINT_SETTINGS, env).stdout)
    assert found["engine"] == "django.db.backends.postgresql"
    assert found["broker"] == "redis://broker:6379/2" and found["embedded"] is False


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = run_python(PRINT_SETTINGS, clean_env(tmp_path, SUPPLYCHAIN_ENV="production"))
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_settings_pass_check_deploy(tmp_path):
    env = clean_env(
        tmp_path,
        SUPPLYCHAIN_ENV="production",
        SECRET_KEY="x7Kq2Lw9Zp4Rt8Vb1Nm6Yc3Hd5Jf0Gs-Ua_Ei!Oo@Pl#Kk$Jj%Hh^Gg&Ff*Dd(Ss)Aa",
        ALLOWED_HOSTS="supplychain.example.com",
        DATABASE_URL="postgres://u:p@127.0.0.1:5432/sc",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_logs_are_json_lines_with_the_correlation_id(tmp_path):
    code = textwrap.dedent(
        """
        import django, logging
        django.setup()
        from django_guid import set_guid
        set_guid("corr-abc")
        logging.getLogger("supplychain.test").warning("stock low")
        """
    )
    env = clean_env(tmp_path, SUPPLYCHAIN_ENV="production", SECRET_KEY="k" * 60, ALLOWED_HOSTS="x")
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "stock low"
    assert line["correlation_id"] == "corr-abc"
    assert line["level"] == "WARNING"


SECURITY_SETTINGS = textwrap.dedent(
    """
    import json, django
    from django.conf import settings
    django.setup()
    names = ["SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS",
             "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "CSRF_TRUSTED_ORIGINS"]
    print(json.dumps({name: getattr(settings, name) for name in names}))
    """
)


def test_production_is_https_only_by_default_and_a_plain_http_trial_can_turn_it_off(tmp_path):
    production = {"SUPPLYCHAIN_ENV": "production", "SECRET_KEY": "k" * 60, "ALLOWED_HOSTS": "x"}
    hardened = json.loads(run_python(SECURITY_SETTINGS, clean_env(tmp_path, **production)).stdout)
    assert hardened["SECURE_SSL_REDIRECT"] and hardened["SESSION_COOKIE_SECURE"] and hardened["CSRF_COOKIE_SECURE"]
    assert hardened["SECURE_HSTS_SECONDS"] == 31536000
    trial = {  # what the README's configuration table says to set for a trial over plain HTTP
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "CSRF_TRUSTED_ORIGINS": "http://x:8000",
    }
    found = json.loads(run_python(SECURITY_SETTINGS, clean_env(tmp_path, **production, **trial)).stdout)
    assert found == {
        **hardened,
        **{name: False for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")},
        "SECURE_HSTS_SECONDS": 0,
        "CSRF_TRUSTED_ORIGINS": ["http://x:8000"],
    }
