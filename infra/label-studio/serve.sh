#!/usr/bin/env bash
# Start Label Studio for docflow's review queue, on this machine, offline: its data under .docflow/label-studio,
# a reviewer account, docflow's local files (pages, the inbox) served to tasks, and a personal access token
# printed for LABEL_STUDIO_API_KEY. Ctrl-C stops it.
#   LABEL_STUDIO_PORT=8080 LABEL_STUDIO_USERNAME=you@example.com LABEL_STUDIO_PASSWORD=... infra/label-studio/serve.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
port="${LABEL_STUDIO_PORT:-8080}"
export LABEL_STUDIO_BASE_DATA_DIR="${LABEL_STUDIO_BASE_DATA_DIR:-$PWD/.docflow/label-studio}"
export LABEL_STUDIO_USERNAME="${LABEL_STUDIO_USERNAME:-reviewer@example.com}"
export LABEL_STUDIO_PASSWORD="${LABEL_STUDIO_PASSWORD:-docflow-review}"
export LOCAL_FILES_SERVING_ENABLED=true
export LOCAL_FILES_DOCUMENT_ROOT="${LOCAL_FILES_DOCUMENT_ROOT:-$PWD}"
export LATEST_VERSION_CHECK=false
mkdir -p "$LABEL_STUDIO_BASE_DATA_DIR"
.venv-label-studio/bin/label-studio start --no-browser --host 127.0.0.1 --port "$port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
echo "waiting for Label Studio on http://127.0.0.1:$port (a first start migrates its database: minutes)..."
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
    kill -0 $server 2>/dev/null || { echo "Label Studio exited" >&2; exit 1; }
    sleep 2
done
token=$(.venv-label-studio/bin/python infra/label-studio/personal_token.py "http://127.0.0.1:$port" "$LABEL_STUDIO_USERNAME" "$LABEL_STUDIO_PASSWORD")
cat <<MSG

Label Studio is up: http://127.0.0.1:$port (log in as $LABEL_STUDIO_USERNAME). For docflow, in another shell:
  export LABEL_STUDIO_URL=http://127.0.0.1:$port
  export LABEL_STUDIO_API_KEY=$token
  export DOCFLOW_REVIEW_LOCAL_FILES_ROOT=$LOCAL_FILES_DOCUMENT_ROOT
  .venv/bin/docflow review push --stage extraction --create "docflow review"
MSG
wait $server
