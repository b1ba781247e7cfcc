#!/usr/bin/env bash
# Virtual environments of their own for the agent-framework recipes (docs/agent-frameworks.md), which
# must never go into imgrag's venv:
#   mcp1 (default)  LangChain's langchain-mcp-adapters with LangGraph, and the OpenAI Agents SDK: their
#                   MCP clients pin the 1.x SDK (imgrag's server runs on 2.x)  → ~/.cache/imgrag/recipes-venv
#   mcp2            Pydantic AI, whose MCP client (FastMCP) is on the 2.x SDK  → ~/.cache/imgrag/recipes-venv-mcp2
# Idempotent: installs only when the pins below change.
#
#   bash tests/recipes/venv.sh [mcp1|mcp2]      # prints the venv's python on the last line
#
# IMGRAG_TEST_RECIPES=skip installs nothing and prints "skip" (tests/e2e/test_recipes.py then skips, saying so).
set -euo pipefail

if [ "${IMGRAG_TEST_RECIPES:-}" = skip ]; then
  echo skip
  exit 0
fi

case "${1:-mcp1}" in
  mcp1)
    VENV=$HOME/.cache/imgrag/recipes-venv
    PINS=("langchain-mcp-adapters==0.3.2" "langgraph==1.2.24" "openai-agents==0.24.0" "mcp>=1.24,<2") ;;
  mcp2)
    VENV=$HOME/.cache/imgrag/recipes-venv-mcp2
    PINS=("pydantic-ai-slim[mcp]==2.68.0") ;;
  *) echo "venv.sh: unknown set '$1' (mcp1 or mcp2)" >&2; exit 2 ;;
esac
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
