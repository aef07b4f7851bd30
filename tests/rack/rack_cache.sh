#!/usr/bin/env bash
# tests/rack/rack_cache.sh: the rack tier's end-to-end test of the cache tier (issue 6), on a real
# virtual rack of 3 nodes (tools/rack up, without dataplanes: the cache needs none). Every
# stacknoded runs its node's redis-server; one is the primary, the others replicate it; each node
# has the endpoint 127.0.0.1:6380, which always reaches the primary (no password for local
# clients). Checked, with redis-cli from inside the nodes:
#   - every node's endpoint answers; a write through sn1's endpoint is read through sn3's;
#   - WAIT through the endpoint: a write acknowledged by both replicas;
#   - the cache's counters on /metrics (role, hits, misses, memory, replication lag);
#   - kill the primary's node: writes through a survivor's endpoint succeed again (the gap is
#     printed, not asserted: timings belong in benchmarks), and the acknowledged write survived;
#   - the old primary's node comes back: its redis-server starts as a replica (its config says
#     replicaof before it starts) and serves the data through its endpoint.
#
#   tests/rack/rack_cache.sh      (as root; binaries from $STACKNODE_RACK_BIN, default build/bin)
#
# Exit status: 0 all passed, 1 a check failed, 77 skipped (prints "SKIPPED: <reason>").
set -euo pipefail

# Limits of the waits below: each polls its condition, these only bound a failure.
ready_seconds=60       # every endpoint answering after up (an election, replicas syncing)
failover_seconds=30    # writes succeed again after the primary's node is killed
poll_seconds=0.2
endpoint_port=6380

for tool in curl redis-cli redis-server; do
  command -v "$tool" >/dev/null || { echo "SKIPPED: $tool is not installed (tools/bootstrap)"; exit 77; }
done
prefix_letters=tc
required_binaries=(stacknode-db stacknoded stackctl)
# shellcheck source=tests/rack/common.sh
source "$(dirname "$0")/common.sh"
trap rack_cleanup EXIT
trap 'exit 130' INT
export STACKNODE_RACK_NO_DATAPLANE=1

cache() {  # cache NODE ARGS...: redis-cli against NODE's endpoint, from inside NODE
  local node=$1
  shift
  ip netns exec "${prefix}$node" timeout 5 redis-cli -h 127.0.0.1 -p "$endpoint_port" "$@" 2>&1
}
metric() {  # metric NODE NAME: the value of an unlabelled metric on NODE's stacknoded
  curl -sk -m 2 "https://198.18.1.1${1#sn}:8443/metrics" | awk -v name="$2" '$1 == name { printf "%d\n", $2 }'
}
primary() {  # the node whose stacknoded says its redis-server is the primary
  local node
  for node in "$@"; do [[ "$(metric "$node" stacknode_cache_role)" == 1 ]] && { echo "$node"; return 0; }; done
  return 1
}
endpoints_answer() { local node; for node in "$@"; do [[ "$(cache "$node" PING)" == PONG ]] || return 1; done; }
replicas_connected() { [[ "$(metric "$(primary sn1 sn2 sn3)" stacknode_cache_connected_replicas)" == 2 ]]; }

echo "rack: up 3 without dataplanes (prefix $prefix)"
"$rack" up 3 > "$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }

check "every node's endpoint answers PING" poll "$ready_seconds" endpoints_answer sn1 sn2 sn3
check "one primary, both replicas connected to it" poll "$ready_seconds" replicas_connected
first=$(primary sn1 sn2 sn3 || true)
echo "  the primary: $first"

# ---- one address on every node, always the primary ----
answers() {  # answers NODE EXPECTED ARGS...: NODE's endpoint answers ARGS with EXPECTED (else says what)
  local node=$1 expected=$2 got
  shift 2
  got=$(cache "$node" "$@")
  [[ "$got" == "$expected" ]] || { echo "  $node: $* answered: $got"; return 1; }
}
# A new primary takes writes once a replica is in sync with it (min-replicas-to-write: NOREPLICAS
# for a second or two after the election).
check "a write through sn1's endpoint" poll 30 answers sn1 OK SET greeting hello
check "is read through sn3's endpoint" answers sn3 hello GET greeting
acknowledged() {  # a write and WAIT on one connection: both replicas have it
  local got
  got=$(printf 'SET kept yes\nWAIT 2 2000\n' | cache sn2)
  [[ "$got" == $'OK\n2' ]] || { echo "  answered: $got"; return 1; }
}
check "WAIT 2 through the endpoint: both replicas acknowledged the write" acknowledged
check "redis-server on the network wants the cluster's password (NOAUTH without it)" \
  bash -c "[[ \"\$(ip netns exec ${prefix}sn1 redis-cli -h 127.0.0.1 -p 6379 SET x y 2>&1)\" == *NOAUTH* ]]"
cache sn1 GET nothing-here > /dev/null
metrics_present() {
  local name
  for name in stacknode_cache_up stacknode_cache_role stacknode_cache_hits_total stacknode_cache_misses_total \
      stacknode_cache_used_memory_bytes stacknode_cache_replication_lag_bytes; do
    [[ -n "$(metric "$first" "$name")" ]] || { echo "  no $name on $first"; return 1; }
  done
  (( $(metric "$first" stacknode_cache_used_memory_bytes) > 0 ))
}
check "the primary's /metrics has the cache's counters" poll 10 metrics_present
counted() { (( $(metric "$first" stacknode_cache_hits_total) > 0 && $(metric "$first" stacknode_cache_misses_total) > 0 )); }
check "hits and misses are counted" poll 10 counted

# ---- the primary's node dies ----
# The control plane decides the failover, so it needs its majority after the loss: wait until all
# three nodes vote (the balancing loop promotes joined standbys one at a time).
three_voters() {
  [[ "$(ip netns exec "${prefix}sn2" "$bin_dir/stackctl" --config "$STACKNODE_RACK_DIR/sn2/node.cfg" --json \
        cluster status 2>/dev/null | jq -r '.summary.voters')" == 3 ]]
}
check "all three nodes vote in the control database" poll "$ready_seconds" three_voters
survivor=""
for node in sn1 sn2 sn3; do [[ "$node" == "$first" ]] || { survivor=$node; break; }; done
"$rack" kill "$first" > /dev/null
killed_at=$(date +%s%N)
writes_again() { [[ "$(cache "$survivor" SET after-failover 1)" == OK ]]; }
check "writes through $survivor's endpoint succeed again after $first is killed" poll "$failover_seconds" writes_again
echo "  cache failover gap: about $(( ($(date +%s%N) - killed_at) / 1000000 )) ms (polled every ${poll_seconds}s; measured, not asserted)"
check "the acknowledged write survived the failover" answers "$survivor" yes GET kept
new_primary() { second=$(primary sn1 sn2 sn3) && [[ "$second" != "$first" ]]; }
check "another node is the primary" poll 10 new_primary
echo "  the primary now: $second"

# ---- the old primary comes back as a replica ----
"$rack" start "$first" > /dev/null
check "$first's redis-server was started as a replica (replicaof in its config)" \
  poll 30 grep -q '^replicaof ' "$STACKNODE_RACK_DIR/$first/state/cache/redis.conf"
back_as_replica() {
  [[ "$(metric "$first" stacknode_cache_up)" == 1 && "$(metric "$first" stacknode_cache_role)" == 0 ]]
}
check "$first's stacknoded reports its server as a replica" poll 30 back_as_replica
check "$first's endpoint reaches the new primary and the data" poll 30 \
  bash -c "[[ \"\$(ip netns exec ${prefix}$first redis-cli -h 127.0.0.1 -p $endpoint_port GET after-failover 2>&1)\" == 1 ]]"

echo "rack_cache: $passed passed, $failed failed"
(( failed == 0 ))
