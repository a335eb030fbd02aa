#!/usr/bin/env bash
# shellcheck shell=bash
# A second, independent hypervisor on this machine, for the multi-host tests: a
# private virtlogd and libvirtd in their own mount, network and UTS namespaces.
#
# Sourced by scripts/test (ib::hv2_start, ib::hv2_stop) or run by hand:
#
#   eval "$(scripts/lib/second-libvirtd.sh start)"   # exports the root and the URI
#   scripts/lib/second-libvirtd.sh stop "$IB_HV2_ROOT"
#   scripts/lib/second-libvirtd.sh halt ROOT    # libvirtd alone stops; resume ROOT starts it
#
# Everything the daemons own lives under one temporary root, bind-mounted over the
# system paths inside the mount namespace only: ROOT/run over /run (so its
# sockets, pid files and /run/libvirt are its own), ROOT/etc over /etc/libvirt (the
# host's *.conf files, the packaged nwfilters, and no domain, network, pool or
# secret), and ROOT/var/{lib,log,cache}/libvirt over their system paths. The host
# reaches it through its socket, which in the host's view is simply a file under
# ROOT: qemu+unix:///system?socket=ROOT/run/libvirt/libvirt-sock. Its own network
# namespace holds its bridges, dnsmasq and its guests' VNC listeners, so nothing of
# it is visible on, or crosses to, the host's network; its own UTS namespace and
# host_uuid make it a different host to libvirt (migration refuses "itself").
# Storage outside those paths (e.g. the tests' pools under /var/lib/infinibay-test)
# is the host's, shared by both daemons, as shared storage would be.
#
# The namespaces live as long as a process in them: the daemons start with -d
# inside `unshare`, which returns once they run. Stopping destroys the running
# guests through libvirt, then ends exactly the processes whose mount table holds
# ROOT/run on /run and whose network namespace is the one recorded at start
# (libvirtd first, then dnsmasq, virtlogd and any guest left), after which the
# namespaces and their mounts are gone and ROOT is removed.

IB_HV2_MARKER=.infinibay-second-libvirtd
IB_HV2_SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
# Set by ib::hv2_start: the URI that answers, and the root only when this shell
# started the daemon (not when it found it running), so a caller stops only its own.
IB_HV2_URI=''
IB_HV2_STARTED=''

ib::hv2_uri() {
  printf 'qemu+unix:///system?socket=%s/run/libvirt/libvirt-sock' "$1"
}

ib::hv2_answers() {
  virsh -c "$(ib::hv2_uri "$1")" version >/dev/null 2>&1
}

# The pids of the processes in ROOT's namespaces (none once they are gone).
ib::hv2_pids() {
  local root=$1 netns proc
  [[ -s $root/netns ]] || return 0
  netns=$(cat "$root/netns")
  for proc in /proc/[0-9]*; do
    [[ $(readlink "$proc/ns/net" 2>/dev/null) == "$netns" ]] || continue
    # Field 4 of mountinfo is the mount's root in its filesystem, field 5 where it
    # is mounted: a bind of ROOT/run on /run is this instance's signature.
    awk -v src="$root/run" '$4 == src && $5 == "/run" { found = 1 } END { exit !found }' \
      "$proc/mountinfo" 2>/dev/null || continue
    printf '%s\n' "${proc#/proc/}"
  done
}

# Build ROOT's tree: private state directories and a copy of the host's daemon
# configuration without any object (domains, networks, pools, secrets, autostart).
ib::hv2_prepare() {
  local root=$1 conf
  mkdir -p "$root/run" "$root/etc/qemu" "$root/etc/storage" "$root/etc/secrets" \
    "$root/etc/nwfilter" "$root/var/lib/libvirt" "$root/var/log/libvirt" "$root/var/cache/libvirt"
  chmod 0755 "$root/run" "$root/etc"
  for conf in /etc/libvirt/*.conf; do
    cp -p "$conf" "$root/etc/"
  done
  # The nwfilters libvirt ships (the host's directory also holds filters other
  # installations defined).
  cp -p /usr/share/libvirt/nwfilter/*.xml "$root/etc/nwfilter/"
  # The host's QEMU capabilities cache, so the daemon need not probe every QEMU
  # binary again (8 s on 2 cores). libvirt re-probes what it deems stale, and its
  # check includes CPUID bits of the CPU the probe ran on: some starts still probe.
  if [[ -d /var/cache/libvirt/qemu/capabilities ]]; then
    mkdir -p "$root/var/cache/libvirt/qemu"
    cp -a /var/cache/libvirt/qemu/capabilities "$root/var/cache/libvirt/qemu/"
  fi
  {
    printf '\n# Added for the second test hypervisor (scripts/lib/second-libvirtd.sh).\n'
    printf 'host_uuid = "%s"\n' "$(cat /proc/sys/kernel/random/uuid)"
    printf 'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
  } >>"$root/etc/libvirtd.conf"
  printf '\nlog_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n' >>"$root/etc/virtlogd.conf"
  # Its own hostname resolves without DNS, which its network namespace cannot reach.
  { cat /etc/hosts; printf '127.0.1.1\t%s\n' "$2"; } >"$root/hosts"
}

# Run inside the new namespaces by ib::hv2_start: mount the private tree, bring
# up loopback, start virtlogd and libvirtd daemonised.
ib::hv2_inner() {
  local root=$1 hostname=$2 path
  hostname "$hostname"
  mount --bind "$root/etc" /etc/libvirt
  for path in var/lib/libvirt var/log/libvirt var/cache/libvirt; do
    mount --bind "$root/$path" "/$path"
  done
  mount --bind "$root/hosts" /etc/hosts
  # /run last: ROOT may not live under it, and nothing is read from the host's /run.
  mount --bind "$root/run" /run
  ip link set lo up
  readlink /proc/self/ns/net >"$root/netns"
  virtlogd -d
  libvirtd -d
}

# Start the second hypervisor under $1 (default: $IB_HV2_ROOT, else a new
# directory under /tmp); set IB_HV2_ROOT, IB_HV2_URI and IB_HV2_STARTED. A root
# whose daemon answers is left as it is, so starting twice is harmless.
ib::hv2_start() {
  local root=${1:-${IB_HV2_ROOT:-}} hostname i
  if [[ -n $root ]] && ib::hv2_answers "$root"; then
    IB_HV2_ROOT=$root IB_HV2_URI=$(ib::hv2_uri "$root")
    printf '    second libvirtd answers on %s\n' "$IB_HV2_URI"
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || { printf 'the second libvirtd needs root (mount and network namespaces)\n' >&2; return 1; }
  if [[ -z $root ]]; then
    root=$(mktemp -d /tmp/infinibay-hv2.XXXXXX) || return 1
  else
    mkdir -p "$root" && root=$(cd "$root" && pwd) || return 1
  fi
  case $root/ in
    /run/* | /etc/libvirt/* | /var/lib/libvirt/* | /var/log/libvirt/* | /var/cache/libvirt/*)
      printf 'second libvirtd: %s is under a directory it replaces; choose another root\n' "$root" >&2
      return 1
      ;;
    *[[:space:]]*) # /proc/PID/mountinfo escapes them, and ib::hv2_pids compares paths
      printf 'second libvirtd: the root %q has white space; choose another\n' "$root" >&2
      return 1
      ;;
  esac
  if [[ -e $root/$IB_HV2_MARKER ]]; then
    ib::hv2_stop "$root" # a stale instance: its daemon no longer answers
    mkdir -p "$root"
  elif [[ -n $(ls -A "$root") ]]; then
    printf 'second libvirtd: %s is not empty and not a second libvirtd root\n' "$root" >&2
    return 1
  fi
  touch "$root/$IB_HV2_MARKER"
  hostname="$(hostname -s)-hv2"
  ib::hv2_prepare "$root" "$hostname"
  if ! unshare --mount --net --uts --propagation private -- \
    bash -ec "source '$IB_HV2_SCRIPT'; ib::hv2_inner \"\$@\"" ib::hv2_inner "$root" "$hostname" \
    >"$root/start.log" 2>&1; then
    printf 'second libvirtd: could not start in new namespaces (unshare --mount --net --uts):\n' >&2
    sed 's/^/    /' "$root/start.log" >&2
    ib::hv2_stop "$root"
    return 1
  fi
  for ((i = 0; i < 60; i++)); do
    if ib::hv2_answers "$root"; then
      IB_HV2_ROOT=$root IB_HV2_URI=$(ib::hv2_uri "$root") IB_HV2_STARTED=$root
      printf '    second libvirtd (%s) answers on %s\n' "$hostname" "$IB_HV2_URI"
      return 0
    fi
    sleep 0.5
  done
  printf 'second libvirtd does not answer on %s after 30 s; its log:\n' "$(ib::hv2_uri "$root")" >&2
  tail -n 20 "$root/var/log/libvirt/libvirtd.log" 2>/dev/null | sed 's/^/    /' >&2
  ib::hv2_stop "$root"
  return 1
}

# Send $1 to the pids given, then wait up to $2 tenths of a second for them to go.
ib::hv2_signal_wait() {
  local signal=$1 tenths=$2 pid alive
  shift 2
  [[ $# -gt 0 ]] || return 0
  kill "-$signal" "$@" 2>/dev/null || true
  for ((; tenths > 0; tenths--)); do
    alive=0
    for pid in "$@"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [[ $alive -eq 1 ]] || return 0
    sleep 0.1
  done
}

# Stop the second hypervisor under $1 (default $IB_HV2_ROOT) and remove its root.
# Only a directory carrying the marker ib::hv2_start writes is ever removed.
ib::hv2_stop() {
  local root=${1:-${IB_HV2_ROOT:-}} daemon pids
  [[ -n $root && -e $root/$IB_HV2_MARKER ]] || return 0
  daemon=$(cat "$root/run/libvirtd.pid" 2>/dev/null || true)
  # Guests are destroyed through libvirt while it answers, so it removes what it
  # made outside the namespaces for them (their cgroups under /sys/fs/cgroup).
  if ib::hv2_answers "$root"; then
    local uri guest
    uri=$(ib::hv2_uri "$root")
    while read -r guest; do
      if [[ -n $guest ]]; then virsh -q -c "$uri" destroy "$guest" >/dev/null 2>&1 || true; fi
    done < <(virsh -q -c "$uri" list --name 2>/dev/null)
  fi
  mapfile -t pids < <(ib::hv2_pids "$root")
  # libvirtd first, so it does not react to its guests going away.
  if [[ -n $daemon ]] && printf '%s\n' "${pids[@]}" | grep -qx "$daemon"; then
    ib::hv2_signal_wait TERM 100 "$daemon"
  fi
  mapfile -t pids < <(ib::hv2_pids "$root")
  ib::hv2_signal_wait TERM 50 "${pids[@]}"
  mapfile -t pids < <(ib::hv2_pids "$root")
  ib::hv2_signal_wait KILL 50 "${pids[@]}"
  mapfile -t pids < <(ib::hv2_pids "$root")
  if [[ ${#pids[@]} -gt 0 ]]; then
    printf 'second libvirtd: processes %s did not stop; %s is left in place\n' "${pids[*]}" "$root" >&2
    return 1
  fi
  rm -rf "$root"
  if [[ ${IB_HV2_ROOT:-} == "$root" ]]; then IB_HV2_ROOT='' IB_HV2_URI=''; fi
  if [[ $IB_HV2_STARTED == "$root" ]]; then IB_HV2_STARTED=''; fi
}

# Stop only the libvirtd under $1, as an operator or a crash would: virtlogd, the
# namespaces and any running guest stay, and so does ROOT (its domains are still
# defined on disk). `resume` starts it again where it was.
ib::hv2_halt() {
  local root=$1 daemon
  [[ -e $root/$IB_HV2_MARKER ]] || { printf 'second libvirtd: %s is not a root\n' "$root" >&2; return 1; }
  daemon=$(cat "$root/run/libvirtd.pid" 2>/dev/null || true)
  [[ -n $daemon ]] || return 0
  ib::hv2_signal_wait TERM 100 "$daemon"
  if kill -0 "$daemon" 2>/dev/null; then ib::hv2_signal_wait KILL 50 "$daemon"; fi
  rm -f "$root/run/libvirt/libvirt-sock"
}

# Start the libvirtd under $1 again, inside the namespaces its virtlogd keeps.
ib::hv2_resume() {
  local root=$1 inside i
  ib::hv2_answers "$root" && return 0
  inside=$(ib::hv2_pids "$root" | head -n 1)
  [[ -n $inside ]] || { printf 'second libvirtd: no process left in the namespaces of %s\n' "$root" >&2; return 1; }
  nsenter --target "$inside" --mount --net --uts -- libvirtd -d
  for ((i = 0; i < 60; i++)); do
    ib::hv2_answers "$root" && return 0
    sleep 0.5
  done
  printf 'second libvirtd under %s does not answer again after 30 s\n' "$root" >&2
  return 1
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  case ${1:-} in
    start)
      ib::hv2_start "${2:-}" >&2
      printf 'export IB_HV2_ROOT=%q INFINIBAY_TEST_LIBVIRT_URI2=%q\n' "$IB_HV2_ROOT" "$IB_HV2_URI"
      ;;
    stop | halt | resume)
      [[ -n ${2:-} ]] || { printf 'usage: %s %s ROOT\n' "$0" "$1" >&2; exit 2; }
      "ib::hv2_$1" "$2"
      ;;
    *)
      printf 'usage: %s start [ROOT] | stop ROOT | halt ROOT | resume ROOT\n' "$0" >&2
      exit 2
      ;;
  esac
fi
