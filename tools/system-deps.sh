#!/usr/bin/env bash
# What the tests need from the system beyond .venv: Debian's Chromium (the report is opened in a
# real headless browser) and Fashion-MNIST's official files (the real-image tests). Installed with
# apt where it works and we are root; otherwise one line says exactly what to install.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || need+=(dataset-fashion-mnist)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "make test needs these system packages: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
