#!/usr/bin/env bash
# tests/rack/rack_cluster.sh: the rack tier's end-to-end test of the cluster (issue 5), on a real
# virtual rack (tools/rack: namespaces, stacknode-db and stacknoded per node, stackctl):
#   - init plus two joins: 3 voters, all online;
#   - the database's wire port: a member's certificate is answered, a plain client is not;
#   - a node renamed and its database moved (node update) serves with its new certificate, the
#     old one revoked, its database a voter again at the new address; and back;
#   - kill a node: the cluster stays writable and shows it offline; remove it from a survivor
#     (its certificate then gets nothing on the wire port either); reset it;
#   - bad tokens on that box (used, expired, tampered, another cluster's CA pin, garbage): each
#     refused with a message naming its step, nothing changed on either side (member list, token
#     states, the box's state dir);
#   - a join whose first listed member is down goes through the next one;
#   - a node cut off (svc0 down) cannot change cluster state; the majority can, and the node
#     catches up when it is back;
#   - the API refuses requests without valid credentials; a login works; the audit log records
#     the changes with their actors;
#   - quorum lost for good: `cluster recover` reports each survivor's last log index, rebuilds the
#     cluster from sn1 after copying its data dir aside, and the lost nodes are removed.
#
#   tests/rack/rack_cluster.sh      (as root; binaries from $STACKNODE_RACK_BIN, default build/bin)
#
# Exit status: 0 all passed, 1 a check failed, 77 skipped (prints "SKIPPED: <reason>").
set -euo pipefail

# Limits of the waits below: each polls its condition, these only bound a failure.
converge_seconds=40       # voters rebalanced, a rejoined node online (heartbeat 5 s, rounds 2 s)
offline_seconds=30        # a killed node shown offline: 20 s without a heartbeat, plus one heartbeat
catch_up_seconds=20       # a node back on the network sees what the majority wrote
revoke_seconds=10         # a removed node's serial reaches db-tls/revoked (2 s) and the gateway (1 s)
poll_seconds=0.5
api_port=8443

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "SKIPPED: $tool is not installed (tools/bootstrap)"; exit 77; }
done
prefix_letters=ct
required_binaries=(stacknode-db stacknoded stackctl)
# shellcheck source=tests/rack/common.sh
source "$(dirname "$0")/common.sh"
trap rack_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctl() {  # ctl NODE ARGS...: stackctl on NODE with its node.cfg
  local node=$1
  shift
  "$rack" exec "$node" stackctl --config "$STACKNODE_RACK_DIR/$node/node.cfg" "$@"
}
status_json() { ctl "$1" --json cluster status 2>/dev/null; }
node_field() {  # node_field ASKED NODE FIELD: what ASKED's cluster status says of NODE
  status_json "$1" | jq -r --arg n "$2" --arg f "$3" '.nodes[] | select(.name == $n) | .[$f]'
}
member_names() { ctl "$1" --json node list 2>/dev/null | jq -r '[.items[].name] | join(",")'; }
token_states() { ctl sn1 --json cluster token list | jq -c '[.items[] | [.id, .state]]'; }
# wire_probe NODE CERT_OWNER|-: one dqlite LEADER request to NODE's wire port (7000), over TLS
# with CERT_OWNER's pki/ certificate (checking NODE's against the CA), or in plain TCP with "-".
# Prints "answered" when a dqlite SERVER response came back, else "nothing".
wire_probe() {
  local pki="$STACKNODE_RACK_DIR/${2/-/sn1}/state/pki"
  python3 - "$(node_address "$1")" "$2" "$pki" <<'PY'
import socket, ssl, struct, sys
host, owner, pki = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    stream = socket.create_connection((host, 7000), timeout=5)
    if owner != "-":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False  # the node's certificate names its IP; the CA is checked
        context.load_verify_locations(pki + "/ca.crt")
        context.load_cert_chain(pki + "/node.crt", pki + "/node.key")
        stream = context.wrap_socket(stream)
    # protocol version 1, then LEADER: header (1 word, type 0, schema 0) and an 8-byte body
    stream.sendall(struct.pack("<Q", 1) + struct.pack("<IBBH", 1, 0, 0, 0) + bytes(8))
    answer = b""
    while len(answer) < 8:
        chunk = stream.recv(8 - len(answer))
        if not chunk:
            break
        answer += chunk
except (OSError, ssl.SSLError):
    answer = b""
print("answered" if len(answer) == 8 and answer[4] == 1 else "nothing")
PY
}
node_address() { echo "198.18.1.1${1#sn}"; }
# The state dir's entries but content/ (stacknoded's sites, the factory page before any membership:
# content, not membership).
state_dir_files() {
  find "$STACKNODE_RACK_DIR/$1/state" -mindepth 1 -maxdepth 1 ! -name content -printf '%f\n' | sort | tr '\n' ' '
}

# ---- init plus two joins --------------------------------------------------------------------------
check "tools/rack up 3 (init on sn1, sn2 and sn3 join with tokens)" "$rack" up 3
three_voters_online() {
  [[ "$(status_json sn1 | jq '[.nodes[] | select(.role == "voter" and .online)] | length')" == 3 ]]
}
check "status shows 3 voters, all online" poll "$converge_seconds" three_voters_online
same_cluster_everywhere() {
  local id
  id=$(status_json sn1 | jq -r .id)
  [[ -n "$id" && "$(status_json sn2 | jq -r .id)" == "$id" && "$(status_json sn3 | jq -r .id)" == "$id" ]]
}
check "every node answers status for the same cluster" same_cluster_everywhere

# ---- the database's wire port runs mutual TLS -----------------------------------------------------
check "sn1's wire port answers a member's certificate (sn2's)" test "$(wire_probe sn1 sn2)" = answered
check "sn1's wire port gives a plain TCP client nothing" test "$(wire_probe sn1 -)" = nothing

# ---- the API refuses requests without valid credentials -------------------------------------------
api="https://198.18.1.11:$api_port/api/v1"
http_status() { curl -sk -o /dev/null -w '%{http_code}' "$@"; }
check "no credentials: 401" test "$(http_status "$api/cluster")" = 401
check "an unknown bearer token: 401" \
  test "$(http_status -H 'Authorization: Bearer snt1.0000000000000000000000000000000000000000000000000000000000000000' "$api/cluster")" = 401
check "a wrong password: 401" \
  test "$(http_status -X POST -d '{"user":"admin","password":"not the password"}' "$api/login")" = 401
password=$(cat "$STACKNODE_RACK_DIR/admin-password")
session=$(curl -sk -X POST -d "{\"user\":\"admin\",\"password\":\"$password\"}" "$api/login" | jq -r .token)
check "the admin password logs in and its token reads the cluster" \
  test "$(http_status -H "Authorization: Bearer $session" "$api/cluster")" = 200
check "a change through the API with that token" \
  test "$(http_status -X PUT -H "Authorization: Bearer $session" -d '{"value":"198.18.1.1"}' "$api/settings/ntp_server")" = 200

# ---- kill a node: writable, shown offline, removed from a survivor, reset --------------------------
check "kill sn3" "$rack" kill sn3
check "the cluster stays writable without sn3" ctl sn1 setting set syslog 198.18.1.254:514
sn3_offline() { [[ "$(node_field sn1 sn3 online)" == false ]]; }
started=$SECONDS
check "sn3 is shown offline" poll "$offline_seconds" sn3_offline
echo "  (offline after $((SECONDS - started)) s of polling)"
check "remove sn3 from a survivor (sn2)" ctl sn2 cluster remove sn3
check "the member list is sn1,sn2" test "$(member_names sn1)" = "sn1,sn2"
sn3_old_certificate_refused() { [[ "$(wire_probe sn1 sn3)" == nothing && "$(wire_probe sn2 sn3)" == nothing ]]; }
check "sn3's revoked certificate gets nothing on sn1's and sn2's wire ports" poll "$revoke_seconds" sn3_old_certificate_refused
check "start sn3's daemons again" "$rack" start sn3
check "stackctl node reset on sn3 (the cluster no longer lists it)" ctl sn3 node reset
check "sn3's state dir holds no membership" test "$(state_dir_files sn3)" = "db "

# ---- bad tokens: refused, nothing changed on either side -------------------------------------------
used_token=$(grep -o 'cluster join snj1\.[A-Za-z0-9_-]*' "$STACKNODE_RACK_DIR/up.log" | head -n 1 | cut -d' ' -f3)
expiring=$(ctl sn1 --json cluster token create --validity 1)
expired_token=$(jq -r .token <<< "$expiring")
expires_at=$(jq -r .expires_at <<< "$expiring")
good=$(ctl sn1 --json cluster token create)
good_token=$(jq -r .token <<< "$good")
good_id=$(jq -r .id <<< "$good")
# The good token with one character in the middle changed: its check no longer matches.
middle=$(( ${#good_token} / 2 ))
flipped=$([[ "${good_token:$middle:1}" == A ]] && echo B || echo A)
tampered_token="${good_token:0:$middle}$flipped${good_token:$((middle + 1))}"
# The good token re-made with another CA pin and a correct check: passes parsing, fails the pin.
wrong_pin_token=$(python3 - "$good_token" <<'PY'
import base64, hashlib, sys
text = sys.argv[1][len("snj1."):]
raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
raw[17:49] = hashlib.sha256(b"another cluster's CA").digest()   # version 1 byte, cluster id 16, pin 32
body = bytes(raw[:-4])
print("snj1." + base64.urlsafe_b64encode(body + hashlib.sha256(body).digest()[:4]).decode().rstrip("="))
PY
)
past_expiry() { (( $(date +%s) >= expires_at )); }
check "the 1-second token's expiry passes" poll 5 past_expiry
members_before=$(member_names sn1)
tokens_before=$(token_states)
refused_at_step() {  # refused_at_step STEP TOKEN: join refused naming STEP, nothing changed
  local step=$1 token=$2 output
  if output=$(ctl sn3 cluster join "$token" 2>&1); then echo "  joined with a bad token: $output"; return 1; fi
  grep -q "failed at step '$step'" <<< "$output" || { echo "  $output"; return 1; }
  [[ "$(state_dir_files sn3)" == "db " ]] || { echo "  sn3 state dir: $(state_dir_files sn3)"; return 1; }
  [[ "$(member_names sn1)" == "$members_before" ]] || { echo "  members: $(member_names sn1)"; return 1; }
  [[ "$(token_states)" == "$tokens_before" ]] || { echo "  tokens changed: $(token_states)"; return 1; }
}
check "a token used before is refused by the cluster (prepare)" refused_at_step prepare "$used_token"
check "an expired token is refused (token)" refused_at_step token "$expired_token"
check "a tampered token is refused as damaged (token)" refused_at_step token "$tampered_token"
check "a token with another cluster's CA pin is refused before anything secret is sent (pin)" \
  refused_at_step pin "$wrong_pin_token"
check "garbage is refused (token)" refused_at_step token "not a token at all"

# ---- a join whose first listed member is down goes through the next ------------------------------
listed=$(python3 - "$good_token" <<'PY'
import base64, sys
text = sys.argv[1][len("snj1."):]
raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
at, count, out = 1 + 16 + 32 + 32 + 8, 0, []
count = raw[at]; at += 1
for _ in range(count):
    n = raw[at]; out.append(raw[at + 1:at + 1 + n].decode()); at += 1 + n
print(",".join(out))
PY
)
check "the token lists sn1 then sn2" test "$listed" = "198.18.1.11:$api_port,198.18.1.12:$api_port"
check "stop sn1's stacknoded (its API is down, its database stays)" "$rack" kill sn1 stacknoded
join_output=$(ctl sn3 --json cluster join "$good_token" 2>&1 || true)
check "sn3 joins through sn2" test "$(jq -r .member <<< "$join_output" 2>/dev/null)" = "198.18.1.12:$api_port"
check "start sn1's stacknoded again" "$rack" start sn1
check "that token is used now" \
  test "$(ctl sn1 --json cluster token list | jq -r --arg id "$good_id" '.items[] | select(.id == $id) | .state')" = used
check "3 voters, all online again" poll "$converge_seconds" three_voters_online

# ---- a node cut off cannot change cluster state; the majority can ------------------------------------
check "cut sn3 off (svc0 down)" "$rack" link sn3 down
sn3_cannot_change() { ! ctl sn3 setting set cut-off yes; }
check "sn3 cannot change cluster state (its stacknoded finds no leader)" sn3_cannot_change
check "the majority can" ctl sn1 setting set majority yes
check "sn3 back on the network" "$rack" link sn3 up
sn3_sees_majority() { [[ "$(ctl sn3 --json setting list 2>/dev/null | jq -r '.items.majority')" == yes ]]; }
check "sn3 catches up with the majority's change" poll "$catch_up_seconds" sn3_sees_majority
check "sn3's refused change was never applied" \
  test "$(ctl sn1 --json setting list | jq -r '.items["cut-off"] // "absent"')" = absent

# ---- a node's name and db address changed later (stackctl node update: a new certificate) -------
serial_of() {  # python, not jq: jq reads numbers as doubles, and serials have 63 bits
  ctl sn1 --json node list |
    python3 -c 'import json, sys; print(next(n["certificate_serial"] for n in json.load(sys.stdin)["items"] if n["name"] == sys.argv[1]))' "$1"
}
members_before=$(member_names sn1)
taken_name_refused() { ! ctl sn2 node update --name sn1 && [[ "$(member_names sn1)" == "$members_before" ]]; }
check "a name another member has is refused, nothing changed" taken_name_refused
old_serial=$(serial_of sn3)
check "sn3 becomes web3, its database moved to port 7002" ctl sn3 node update --name web3 --db-address 198.18.1.13:7002
check "the member list is sn1,sn2,web3" test "$(member_names sn1)" = "sn1,sn2,web3"
check "web3's database address is 198.18.1.13:7002" test "$(node_field sn1 web3 db_address)" = 198.18.1.13:7002
check "3 voters, all online: web3's database caught up at its new address" poll "$converge_seconds" three_voters_online
check "web3, restarted with its new certificate, changes cluster state" \
  poll "$converge_seconds" ctl sn3 setting set renamed yes
revoked_on_sn1() { grep -qx "$old_serial" "$STACKNODE_RACK_DIR/sn1/state/db-tls/revoked"; }
check "sn3's old certificate is in sn1's revoked list" poll "$revoke_seconds" revoked_on_sn1
web3_online() { [[ "$(node_field sn1 web3 online)" == true ]]; }
check "web3 is online" poll "$converge_seconds" web3_online
check "web3 becomes sn3 again, its database back on 7000" ctl sn3 node update --name sn3 --db-address 198.18.1.13:7000
members_are() { [[ "$(member_names sn1)" == "$1" ]]; }
check "the member list is sn1,sn2,sn3 again" members_are sn1,sn2,sn3
check "3 voters, all online after the renames" poll "$converge_seconds" three_voters_online

# ---- the audit log ------------------------------------------------------------------------------
audit=$(ctl sn1 --json audit --limit 100)
has_entry() { jq -e --arg a "$1" --arg act "$2" --arg t "$3" \
  '[.items[] | select(.actor == $a and .action == $act and .target == $t)] | length > 0' <<< "$audit" > /dev/null; }
check "audit: cluster.init by admin" has_entry admin cluster.init rack
check "audit: setting.put by the admin's session" has_entry admin setting.put ntp_server
check "audit: setting.put by stackctl on sn1" has_entry node:sn1 setting.put syslog
check "audit: node.remove of sn3 by sn2" has_entry node:sn2 node.remove sn3
check "audit: node.join of sn3" has_entry node:sn3 node.join sn3
check "audit: node.update of sn3 to web3" has_entry node:sn3 node.update web3
check "audit: node.update of web3 back to sn3" has_entry node:web3 node.update sn3
logged_in() { jq -e '[.items[] | select(.action == "user.login" and .actor == "admin")] | length > 0' <<< "$audit" > /dev/null; }
check "audit: the admin's login" logged_in

# ---- quorum lost for good: cluster recover on the survivor with the most recent log ---------------
kill_two() { "$rack" kill sn2 && "$rack" kill sn3; }
check "kill sn2 and sn3 (2 of 3 voters)" kill_two
no_quorum_write_refused() { ! ctl sn1 setting set lost-quorum yes; }
check "without quorum sn1 cannot change cluster state" no_quorum_write_refused
check "stop sn1's stacknode-db (recover works on a stopped node)" "$rack" kill sn1 stacknode-db
last_index() { ctl "$1" --json cluster recover | jq -r .last_log_index; }
survivor_most_recent() {
  local sn1_index
  sn1_index=$(last_index sn1)
  echo "  (last log index: sn1 $sn1_index, sn2 $(last_index sn2), sn3 $(last_index sn3))"
  (( sn1_index > 0 && sn1_index >= $(last_index sn2) && sn1_index >= $(last_index sn3) ))
}
check "cluster recover (without --yes) reports each survivor's last log index; sn1's is the highest" survivor_most_recent
check "stackctl cluster recover --yes on sn1" ctl sn1 cluster recover --yes
backed_up() { compgen -G "$STACKNODE_RACK_DIR/sn1/state/db.before-recover-*" > /dev/null; }
check "the data dir was copied aside first" backed_up
check "start sn1's stacknode-db" "$rack" start sn1
check "sn1 alone takes changes again" poll "$converge_seconds" ctl sn1 setting set recovered yes
remove_lost() { ctl sn1 cluster remove sn2 && ctl sn1 cluster remove sn3; }
check "the lost nodes are removed from sn1" remove_lost
check "the member list is sn1" test "$(member_names sn1)" = "sn1"
check "the data from before the loss is there" \
  test "$(ctl sn1 --json setting list | jq -r .items.majority)" = yes

check "tools/rack down" "$rack" down
nothing_left() { ! ip netns list | grep -q "^$prefix" && ! ip link show "${prefix}rack0" > /dev/null 2>&1; }
check "nothing of the rack is left" nothing_left

echo "$passed passed, $failed failed"
(( failed == 0 ))
