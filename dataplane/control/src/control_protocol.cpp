// Control protocol parsing: JSON text -> ControlRequest, strictly. Unknown keys are errors (a typo
// must not silently mean "default"), numbers must be integers in range, and the first error ends
// the parse with the path of the field that caused it. See control_protocol.hpp.
#include "stacknode/dataplane/control_protocol.hpp"

#include <boost/json.hpp>

#include <initializer_list>
#include <limits>
#include <stdexcept>

namespace stacknode::dataplane {
namespace {

namespace json = boost::json;

// A JSON nesting deeper than this is not a config: refuse it before it costs stack.
constexpr std::size_t max_json_depth = 16;

// Thrown inside the parser only, caught in parse_control_request: the message already names the
// field.
struct FieldError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Keys and values in an error come from the client, and JSON lets them hold any character. An
// error is one line (a reply, or a start-up failure in the log), so control characters, quotes and
// backslashes in client text are written as JSON escapes: "a\nb" stays `a\nb`, never two lines.
std::string escaped(std::string_view text) {
  constexpr char hex_digits[] = "0123456789abcdef";
  constexpr unsigned char first_printable = 0x20;
  constexpr unsigned char delete_character = 0x7f;
  std::string result;
  result.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      result += '\\';
      result += c;
    } else if (c == '\n') {
      result += "\\n";
    } else if (c == '\r') {
      result += "\\r";
    } else if (c == '\t') {
      result += "\\t";
    } else if (byte < first_printable || byte == delete_character) {
      result += "\\u00";
      result += hex_digits[byte >> 4];
      result += hex_digits[byte & 0x0f];
    } else {
      result += c;
    }
  }
  return result;
}

// `"text"`, escaped: how client values appear in errors.
std::string quoted(std::string_view text) { return "\"" + escaped(text) + "\""; }

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw FieldError(path + ": " + message);
}

const json::object& as_object(const json::value& value, const std::string& path) {
  if (!value.is_object()) fail(path, "must be an object");
  return value.get_object();
}

const json::array& as_array(const json::value& value, const std::string& path, std::size_t max_items) {
  if (!value.is_array()) fail(path, "must be an array");
  if (value.get_array().size() > max_items) {
    fail(path, "has " + std::to_string(value.get_array().size()) + " items, at most " +
                   std::to_string(max_items) + " are allowed");
  }
  return value.get_array();
}

std::string_view as_string(const json::value& value, const std::string& path) {
  if (!value.is_string()) fail(path, "must be a string");
  return value.get_string();
}

std::uint64_t as_integer(const json::value& value, const std::string& path, std::uint64_t low,
                         std::uint64_t high) {
  std::uint64_t number = 0;
  if (value.is_uint64()) {
    number = value.get_uint64();
  } else if (value.is_int64() && value.get_int64() >= 0) {
    number = static_cast<std::uint64_t>(value.get_int64());
  } else {
    fail(path, "must be an integer from " + std::to_string(low) + " to " + std::to_string(high));
  }
  if (number < low || number > high) {
    fail(path, "must be from " + std::to_string(low) + " to " + std::to_string(high) + ", not " +
                   std::to_string(number));
  }
  return number;
}

IpAddress as_ip(const json::value& value, const std::string& path) {
  const std::string_view text = as_string(value, path);
  const auto address = parse_ip_address(text);
  if (!address) fail(path, quoted(text) + " is not an IPv4 address");
  return *address;
}

MacAddress as_mac(const json::value& value, const std::string& path) {
  const std::string_view text = as_string(value, path);
  const auto mac = parse_mac_address(text);
  if (!mac) fail(path, quoted(text) + " is not a MAC address (02:00:00:00:00:01)");
  return *mac;
}

// Refuses keys outside `known`, naming the first one.
void only_keys(const json::object& object, const std::string& path,
               std::initializer_list<std::string_view> known) {
  for (const auto& member : object) {
    bool found = false;
    for (const auto key : known) found = found || member.key() == key;
    if (!found) fail(path + "." + escaped(member.key()), "unknown key");
  }
}

const json::value& required(const json::object& object, const std::string& path, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) fail(path + "." + std::string(key), "is required");
  return *value;
}

BackendConfig parse_backend(const json::value& value, const std::string& path) {
  const json::object& object = as_object(value, path);
  only_keys(object, path, {"address", "weight", "state"});
  BackendConfig backend;
  backend.address = as_ip(required(object, path, "address"), path + ".address");
  if (const auto* weight = object.if_contains("weight")) {
    backend.weight = static_cast<std::uint32_t>(
        as_integer(*weight, path + ".weight", min_backend_weight, max_backend_weight));
  }
  if (const auto* state = object.if_contains("state")) {
    const std::string_view text = as_string(*state, path + ".state");
    if (text == "active") {
      backend.state = BackendState::active;
    } else if (text == "draining") {
      backend.state = BackendState::draining;
    } else if (text == "down") {
      backend.state = BackendState::down;
    } else {
      fail(path + ".state", "must be \"active\", \"draining\" or \"down\", not " + quoted(text));
    }
  }
  return backend;
}

ServiceConfig parse_service(const json::value& value, const std::string& path) {
  const json::object& object = as_object(value, path);
  only_keys(object, path, {"vip", "protocol", "port", "mode", "table_size", "backends"});
  ServiceConfig service;
  service.vip.address = as_ip(required(object, path, "vip"), path + ".vip");
  const std::string_view protocol = as_string(required(object, path, "protocol"), path + ".protocol");
  if (protocol == "tcp") {
    service.vip.protocol = IpProtocol::tcp;
  } else if (protocol == "udp") {
    service.vip.protocol = IpProtocol::udp;
  } else {
    fail(path + ".protocol", "must be \"tcp\" or \"udp\", not " + quoted(protocol));
  }
  service.vip.port = static_cast<std::uint16_t>(as_integer(required(object, path, "port"), path + ".port", 1, 65535));
  if (const auto* mode = object.if_contains("mode")) {
    const std::string_view text = as_string(*mode, path + ".mode");
    if (text == "ipip") {
      service.mode = ForwardingMode::ipip;
    } else if (text == "l2_dsr") {
      service.mode = ForwardingMode::l2_dsr;
    } else {
      fail(path + ".mode", "must be \"ipip\" or \"l2_dsr\", not " + quoted(text));
    }
  }
  if (const auto* size = object.if_contains("table_size")) {
    // Primality and the backends-per-size rule are checked by build_snapshot, with the service named.
    service.maglev_table_size = static_cast<std::uint32_t>(
        as_integer(*size, path + ".table_size", min_maglev_table_size, max_maglev_table_size));
  }
  if (const auto* backends = object.if_contains("backends")) {
    const json::array& list = as_array(*backends, path + ".backends", max_backends_per_service);
    for (std::size_t index = 0; index < list.size(); ++index) {
      service.backends.push_back(parse_backend(list[index], path + ".backends[" + std::to_string(index) + "]"));
    }
  }
  return service;
}

ControlConfig parse_config(const json::value& value, const std::string& path) {
  const json::object& object = as_object(value, path);
  only_keys(object, path, {"version", "services", "owned_vips", "neighbours", "gateway", "owned_for_ms"});
  ControlConfig config;
  config.version = as_integer(required(object, path, "version"), path + ".version", 0,
                              std::numeric_limits<std::int64_t>::max());
  if (const auto* services = object.if_contains("services")) {
    const json::array& list = as_array(*services, path + ".services", max_services);
    for (std::size_t index = 0; index < list.size(); ++index) {
      config.services.push_back(parse_service(list[index], path + ".services[" + std::to_string(index) + "]"));
    }
  }
  if (const auto* vips = object.if_contains("owned_vips")) {
    const json::array& list = as_array(*vips, path + ".owned_vips", max_owned_vips);
    for (std::size_t index = 0; index < list.size(); ++index) {
      config.owned_vips.push_back(as_ip(list[index], path + ".owned_vips[" + std::to_string(index) + "]"));
    }
  }
  if (const auto* neighbours = object.if_contains("neighbours")) {
    const json::array& list = as_array(*neighbours, path + ".neighbours", max_neighbours);
    for (std::size_t index = 0; index < list.size(); ++index) {
      const std::string item = path + ".neighbours[" + std::to_string(index) + "]";
      const json::object& entry = as_object(list[index], item);
      only_keys(entry, item, {"address", "mac"});
      config.neighbours.push_back(
          {as_ip(required(entry, item, "address"), item + ".address"), as_mac(required(entry, item, "mac"), item + ".mac")});
    }
  }
  if (const auto* gateway = object.if_contains("gateway")) config.gateway = as_ip(*gateway, path + ".gateway");
  if (const auto* owned_for = object.if_contains("owned_for_ms")) {
    config.owned_for_ms = static_cast<std::uint32_t>(as_integer(*owned_for, path + ".owned_for_ms", 1, max_owned_for_ms));
  }
  return config;
}

// `text` as JSON within the size and depth limits; otherwise nullopt and `error` says why, naming
// the text as `what` ("request", "config").
std::optional<json::value> parse_json(std::string_view text, std::string_view what, std::string& error) {
  if (text.size() > max_control_request_bytes) {
    error = std::string(what) + " of " + std::to_string(text.size()) + " bytes is over the limit of " +
            std::to_string(max_control_request_bytes);
    return std::nullopt;
  }
  json::parse_options options;
  options.max_depth = max_json_depth;
  boost::system::error_code parse_error;
  json::value document = json::parse(text, parse_error, {}, options);
  if (parse_error) {
    error = "not JSON: " + parse_error.message();
    return std::nullopt;
  }
  return document;
}

}  // namespace

ControlParseResult parse_control_request(std::string_view line) {
  std::string error;
  const std::optional<json::value> document = parse_json(line, "request", error);
  if (!document) return {std::nullopt, error};
  try {
    const json::object& object = as_object(*document, "request");
    const std::string_view op = as_string(required(object, "request", "op"), "request.op");
    ControlRequest request;
    if (op == "apply") {
      only_keys(object, "request", {"op", "config"});
      request.op = ControlOp::apply;
      request.config = parse_config(required(object, "request", "config"), "config");
    } else if (op == "status" || op == "counters") {
      only_keys(object, "request", {"op"});
      request.op = op == "status" ? ControlOp::status : ControlOp::counters;
    } else if (op == "flows") {
      only_keys(object, "request", {"op", "limit"});
      request.op = ControlOp::flows;
      if (const auto* limit = object.if_contains("limit")) {
        request.flow_limit = as_integer(*limit, "request.limit", 1, max_flow_sample);
      }
    } else if (op == "renew") {
      only_keys(object, "request", {"op", "version", "for_ms"});
      request.op = ControlOp::renew;
      request.renew_version = static_cast<std::uint64_t>(as_integer(
          required(object, "request", "version"), "request.version", 0, std::numeric_limits<std::int64_t>::max()));
      request.renew_for_ms =
          static_cast<std::uint32_t>(as_integer(required(object, "request", "for_ms"), "request.for_ms", 1, max_owned_for_ms));
    } else {
      fail("request.op", "must be \"apply\", \"status\", \"counters\", \"flows\" or \"renew\", not " + quoted(op));
    }
    return {std::move(request), {}};
  } catch (const FieldError& field_error) {
    return {std::nullopt, field_error.what()};
  }
}

ControlConfigResult parse_control_config(std::string_view text) {
  std::string error;
  const std::optional<json::value> document = parse_json(text, "config", error);
  if (!document) return {std::nullopt, error};
  try {
    return {parse_config(*document, "config"), {}};
  } catch (const FieldError& field_error) {
    return {std::nullopt, field_error.what()};
  }
}

SnapshotConfig make_snapshot_config(const std::vector<PortConfig>& ports, const ControlConfig& control,
                                    std::uint8_t outer_ttl) {
  SnapshotConfig config;
  config.version = control.version;
  config.ports = ports;
  config.services = control.services;
  config.owned_vips = control.owned_vips;
  config.neighbours = control.neighbours;
  config.gateway = control.gateway;
  config.outer_ttl = outer_ttl;
  return config;
}

std::string control_error_reply(std::string_view message) {
  json::object reply;
  reply["ok"] = false;
  reply["error"] = message;
  return json::serialize(reply);
}

}  // namespace stacknode::dataplane
