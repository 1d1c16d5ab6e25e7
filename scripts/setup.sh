#!/usr/bin/env bash
# Installs every Debian 12 package meltrig needs to build, test and run. Idempotent: packages
# already present are left alone, and apt-get update runs only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev clang-format
  libserialport-dev libhdf5-dev hdf5-tools hdf5-filter-plugin libboost-dev libeigen3-dev libspdlog-dev libfmt-dev
  doctest-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libusb-1.0-0-dev
  python3 python3-h5py python3-numpy
  openssh-server openssh-client
  slurm-wlm munge
  libc6-dev-arm64-cross
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present"
fi
