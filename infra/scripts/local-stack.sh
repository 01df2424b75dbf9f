#!/usr/bin/env bash
# Start a local stack for trying docflow against real services: PostgreSQL and SeaweedFS (S3), optionally the
# Prefect server. Everything lives under one state dir and listens on 127.0.0.1 only.
#
#   infra/scripts/local-stack.sh up [--prefect]   start, create the bucket, print the variables to export
#   infra/scripts/local-stack.sh down             stop everything
#   infra/scripts/local-stack.sh env              print the variables again
#
# Ports: Postgres $PG_PORT (55432), S3 $S3_PORT (8333), Prefect $PREFECT_PORT (4200). State: $STACK_DIR.
set -euo pipefail

STACK_DIR=${STACK_DIR:-$PWD/.docflow/stack}
PG_PORT=${PG_PORT:-55432}
S3_PORT=${S3_PORT:-8333}
PREFECT_PORT=${PREFECT_PORT:-4200}
BUCKET=${BUCKET:-docflow-inbox}
ACCESS_KEY=${ACCESS_KEY:-docflow}
SECRET_KEY=${SECRET_KEY:-docflow-secret}
VENV_BIN=${VENV_BIN:-$PWD/.venv/bin}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

print_env() {
    cat <<ENV
export DOCFLOW_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres
export DOCFLOW_SOURCE=s3://$BUCKET/
export DOCFLOW_DERIVED_STORE=s3://$BUCKET-derived/
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1
ENV
    [[ -f "$STACK_DIR/prefect.pid" ]] && echo "export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api"
    return 0
}

up() {
    mkdir -p "$STACK_DIR"
    local bin; bin=$(pg_bin)
    [[ -n "$bin" ]] || { echo "PostgreSQL server not installed (apt-get install postgresql)" >&2; exit 1; }
    if [[ ! -d "$STACK_DIR/pg/data" ]]; then
        mkdir -p "$STACK_DIR/pg"
        [[ $(id -u) -eq 0 ]] && chown postgres: "$STACK_DIR/pg"
        as_pg "$bin/initdb" -D "$STACK_DIR/pg/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
    fi
    as_pg "$bin/pg_ctl" -D "$STACK_DIR/pg/data" -l "$STACK_DIR/pg/log" -w start \
        -o "-p $PG_PORT -k $STACK_DIR/pg -c listen_addresses=127.0.0.1" >/dev/null
    echo "postgres on 127.0.0.1:$PG_PORT"

    mkdir -p "$STACK_DIR/weed"
    AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY setsid "$VENV_BIN/weed" mini \
        -dir="$STACK_DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -webdav=false \
        -admin.ui=false -s3.port="$S3_PORT" -s3.port.iceberg=0 -s3.port.lance=0 \
        >"$STACK_DIR/weed.log" 2>&1 &
    echo $! >"$STACK_DIR/weed.pid"
    for _ in $(seq 1 100); do
        if AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY "$VENV_BIN/python" - "$S3_PORT" "$BUCKET" \
            >/dev/null 2>&1 <<'PY'
import sys, boto3
from botocore.config import Config
c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                 config=Config(s3={"addressing_style": "path"}))
have = {b["Name"] for b in c.list_buckets().get("Buckets", [])}
for name in (sys.argv[2], sys.argv[2] + "-derived"):
    if name not in have:
        c.create_bucket(Bucket=name)
PY
        then break; fi
        sleep 0.3
    done
    echo "SeaweedFS S3 on 127.0.0.1:$S3_PORT, buckets $BUCKET and $BUCKET-derived"

    if [[ "${1:-}" == "--prefect" ]]; then
        PREFECT_SERVER_ANALYTICS_ENABLED=false setsid "$VENV_BIN/prefect" server start --host 127.0.0.1 \
            --port "$PREFECT_PORT" >"$STACK_DIR/prefect.log" 2>&1 &
        echo $! >"$STACK_DIR/prefect.pid"
        for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PREFECT_PORT/api/health" >/dev/null && break; sleep 0.5; done
        echo "Prefect UI on http://127.0.0.1:$PREFECT_PORT"
    fi
    echo; echo "# export these in your shell:"; print_env
}

down() {
    for svc in prefect weed; do
        if [[ -f "$STACK_DIR/$svc.pid" ]]; then
            kill -TERM -- "-$(cat "$STACK_DIR/$svc.pid")" 2>/dev/null || true
            rm -f "$STACK_DIR/$svc.pid"
        fi
    done
    local bin; bin=$(pg_bin)
    [[ -d "$STACK_DIR/pg/data" ]] && as_pg "$bin/pg_ctl" -D "$STACK_DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    echo "stopped"
}

case "${1:-}" in
    up) shift; up "$@" ;;
    down) down ;;
    env) print_env ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
esac
