// The dataplane's control protocol: what stacknoded (or an operator with socat) sends to
// /run/stacknode/dataplane.sock, and what comes back. One JSON object per line each way; the
// messages are documented in dataplane/README.md ("Control protocol").
//
// This file is the pure half: parsing requests into typed values (every error names the field,
// e.g. `config.services[2].backends[0].weight: must be 1-65535`) and formatting replies. The
// socket, the snapshot swap and the counters live in the DPDK program; the parser is fuzzed
// (tests/fuzz/dataplane/control_fuzz.cpp) because its input crosses a process boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/dataplane/snapshot.hpp"

namespace stacknode::dataplane {

// One request line may carry a whole config: 4096 services of a few backends each fit well.
inline constexpr std::size_t max_control_request_bytes = 8u << 20;
inline constexpr std::size_t default_flow_sample = 100;
inline constexpr std::size_t max_flow_sample = 10000;
// Owned VIPs with a deadline (config.owned_for_ms, op "renew"): the dataplane stops answering for
// them when the controller stops renewing, e.g. because it died. At most ten minutes.
inline constexpr std::uint32_t max_owned_for_ms = 600'000;

// The part of the snapshot config that the control side owns; ports come from node.cfg.
struct ControlConfig {
  std::uint64_t version = 0;
  std::vector<ServiceConfig> services;
  std::vector<IpAddress> owned_vips;
  std::vector<NeighbourConfig> neighbours;
  std::optional<IpAddress> gateway;
  // Without it, owned VIPs are answered until the next apply. With it, only for this long after
  // the apply or the last renew; then the dataplane drops them (and says so).
  std::optional<std::uint32_t> owned_for_ms;
};

enum class ControlOp : std::uint8_t { apply, status, counters, flows, renew };

struct ControlRequest {
  ControlOp op = ControlOp::status;
  ControlConfig config;                          // apply
  std::size_t flow_limit = default_flow_sample;  // flows
  std::uint64_t renew_version = 0;               // renew: the config version the renewal is for
  std::uint32_t renew_for_ms = 0;                // renew: owned VIPs answered this long from now
};

struct ControlParseResult {
  std::optional<ControlRequest> request;
  std::string error;  // one line naming the field, when request is empty
};

ControlParseResult parse_control_request(std::string_view line);

// The "config" object alone (as in an apply request), e.g. node.cfg's dataplane.config_file,
// which the dataplane applies before it forwards its first packet. Errors name fields from
// "config".
struct ControlConfigResult {
  std::optional<ControlConfig> config;
  std::string error;
};
ControlConfigResult parse_control_config(std::string_view text);

// The whole snapshot config: the node's ports plus what the control side sent.
SnapshotConfig make_snapshot_config(const std::vector<PortConfig>& ports, const ControlConfig& control,
                                    std::uint8_t outer_ttl);

// {"ok":false,"error":"..."} as one line (no trailing newline).
std::string control_error_reply(std::string_view message);

}  // namespace stacknode::dataplane
