#!/usr/bin/env bash
# The test command: sets up what is missing (scripts/bootstrap.sh), then runs lint, types and
# the whole test suite against the running Mosquitto/PostgreSQL, or throwaway ones it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check shared services tests benchmarks
.venv/bin/ruff format --check shared services tests benchmarks
.venv/bin/mypy
for compose in docker-compose.yml compose.server.yml compose.sensor.yml; do
  docker-compose -f "$compose" --env-file .env.example config -q
done
# Two worker processes (pytest-xdist): every test has its own topic prefix, database and ports.
exec .venv/bin/python -m pytest -n "${SOUNDSCAPE_TEST_WORKERS:-2}" "$@"
