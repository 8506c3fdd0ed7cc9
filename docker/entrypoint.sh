#!/usr/bin/env bash
# Entry point of the supplychain image: the first argument names the process to run.
#
#   web                      gunicorn on 0.0.0.0:8000 (WEB_CONCURRENCY workers, default 3, of WEB_THREADS threads, default 4)
#   worker QUEUE[,QUEUE...]  a Celery worker consuming those queues (WORKER_CONCURRENCY, default 2)
#   beat                     the Celery beat scheduler: run exactly one in the whole deployment
#   flower                   Flower on FLOWER_PORT (default 5555); needs FLOWER_BASIC_AUTH=user:password
#   migrate                  apply database migrations, then exit
#   manage ARGS...           python manage.py ARGS... (for example: manage createsuperuser)
#   anything else            run as given (for example: bash)
set -euo pipefail

# The image's code folder (WORKDIR); SUPPLYCHAIN_APP_DIR only for running this script elsewhere (tests).
cd "${SUPPLYCHAIN_APP_DIR:-/app}"

# Counters of the previous life of this container are not this process's counters (PROMETHEUS_MULTIPROC_DIR
# is per container, under /tmp).
reset_metrics_dir() {
    local dir="${PROMETHEUS_MULTIPROC_DIR:-}"
    if [[ -n "$dir" ]]; then
        mkdir -p "$dir"
        find "$dir" -mindepth 1 -delete
    fi
}

role="${1:-web}"
if [[ $# -gt 0 ]]; then
    shift
fi

case "$role" in
    web)
        # The control socket (gunicorn 27) defaults to $HOME/.gunicorn, and the app user's home is read-only.
        # Threaded workers keep client connections alive between requests and serve the live stock stream
        # (Server-Sent Events) on a thread instead of tying up a whole worker per watcher.
        reset_metrics_dir
        exec gunicorn supplychain.wsgi:application \
            --bind 0.0.0.0:8000 \
            --workers "${WEB_CONCURRENCY:-3}" \
            --worker-class gthread \
            --threads "${WEB_THREADS:-4}" \
            --worker-tmp-dir /dev/shm \
            --control-socket /tmp/gunicorn.ctl \
            --access-logfile - \
            "$@"
        ;;
    worker)
        if [[ $# -lt 1 || -z "$1" ]]; then
            echo "entrypoint: usage: worker QUEUE[,QUEUE...]  (queues: events, dispatch, ingest, forecast, default)" >&2
            exit 64
        fi
        QUEUES="$1"
        shift
        reset_metrics_dir
        # `docker stop` sends SIGTERM. As SIGQUIT it starts Celery's soft shutdown: running tasks get
        # CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT seconds, then they are cancelled and, acknowledged late,
        # go back to the queue, instead of being killed unacknowledged when the stop timeout runs out.
        export REMAP_SIGTERM="${REMAP_SIGTERM:-SIGQUIT}"
        exec celery -A supplychain worker \
            -Q "$QUEUES" \
            -n "${QUEUES//,/-}@%h" \
            -c "${WORKER_CONCURRENCY:-2}" \
            -l "${LOG_LEVEL:-INFO}" \
            "$@"
        ;;
    beat)
        reset_metrics_dir
        exec celery -A supplychain beat -l INFO -s /app/var/celerybeat-schedule "$@"
        ;;
    flower)
        if [[ -z "${FLOWER_BASIC_AUTH:-}" ]]; then
            echo "entrypoint: refusing to start Flower without FLOWER_BASIC_AUTH (set it to user:password)." >&2
            exit 64
        fi
        reset_metrics_dir
        exec celery -A supplychain flower \
            --address=0.0.0.0 \
            --port="${FLOWER_PORT:-5555}" \
            --basic-auth="$FLOWER_BASIC_AUTH" \
            "$@"
        ;;
    migrate)
        exec python manage.py migrate --noinput "$@"
        ;;
    manage)
        exec python manage.py "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
