# shellcheck shell=bash
# Shared steps of scripts/quickstart and scripts/test: install what is missing,
# create the virtualenv, start the libvirt daemons. Sourced, never run.
#
# Every step checks before it acts, so running a script twice costs seconds and
# changes nothing: apt-get runs only when a package is missing, pip only when
# pyproject.toml (or the extras asked for) changed since the last install, and a
# daemon is started only when libvirt does not answer. Daemons a script starts
# are remembered in IB_STARTED_PIDS so scripts/test can stop exactly those.

IB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IB_VENV=${IB_VENV:-$IB_ROOT/.venv}
IB_LIBVIRT_URI=${INFINIBAY_LIBVIRT_URI:-qemu:///system}
IB_STARTED_PIDS=()

# Runtime packages: libvirt with QEMU/KVM, UEFI firmware, dnsmasq for NAT
# networks, ebtables and iptables for the nwfilters of firewall policies (Debian's
# libvirt 9.0 instantiates them with both), and what building libvirt-python (an
# sdist on PyPI) needs. libvirtd runs the tools when it instantiates a filter, so
# installing them under a running daemon needs no restart.
# shellcheck disable=SC2034  # read by the scripts that source this file
IB_APT_RUNTIME=(
  libvirt-daemon-system qemu-system-x86 qemu-utils ovmf dnsmasq-base ebtables iptables
  libvirt-dev pkg-config gcc python3-dev python3-venv novnc
)

if [[ -t 1 ]]; then
  IB_BOLD=$'\033[1m' IB_RED=$'\033[31m' IB_RESET=$'\033[0m'
else
  IB_BOLD='' IB_RED='' IB_RESET=''
fi

ib::section() {
  printf '\n%s==> %s%s\n' "$IB_BOLD" "$*" "$IB_RESET"
}

ib::info() {
  printf '    %s\n' "$*"
}

ib::die() {
  printf '%serror:%s %s\n' "$IB_RED" "$IB_RESET" "$*" >&2
  exit 1
}

ib::need_root() {
  [[ $(id -u) -eq 0 ]] || ib::die "$1 needs root (it installs packages and starts libvirtd); run it as root"
}

ib::systemd_is_init() {
  [[ -d /run/systemd/system ]] && [[ $(cat /proc/1/comm 2>/dev/null) == systemd ]]
}

ib::missing_packages() {
  local pkg
  for pkg in "$@"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null) != installed ]]; then
      printf '%s\n' "$pkg"
    fi
  done
}

# Install the Debian packages that are not installed yet. Without systemd,
# package scripts would start their services through invoke-rc.d; a temporary
# policy-rc.d forbids that, so the only daemons running afterwards are the ones
# these scripts start (and stop) themselves.
ib::apt_install() {
  local missing policy=/usr/sbin/policy-rc.d own_policy=0
  mapfile -t missing < <(ib::missing_packages "$@")
  if [[ ${#missing[@]} -eq 0 ]]; then
    ib::info "packages present: $*"
    return 0
  fi
  ib::need_root "installing ${missing[*]}"
  ib::info "installing: ${missing[*]}"
  if ! ib::systemd_is_init && [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    own_policy=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  } || rc=$?
  if [[ $own_policy -eq 1 ]]; then
    rm -f "$policy"
  fi
  [[ $rc -eq 0 ]] || ib::die "apt-get failed installing ${missing[*]}"
}

# Create .venv and install the project into it (editable). $1 is the extras
# spec, e.g. "[dev]" or "".
ib::venv() {
  local extras=${1:-} python=${PYTHON:-python3} stamp want
  if ! "$IB_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    command -v "$python" >/dev/null || ib::die "$python not found; install python3 (3.11 or newer)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      ib::die "$python is $("$python" --version 2>&1); the project needs Python 3.11 or newer"
    ib::info "creating $IB_VENV with $("$python" --version 2>&1)"
    rm -rf "$IB_VENV"
    "$python" -m venv "$IB_VENV"
  fi
  stamp="$IB_VENV/.infinibay-install"
  want="$(sha256sum "$IB_ROOT/pyproject.toml" | cut -d' ' -f1) extras=$extras"
  # An install with more extras also satisfies a request for fewer.
  if [[ -f $stamp ]] && { [[ $(cat "$stamp") == "$want" ]] ||
    [[ -z $extras && $(cat "$stamp") == "${want%extras=*}extras=[dev]" ]]; } &&
    [[ -x $IB_VENV/bin/infinibay ]]; then
    ib::info "$IB_VENV is up to date"
  else
    ib::info "installing the project into $IB_VENV (pip install -e '.$extras')"
    "$IB_VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$IB_ROOT$extras"
    printf '%s\n' "$want" >"$stamp"
  fi
  # An editable install leaves the project's own modules uncompiled, and where
  # PYTHONDONTWRITEBYTECODE is set nothing ever writes their bytecode: every
  # `infinibay` process then compiled ~100 modules again (0.7 s of CPU each,
  # and the tests start hundreds). Compiling them once here is quick when done.
  "$IB_VENV/bin/python" -m compileall -q "$IB_ROOT/reconciler" >/dev/null
}

ib::libvirt_answers() {
  virsh -c "$IB_LIBVIRT_URI" version >/dev/null 2>&1
}

# Start one daemon with -d unless a process of that name runs already; record
# its pid (from the pidfile the daemon writes) when this script started it.
ib::start_daemon() {
  local name=$1 pidfile=/run/$1.pid
  if pgrep -x "$name" >/dev/null; then
    ib::info "$name is running"
    return 0
  fi
  ib::info "starting $name"
  "$name" -d
  local i
  for ((i = 0; i < 50; i++)); do
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      IB_STARTED_PIDS+=("$(cat "$pidfile")")
      return 0
    fi
    sleep 0.1
  done
  ib::die "$name -d did not start (no live pid in $pidfile)"
}

# Make sure libvirt answers on $IB_LIBVIRT_URI: systemctl where systemd is
# init, otherwise the daemons run directly.
ib::start_libvirt() {
  if ib::libvirt_answers; then
    ib::info "libvirt answers on $IB_LIBVIRT_URI"
    return 0
  fi
  ib::need_root "starting libvirtd"
  if ib::systemd_is_init; then
    ib::info "starting libvirtd with systemctl"
    systemctl start virtlogd.socket libvirtd.socket libvirtd.service
  else
    ib::start_daemon virtlogd
    ib::start_daemon libvirtd
  fi
  local i
  for ((i = 0; i < 60; i++)); do
    if ib::libvirt_answers; then
      ib::info "libvirt answers on $IB_LIBVIRT_URI: $(virsh -c "$IB_LIBVIRT_URI" version --daemon 2>/dev/null | sed -n 's/^Running against daemon: //p')"
      return 0
    fi
    sleep 0.5
  done
  ib::die "libvirt does not answer on $IB_LIBVIRT_URI after 30 s; see /var/log/libvirt/ or run 'libvirtd' in the foreground"
}

# Stop the daemons this script started, newest first, and wait for them.
ib::stop_started() {
  local i pid
  for ((i = ${#IB_STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${IB_STARTED_PIDS[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in {1..100}; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  done
  IB_STARTED_PIDS=()
}
