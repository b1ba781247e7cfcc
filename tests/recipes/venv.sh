#!/usr/bin/env bash
# The agent-framework recipes' own virtual environment: LangChain's langchain-mcp-adapters (with LangGraph) and the
# OpenAI Agents SDK, each with its own MCP client on the 1.x SDK (imgrag's server runs the 2.x SDK),
# so they can never go into imgrag's venv. Idempotent: re-installs only when the pins below change.
#
#   bash tests/recipes/venv.sh          # prints the venv's python on the last line
#
# RECIPES_VENV overrides the location (default ~/.cache/imgrag/recipes-venv). IMGRAG_TEST_RECIPES=skip
# installs nothing and prints "skip" (tests/e2e/test_recipes.py then skips, saying so).
set -euo pipefail

if [ "${IMGRAG_TEST_RECIPES:-}" = skip ]; then
  echo skip
  exit 0
fi

PINS=(
  "langchain-mcp-adapters==0.3.2"
  "langgraph==1.2.24"
  "openai-agents==0.24.0"
  "mcp>=1.24,<2"
)
VENV=${RECIPES_VENV:-$HOME/.cache/imgrag/recipes-venv}
PY=${PYTHON:-python3}
stamp="$VENV/.pins-$(printf '%s\n' "${PINS[@]}" | sha1sum | cut -c1-12)"

if [ ! -f "$stamp" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q -U pip >&2
  fi
  "$VENV/bin/pip" install -q "${PINS[@]}" >&2
  rm -f "$VENV"/.pins-*
  touch "$stamp"
fi
echo "$VENV/bin/python"
