#!/usr/bin/env bash
# deps.sh installs what inferq's tests need on a Debian machine (as root), or
# says exactly what to install. Tests never skip a missing dependency: they fail.
set -euo pipefail

missing=()
have_redis() { command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; }
have_redis || missing+=(redis-server)
# The README test runs the README's curl commands with bash.
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The web console's browser tests drive Debian's Chromium (headless) with chromedp.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The model runner's tests use Debian's PyTorch (CPU) and protobuf for /usr/bin/python3.
py="${INFERQ_PYTHON:-/usr/bin/python3}"
"$py" -c 'import torch, google.protobuf' >/dev/null 2>&1 || missing+=(python3 python3-torch python3-protobuf)
# The Python client's tests (clients/python) round-trip numpy arrays.
"$py" -c 'import numpy' >/dev/null 2>&1 || missing+=(python3-numpy)

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	exit 0
fi
echo "deps: missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
exit 1
