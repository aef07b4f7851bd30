// libFuzzer target over the dataplane control protocol, parse_control_request(): the input is one
// request line, as a client writes it to the control socket. A parsed apply request's config is
// also parsed alone (parse_control_config, as node.cfg's config_file is), combined with one port
// that has both roles (make_snapshot_config) and built (build_snapshot). Sanitizers catch memory
// errors; the invariants below catch wrong answers and stop with __builtin_trap() so libFuzzer
// saves the input.
//
// Invariants checked:
//  1. Exactly one of request and error is set. An error is one line with no control character,
//     starts with the field path ("request...", "config...") or "not JSON: ", and its error reply
//     is one line of JSON reading back as {"ok":false,"error":<the error>}.
//  2. The same line parses to the same result twice.
//  3. A request holds only what the protocol allows: a flows limit of 1-10000; services on TCP or
//     UDP, ports 1-65535, table sizes in range, at most max_backends_per_service backends with
//     weights 1-65535; IPv4 addresses everywhere; lists within the snapshot's limits.
//  4. An apply request's "config", serialised alone, gives parse_control_config() the same config,
//     or the same error when the request was refused for a field under "config".
//  5. make_snapshot_config() keeps the port and every control field; build_snapshot() either
//     refuses with one line or builds a snapshot with that version, every service findable with its
//     backends and table size, Maglev entries indexing its backends (all filled when one is active),
//     and every owned VIP owned.
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/dataplane/control_protocol.hpp"

using namespace stacknode::dataplane;

namespace {

// Building Maglev tables is the slow part of an input: a few services at the largest table size
// would take a second each. Configs whose tables add up to more entries than this are parsed and
// checked, not built (the snapshot's own tests cover large tables).
constexpr std::uint64_t max_built_table_entries = 1u << 20;
constexpr std::uint8_t outer_ttl = 64;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }

bool is_one_printable_line(std::string_view text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) return false;
  }
  return true;
}

bool same_backend(const BackendConfig& left, const BackendConfig& right) {
  return left.address == right.address && left.weight == right.weight && left.state == right.state;
}

bool same_service(const ServiceConfig& left, const ServiceConfig& right) {
  if (!(left.vip == right.vip) || left.mode != right.mode || left.maglev_table_size != right.maglev_table_size ||
      left.backends.size() != right.backends.size()) {
    return false;
  }
  for (std::size_t index = 0; index < left.backends.size(); ++index) {
    if (!same_backend(left.backends[index], right.backends[index])) return false;
  }
  return true;
}

bool same_neighbours(const std::vector<NeighbourConfig>& left, const std::vector<NeighbourConfig>& right) {
  if (left.size() != right.size()) return false;
  for (std::size_t index = 0; index < left.size(); ++index) {
    if (!(left[index].address == right[index].address) || !(left[index].mac == right[index].mac)) return false;
  }
  return true;
}

bool same_config(const ControlConfig& left, const ControlConfig& right) {
  if (left.version != right.version || left.services.size() != right.services.size() ||
      left.owned_vips != right.owned_vips || !same_neighbours(left.neighbours, right.neighbours) ||
      left.gateway != right.gateway) {
    return false;
  }
  for (std::size_t index = 0; index < left.services.size(); ++index) {
    if (!same_service(left.services[index], right.services[index])) return false;
  }
  return true;
}

bool same_result(const ControlParseResult& left, const ControlParseResult& right) {
  if (left.error != right.error || left.request.has_value() != right.request.has_value()) return false;
  if (!left.request) return true;
  return left.request->op == right.request->op && left.request->flow_limit == right.request->flow_limit &&
         same_config(left.request->config, right.request->config);
}

// Invariant 1.
void check_error(const std::string& error) {
  check(!error.empty());
  check(is_one_printable_line(error));
  check(starts_with(error, "request") || starts_with(error, "config") || starts_with(error, "not JSON: "));
  const std::string reply = control_error_reply(error);
  check(reply.find('\n') == std::string::npos);
  boost::system::error_code parse_error;
  const boost::json::value parsed = boost::json::parse(reply, parse_error);
  check(!parse_error && parsed.is_object());
  const boost::json::object& object = parsed.get_object();
  check(object.size() == 2);
  const boost::json::value* ok = object.if_contains("ok");
  const boost::json::value* message = object.if_contains("error");
  check(ok != nullptr && ok->is_bool() && !ok->get_bool());
  check(message != nullptr && message->is_string() && std::string_view(message->get_string()) == error);
}

// Invariant 3.
void check_config_values(const ControlConfig& config) {
  check(config.version <= static_cast<std::uint64_t>(INT64_MAX));
  check(config.services.size() <= max_services);
  for (const ServiceConfig& service : config.services) {
    check(service.vip.address.is_ipv4());
    check(service.vip.protocol == IpProtocol::tcp || service.vip.protocol == IpProtocol::udp);
    check(service.vip.port >= 1);
    check(service.mode == ForwardingMode::ipip || service.mode == ForwardingMode::l2_dsr);
    check(service.maglev_table_size >= min_maglev_table_size && service.maglev_table_size <= max_maglev_table_size);
    check(service.backends.size() <= max_backends_per_service);
    for (const BackendConfig& backend : service.backends) {
      check(backend.address.is_ipv4());
      check(backend.weight >= min_backend_weight && backend.weight <= max_backend_weight);
      check(backend.state == BackendState::active || backend.state == BackendState::draining ||
            backend.state == BackendState::down);
    }
  }
  check(config.owned_vips.size() <= max_owned_vips);
  for (const IpAddress& vip : config.owned_vips) check(vip.is_ipv4());
  check(config.neighbours.size() <= max_neighbours);
  for (const NeighbourConfig& neighbour : config.neighbours) check(neighbour.address.is_ipv4());
  check(!config.gateway || config.gateway->is_ipv4());
}

// Invariant 4: `line` is JSON whose "config" member the request parser read.
void check_config_alone(std::string_view line, const ControlParseResult& result) {
  boost::system::error_code parse_error;
  const boost::json::value document = boost::json::parse(line, parse_error);
  check(!parse_error && document.is_object());
  const boost::json::value* config = document.get_object().if_contains("config");
  check(config != nullptr);
  const std::string text = boost::json::serialize(*config);
  if (text.size() > max_control_request_bytes) return;
  // Boost reads a number beyond double's range (1e400) as infinity and writes it back as
  // "Infinity", which is not JSON: such a config cannot be passed on as text.
  boost::json::parse(text, parse_error);
  if (parse_error) return;
  const ControlConfigResult alone = parse_control_config(text);
  if (result.request) {
    check(alone.config.has_value() && alone.error.empty());
    check(same_config(*alone.config, result.request->config));
  } else {
    check(!alone.config.has_value());
    check(alone.error == result.error);
  }
}

PortConfig front_and_service_port() {
  PortConfig port;
  port.name = "dp0";
  port.mac = MacAddress{{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}};
  port.front = true;
  port.service = true;
  port.addresses = {IpAddress::ipv4(198, 18, 1, 101)};
  return port;
}

// Invariant 5.
void check_snapshot(const ControlConfig& control) {
  const std::vector<PortConfig> ports = {front_and_service_port()};
  const SnapshotConfig config = make_snapshot_config(ports, control, outer_ttl);
  check(config.version == control.version && config.outer_ttl == outer_ttl);
  check(config.ports.size() == 1 && config.ports[0].name == ports[0].name && config.ports[0].mac == ports[0].mac &&
        config.ports[0].front && config.ports[0].service && config.ports[0].addresses == ports[0].addresses);
  check(config.services.size() == control.services.size());
  for (std::size_t index = 0; index < control.services.size(); ++index) {
    check(same_service(config.services[index], control.services[index]));
  }
  check(config.owned_vips == control.owned_vips && same_neighbours(config.neighbours, control.neighbours) &&
        config.gateway == control.gateway);

  std::uint64_t table_entries = 0;
  for (const ServiceConfig& service : control.services) table_entries += service.maglev_table_size;
  if (table_entries > max_built_table_entries) return;

  const SnapshotBuildResult built = build_snapshot(config);
  if (!built.snapshot) {
    check(!built.error.empty() && built.error.find('\n') == std::string::npos);
    return;
  }
  check(built.error.empty());
  const Snapshot& snapshot = *built.snapshot;
  check(snapshot.version() == control.version && snapshot.outer_ttl() == outer_ttl);
  check(snapshot.services().size() == control.services.size());
  for (const ServiceConfig& service : control.services) {
    const Service* found = snapshot.find_service(service.vip);
    check(found != nullptr && found->vip == service.vip && found->mode == service.mode);
    check(found->backend_count == service.backends.size() && found->table_size == service.maglev_table_size);
    std::uint32_t active = 0;
    for (const BackendConfig& backend : service.backends) active += backend.state == BackendState::active;
    check(found->active_backends == active);
    for (const BackendConfig& backend : service.backends) {
      const int position = snapshot.find_backend(*found, backend.address);
      check(position >= 0);
      check(same_backend({snapshot.backends_of(*found)[position].address, snapshot.backends_of(*found)[position].weight,
                          snapshot.backends_of(*found)[position].state},
                         backend));
    }
    for (const std::uint16_t entry : snapshot.maglev_entries(*found)) {
      check(active == 0 ? entry == maglev_no_backend : entry < found->backend_count);
    }
  }
  for (const IpAddress& vip : control.owned_vips) check(snapshot.owns_vip(vip));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const ControlParseResult result = parse_control_request(line);

  check(result.request.has_value() == result.error.empty());
  if (!result.request) check_error(result.error);
  check(same_result(result, parse_control_request(line)));

  if (!result.request) {
    if (starts_with(result.error, "config")) check_config_alone(line, result);
    return 0;
  }
  const ControlRequest& request = *result.request;
  check(request.flow_limit >= 1 && request.flow_limit <= max_flow_sample);
  if (request.op != ControlOp::flows) check(request.flow_limit == default_flow_sample);
  if (request.op != ControlOp::apply) {
    check(request.config.version == 0 && request.config.services.empty());
    return 0;
  }
  check_config_values(request.config);
  check_config_alone(line, result);
  check_snapshot(request.config);
  return 0;
}
