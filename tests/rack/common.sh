# tests/rack/common.sh: what every rack-tier script starts with (sourced, not run): the skip
# rules (exit 77 with "SKIPPED: <reason>": not root, no iproute2 or jq, namespaces refused,
# another rack up), the binaries, a unique namespace prefix and rack dir, check() and poll().
#
#   source "$(dirname "$0")/common.sh"  with  prefix_letters=rs  required_binaries=(...)
# sets: repo, rack (tools/rack), prefix, bin_dir, work (a temporary dir), check() and poll(), and
# exports the STACKNODE_RACK_* variables tools/rack reads.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rack="$repo/tools/rack"
host_address="198.18.1.254"   # the host end of every rack: one rack per machine at a time

skip() { echo "SKIPPED: $*"; exit 77; }

[[ $(id -u) -eq 0 ]] || skip "the virtual rack needs root (network namespaces)"
command -v ip >/dev/null || skip "iproute2's ip is not installed (tools/bootstrap)"
command -v jq >/dev/null || skip "jq is not installed (tools/bootstrap)"
# A unique prefix: two letters + pid + "-" keeps "<prefix>rack0" within Linux's 15-character names.
prefix="${prefix_letters}$$-"
ip netns add "${prefix}probe" 2>/dev/null || skip "ip netns does not work here (the kernel refuses a namespace)"
ip netns del "${prefix}probe"
holder=$(ip -4 -o addr show to "$host_address/32" | awk '{print $2}')
[[ -z "$holder" ]] || skip "another rack is up on this machine ($host_address is on $holder)"

bin_dir="${STACKNODE_RACK_BIN:-$repo/build/bin}"
for binary in "${required_binaries[@]}"; do
  if [[ ! -x "$bin_dir/$binary" ]]; then
    echo "FAIL: $bin_dir/$binary is not built (set STACKNODE_RACK_BIN or build the dev preset)"
    exit 1
  fi
done

work=$(mktemp -d)
export STACKNODE_RACK_PREFIX="$prefix" STACKNODE_RACK_DIR="$work/rack" STACKNODE_RACK_BIN="$bin_dir"

# poll SECONDS COMMAND...: true once COMMAND succeeds within SECONDS, trying every $poll_seconds
# (the script's, else 0.2 s).
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    (( SECONDS < deadline )) || return 1
    sleep "${poll_seconds:-0.2}"
  done
}

passed=0
failed=0
check() {  # check "what" command...: one verdict line per check
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
    passed=$((passed + 1))
  else
    echo "FAIL: $what"
    failed=$((failed + 1))
  fi
}

# The EXIT trap of a rack test (trap rack_cleanup EXIT): background jobs stopped; on failure the
# tail of every node's logs; then the rack down and the work dir removed, whatever happened.
rack_cleanup() {
  local status=$?
  jobs -p | xargs -r kill 2>/dev/null || true
  if (( status != 0 )) && [[ -d "$STACKNODE_RACK_DIR" ]]; then
    for log in "$STACKNODE_RACK_DIR"/sn*/log/*.log; do echo "--- $log"; tail -n 15 "$log"; done
  fi
  "$rack" down > /dev/null 2>&1 || true
  rm -rf "$work"
}
