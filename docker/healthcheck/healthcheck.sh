#!/bin/sh
# Container health: the plane's /health/ready on its port (PLANE_PORT, default 8000).
set -eu
exec curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:${PLANE_PORT:-8000}/health/ready"
