#!/bin/sh
# Container health: the plane's /health/ready on its port. Compose sets PLANE_PORT per service;
# 8000 is the Data Plane's default.
set -eu
exec curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:${PLANE_PORT:-8000}/health/ready"
