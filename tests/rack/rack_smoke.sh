#!/usr/bin/env bash
# tests/rack/rack_smoke.sh: the rack tier's smoke test of tools/rack itself, with no cluster: brings
# up a 3-node virtual rack under its own namespace prefix and rack dir, checks the topology (host
# and client reach what DESIGN.md says), the stacknode-db daemons, exec/kill/start/link, and that
# `down` (also after a half-failed `up`) leaves no namespace, veth, process or file behind.
#
#   tests/rack/rack_smoke.sh        (as root; binaries from $STACKNODE_RACK_BIN, default build/bin)
#
# Exit status: 0 all passed, 1 a check failed, 77 skipped (prints "SKIPPED: <reason>").
# Runs without stacknoded and without init/join (STACKNODE_RACK_SKIP_NODED=1,
# STACKNODE_RACK_NO_CLUSTER=1): those are the rack tier's end-to-end tests' business.
set -euo pipefail

nodes=3
ping_attempts=5          # one ping each, up to 1 s: a fresh bridge forwards at once, ARP takes a moment
ping_timeout_seconds=1
fabric_front_address="198.18.0.1"
client_address="198.18.0.2"
node_address() { echo "198.18.1.$((10 + $1))"; }

command -v ping >/dev/null || { echo "SKIPPED: ping is not installed (iputils-ping; tools/bootstrap)"; exit 77; }
prefix_letters=rs
required_binaries=(stacknode-db stackctl)
# shellcheck source=tests/rack/common.sh
source "$(dirname "$0")/common.sh"
export STACKNODE_RACK_SKIP_NODED=1 STACKNODE_RACK_NO_CLUSTER=1

# What a rack under this prefix leaves on the machine: empty when it is all gone.
leftovers() {
  ip netns list | awk '{print $1}' | grep "^$prefix" || true
  ip -br link show "${prefix}rack0" 2>/dev/null || true
  [[ ! -e "$STACKNODE_RACK_DIR" ]] || echo "$STACKNODE_RACK_DIR"
  local pid
  for pid in "${daemon_pids[@]}"; do running_db "$pid" && echo "stacknode-db pid $pid"; done
  return 0
}
# A stacknode-db that is alive: not a zombie waiting for a parent (pid 1 here may never reap it).
running_db() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == stacknode-db && "${stat##*) }" != Z* ]]
}
daemon_pids=()

cleanup() {
  local status=$?
  "$rack" down >/dev/null 2>&1 || true
  local left
  left=$(leftovers)
  if [[ -n "$left" ]]; then
    echo "FAIL: left behind after down: $left"
    status=1
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT   # so that an interrupted run still cleans up (through the EXIT trap)
trap 'exit 143' TERM

ping_from_host() {
  local _
  for _ in $(seq 1 "$ping_attempts"); do
    ping -c 1 -W "$ping_timeout_seconds" -I "${prefix}rack0" "$1" >/dev/null 2>&1 && return 0
  done
  return 1
}
ping_in() {  # ping_in NODE ADDRESS: from inside NODE's namespace
  local _
  for _ in $(seq 1 "$ping_attempts"); do
    "$rack" exec "$1" ping -c 1 -W "$ping_timeout_seconds" "$2" >/dev/null 2>&1 && return 0
  done
  return 1
}
unreachable_from_host() { ! ping -c 1 -W "$ping_timeout_seconds" -I "${prefix}rack0" "$1" >/dev/null 2>&1; }

# The pids of stacknode-db processes inside a namespace.
db_pids_in() {
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null); do
    running_db "$pid" && echo "$pid"
  done
  return 0
}
db_runs_in() { [[ -n "$(db_pids_in "$1")" ]]; }
db_absent_in() { [[ -z "$(db_pids_in "$1")" ]]; }

namespaces_present() {
  local name list
  list=$(ip netns list | awk '{print $1}')
  for name in fabric client $(seq -f 'sn%g' 1 "$nodes"); do
    grep -qx "$prefix$name" <<< "$list" || { echo "  missing namespace $prefix$name"; return 1; }
  done
}

status_says_all_running() {
  local status
  status=$("$rack" status --json) || return 1
  jq -e --argjson nodes "$nodes" '.up and .fabric and .client and .host.exists and (.nodes | length == $nodes)
    and all(.nodes[]; .namespace_exists and .svc0 == "UP" and .daemons["stacknode-db"].running)' <<< "$status" >/dev/null
}

up_refuses_again() {
  local output
  if output=$("$rack" up "$nodes" 2>&1); then return 1; fi
  grep -q "rack already up: tools/rack down first" <<< "$output"
}

exec_sets_node_environment() {
  local output
  # shellcheck disable=SC2016  # expanded by the shell inside the namespace
  output=$("$rack" exec sn2 sh -c 'echo "$STACKNODE_NODE_CFG $(pwd)"') || return 1
  [[ "$output" == "$STACKNODE_RACK_DIR/sn2/node.cfg $STACKNODE_RACK_DIR/sn2" ]]
}

node_cfg_as_contracted() {
  local cfg="$STACKNODE_RACK_DIR/sn2/node.cfg" address
  address=$(node_address 2)
  grep -q "node: { name = \"sn2\"; api_address = \"$address:8443\"; };" "$cfg" &&
    grep -q "db: { address = \"$address:7000\"; listen_http = \"127.0.0.1:7001\"; };" "$cfg" &&
    "$bin_dir/stacknode-db" --check-config --config "$cfg" >/dev/null 2>&1
}

nothing_left() {
  local left
  left=$(leftovers)
  [[ -z "$left" ]] || { echo "  left: $left"; return 1; }
}

# ---- a whole rack -------------------------------------------------------------------------------
check "tools/rack up $nodes" "$rack" up "$nodes"
check "up on a rack that is up refuses" up_refuses_again
check "namespaces fabric, client, sn1..sn$nodes exist" namespaces_present
for number in $(seq 1 "$nodes"); do
  check "host ($host_address) reaches sn$number's svc0 $(node_address "$number")" ping_from_host "$(node_address "$number")"
done
check "client reaches fabric $fabric_front_address" ping_in client "$fabric_front_address"
check "client reaches sn1 through fabric's forwarding" ping_in client "$(node_address 1)"
for number in $(seq 1 "$nodes"); do
  check "stacknode-db runs in sn$number's namespace" db_runs_in "${prefix}sn$number"
done
mapfile -t daemon_pids < <(for number in $(seq 1 "$nodes"); do db_pids_in "${prefix}sn$number"; done)
check "status --json: every namespace, svc0 and stacknode-db up" status_says_all_running
check "node.cfg has the contracted keys and stacknode-db accepts it" node_cfg_as_contracted
check "exec sets STACKNODE_NODE_CFG and the node dir" exec_sets_node_environment

check "link sn2 down" "$rack" link sn2 down
check "link sn2 down: the host no longer reaches sn2" unreachable_from_host "$(node_address 2)"
check "link sn2 up" "$rack" link sn2 up
check "link sn2 up: sn2 reaches the client again (default route back)" ping_in sn2 "$client_address"

check "kill sn3" "$rack" kill sn3
check "kill sn3: no stacknode-db left in sn3" db_absent_in "${prefix}sn3"
check "start sn3" "$rack" start sn3
check "start sn3: stacknode-db runs in sn3 again" db_runs_in "${prefix}sn3"
mapfile -t -O "${#daemon_pids[@]}" daemon_pids < <(db_pids_in "${prefix}sn3")

check "tools/rack down" "$rack" down
check "down leaves no namespace, veth, rack dir or daemon" nothing_left
check "down again is a no-op" "$rack" down

# ---- a half-failed up: the daemon dies at start, after the topology is made --------------------
fake_bin="$work/fake-bin"
mkdir -p "$fake_bin"
cat > "$fake_bin/stacknode-db" <<'FAKE'
#!/bin/sh
# accepts any config, then dies at start, as a daemon that cannot bind would
case " $* " in *" --check-config "*) exit 0 ;; esac
echo "fake stacknode-db: cannot start" >&2
exit 1
FAKE
printf '#!/bin/sh\nexit 0\n' > "$fake_bin/stackctl"
chmod +x "$fake_bin/stacknode-db" "$fake_bin/stackctl"
half_failed_up_names_step() {
  local output
  # (no dataplane or web server: fake_bin has only stacknode-db and stackctl)
  if output=$(STACKNODE_RACK_BIN="$fake_bin" STACKNODE_RACK_NO_DATAPLANE=1 "$rack" up 2 2>&1); then return 1; fi
  grep -q "up failed at step 'start daemons': stacknode-db in sn1 exited during start-up" <<< "$output" &&
    grep -q "$STACKNODE_RACK_DIR/sn1/log/stacknode-db.log" <<< "$output"
}
check "up whose daemon dies fails, naming the step and the log" half_failed_up_names_step
check "tools/rack down after the half-failed up" "$rack" down
check "nothing left after the half-failed up" nothing_left

echo "$passed passed, $failed failed"
(( failed == 0 ))
