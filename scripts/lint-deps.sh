#!/usr/bin/env bash
# lint-deps.sh installs what `make lint` needs beyond Go on a Debian machine
# (as root), or says exactly what to install: black, flake8 and mypy for the
# model runner, run by the python that runs the runner's tests, and that
# python's torch, protobuf and numpy, whose types mypy reads (numpy for the
# Python client in clients/python). `make test` needs none
# of the linters (see deps.sh).
set -euo pipefail

py="${INFERQ_PYTHON:-/usr/bin/python3}"
missing=()
"$py" -m black --version >/dev/null 2>&1 || missing+=(black)
"$py" -m flake8 --version >/dev/null 2>&1 || missing+=(flake8)
"$py" -m mypy --version >/dev/null 2>&1 || missing+=(mypy)
"$py" -c 'import torch, google.protobuf' >/dev/null 2>&1 || missing+=(python3-torch python3-protobuf)
"$py" -c 'import numpy' >/dev/null 2>&1 || missing+=(python3-numpy)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$py" = /usr/bin/python3 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "lint-deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	exit 0
fi
if [ "$py" = /usr/bin/python3 ]; then
	echo "lint-deps: missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
else
	echo "lint-deps: $py lacks ${missing[*]}; install them for it, or run make lint with" \
		"INFERQ_PYTHON=/usr/bin/python3 after: sudo apt-get install -y ${missing[*]}" >&2
fi
exit 1
