#!/usr/bin/env bash
# Runs the suite with the services it needs; pytest's "no tests ran" (exit 5) counts as failure.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$HOME/.cache/imgrag/venv}
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# Elasticsearch came up in ~13 s on a quiet 2-core box; on one at load 20 the script's default wait
# (120 s) is too short, and the CI failed before a test ran. Waiting longer costs nothing on a fast box.
export IMGRAG_ES_WAIT=${IMGRAG_ES_WAIT:-600}

started_es=0
if [ -z "${IMGRAG_TEST_ES_URL:-}" ] && [ -x tests/elasticsearch.sh ]; then
  if IMGRAG_TEST_ES_URL=$(tests/elasticsearch.sh start); then
    export IMGRAG_TEST_ES_URL
    started_es=1
  else
    echo "could not start Elasticsearch for the tests" >&2
    exit 1
  fi
fi

python -m pytest "$@"
rc=$?
[ "$started_es" = 1 ] && tests/elasticsearch.sh stop
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
