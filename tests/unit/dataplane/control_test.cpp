// Unit tests of the dataplane control protocol (control_protocol.hpp): what a valid request parses
// into, field by field; the status, counters and flows requests; every refusal's exact message,
// which names the field path; the size and depth limits; make_snapshot_config() with the rack's
// ports feeding build_snapshot(); and the error reply's JSON.
#include <CppUTest/TestHarness.h>

#include <boost/json.hpp>

#include <string>

#include "rack_fixture.hpp"
#include "stacknode/dataplane/control_protocol.hpp"

using namespace stacknode::dataplane;
using namespace stacknode::dataplane::test;

namespace {

// Every key of the protocol, with values off their defaults where the protocol allows it. The
// backends are listed out of canonical order: the parser keeps the order, build_snapshot sorts.
const std::string full_apply = R"({"op":"apply","config":{
  "version": 42,
  "services": [
    {"vip": "198.18.0.100", "protocol": "tcp", "port": 80, "mode": "ipip", "table_size": 251,
     "backends": [{"address": "198.18.1.12", "weight": 3, "state": "active"},
                  {"address": "198.18.1.11", "weight": 65535, "state": "draining"},
                  {"address": "198.18.1.13", "weight": 1, "state": "down"},
                  {"address": "198.18.2.50"}]},
    {"vip": "198.18.0.100", "protocol": "udp", "port": 53,
     "backends": [{"address": "198.18.1.11"}]},
    {"vip": "198.18.0.101", "protocol": "tcp", "port": 65535, "mode": "l2_dsr", "table_size": 3,
     "backends": [{"address": "198.18.1.13", "weight": 2}]}
  ],
  "owned_vips": ["198.18.0.100", "198.18.0.101"],
  "neighbours": [{"address": "198.18.1.11", "mac": "02:00:00:00:01:11"},
                 {"address": "198.18.1.13", "mac": "02:00:00:00:01:13"},
                 {"address": "198.18.1.1", "mac": "02:00:00:00:01:FE"}],
  "gateway": "198.18.1.1"}})";

ControlRequest parse_or_fail(const std::string& line) {
  ControlParseResult result = parse_control_request(line);
  if (!result.request) FAIL(("request refused: " + result.error).c_str());
  CHECK(result.error.empty());
  return std::move(*result.request);
}

std::string error_of(const std::string& line) {
  const ControlParseResult result = parse_control_request(line);
  CHECK(!result.request.has_value());
  return result.error;
}

// An apply request whose config is `{"version":1,` + body + `}`.
std::string apply_with(const std::string& body) { return R"({"op":"apply","config":{"version":1)" + body + "}}"; }
// An apply request with one service: `{"vip":...,"protocol":"tcp",` + rest + `}`.
std::string apply_with_service(const std::string& rest) {
  return apply_with(R"(,"services":[{"vip":"198.18.0.100","protocol":"tcp",)" + rest + "}]");
}
// An apply request with one service on TCP 80 whose only backend is `{` + backend + `}`.
std::string apply_with_backend(const std::string& backend) {
  return apply_with_service(R"("port":80,"backends":[{)" + backend + "}]");
}

void check_backend(const BackendConfig& backend, const Ip4& ip, std::uint32_t weight, BackendState state) {
  CHECK(backend.address == address(ip));
  LONGS_EQUAL(weight, backend.weight);
  CHECK(backend.state == state);
}

// A request of exactly `size` bytes: `{"op":"status"}` padded with spaces, which JSON ignores.
std::string status_of_size(std::size_t size) {
  std::string line = R"({"op":"status"})";
  line.resize(size, ' ');
  return line;
}

// `{"op":"status","x":` + `depth` nested arrays + `}`: JSON nested depth + 1 deep.
std::string nested(std::size_t depth) {
  return R"({"op":"status","x":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
}

std::string backends_json(std::size_t count) {
  std::string list;
  for (std::size_t index = 0; index < count; ++index) {
    if (index > 0) list += ",";
    list += R"({"address":"10.0.)" + std::to_string(index / 256) + "." + std::to_string(index % 256) + R"("})";
  }
  return list;
}

}  // namespace

TEST_GROUP(ControlApply){};

TEST(ControlApply, FullConfigParsesIntoExactlyTheGivenValues) {
  const ControlRequest request = parse_or_fail(full_apply);
  CHECK(request.op == ControlOp::apply);
  const ControlConfig& config = request.config;
  UNSIGNED_LONGLONGS_EQUAL(42, config.version);
  LONGS_EQUAL(3, config.services.size());

  const ServiceConfig& http = config.services[0];
  CHECK(http.vip == (VipKey{address(vip_ip), IpProtocol::tcp, 80}));
  CHECK(http.mode == ForwardingMode::ipip);
  LONGS_EQUAL(251, http.maglev_table_size);
  LONGS_EQUAL(4, http.backends.size());
  check_backend(http.backends[0], backend2_ip, 3, BackendState::active);
  check_backend(http.backends[1], backend1_ip, 65535, BackendState::draining);
  check_backend(http.backends[2], backend3_ip, 1, BackendState::down);
  check_backend(http.backends[3], {198, 18, 2, 50}, 1, BackendState::active);  // defaults

  const ServiceConfig& dns = config.services[1];
  CHECK(dns.vip == (VipKey{address(vip_ip), IpProtocol::udp, 53}));
  CHECK(dns.mode == ForwardingMode::ipip);                        // default
  LONGS_EQUAL(default_maglev_table_size, dns.maglev_table_size);  // default
  LONGS_EQUAL(1, dns.backends.size());
  check_backend(dns.backends[0], backend1_ip, 1, BackendState::active);

  const ServiceConfig& dsr = config.services[2];
  CHECK(dsr.vip == (VipKey{address(other_vip_ip), IpProtocol::tcp, 65535}));
  CHECK(dsr.mode == ForwardingMode::l2_dsr);
  LONGS_EQUAL(3, dsr.maglev_table_size);
  LONGS_EQUAL(1, dsr.backends.size());
  check_backend(dsr.backends[0], backend3_ip, 2, BackendState::active);

  LONGS_EQUAL(2, config.owned_vips.size());
  CHECK(config.owned_vips[0] == address(vip_ip));
  CHECK(config.owned_vips[1] == address(other_vip_ip));
  LONGS_EQUAL(3, config.neighbours.size());
  CHECK(config.neighbours[0].address == address(backend1_ip));
  CHECK(config.neighbours[0].mac == mac(backend1_mac));
  CHECK(config.neighbours[1].address == address(backend3_ip));
  CHECK(config.neighbours[1].mac == mac(backend3_mac));
  CHECK(config.neighbours[2].address == address(gateway_ip));
  CHECK(config.neighbours[2].mac == mac(gateway_mac));  // MAC letters in either case
  CHECK(config.gateway.has_value());
  CHECK(*config.gateway == address(gateway_ip));
}

TEST(ControlApply, OnlyTheVersionIsRequired) {
  const ControlRequest request = parse_or_fail(R"({"op":"apply","config":{"version":0}})");
  CHECK(request.op == ControlOp::apply);
  UNSIGNED_LONGLONGS_EQUAL(0, request.config.version);
  CHECK(request.config.services.empty());
  CHECK(request.config.owned_vips.empty());
  CHECK(request.config.neighbours.empty());
  CHECK_FALSE(request.config.gateway.has_value());
  // Empty lists are lists, and key order does not matter.
  const ControlRequest reordered =
      parse_or_fail(R"({"config":{"services":[],"owned_vips":[],"neighbours":[],"version":7},"op":"apply"})");
  UNSIGNED_LONGLONGS_EQUAL(7, reordered.config.version);
  CHECK(reordered.config.services.empty());
}

TEST(ControlApply, RangesAreInclusive) {
  UNSIGNED_LONGLONGS_EQUAL(9223372036854775807ull,
                           parse_or_fail(R"({"op":"apply","config":{"version":9223372036854775807}})").config.version);
  LONGS_EQUAL(1, parse_or_fail(apply_with_service(R"("port":1)")).config.services[0].vip.port);
  LONGS_EQUAL(min_maglev_table_size,
              parse_or_fail(apply_with_service(R"("port":1,"table_size":3)")).config.services[0].maglev_table_size);
  LONGS_EQUAL(max_maglev_table_size, parse_or_fail(apply_with_service(R"("port":1,"table_size":4194301)"))
                                         .config.services[0]
                                         .maglev_table_size);
  LONGS_EQUAL(1, parse_or_fail(apply_with_backend(R"("address":"198.18.1.11","weight":1)"))
                     .config.services[0]
                     .backends[0]
                     .weight);
}

TEST(ControlApply, AsManyBackendsAsAServiceMayHave) {
  const ControlRequest request =
      parse_or_fail(apply_with_service(R"("port":80,"backends":[)" + backends_json(max_backends_per_service) + "]"));
  LONGS_EQUAL(max_backends_per_service, request.config.services[0].backends.size());
  CHECK(request.config.services[0].backends[4095].address == IpAddress::ipv4(10, 0, 15, 255));
  STRCMP_EQUAL("config.services[0].backends: has 4097 items, at most 4096 are allowed",
               error_of(apply_with_service(R"("port":80,"backends":[)" +
                                           backends_json(max_backends_per_service + 1) + "]"))
                   .c_str());
}

TEST_GROUP(ControlOps){};

TEST(ControlOps, StatusAndCountersTakeNoArguments) {
  CHECK(parse_or_fail(R"({"op":"status"})").op == ControlOp::status);
  CHECK(parse_or_fail(R"({"op":"counters"})").op == ControlOp::counters);
  CHECK(parse_or_fail(" {\"op\" : \"counters\"}\n").op == ControlOp::counters);  // whitespace, the line's newline
  STRCMP_EQUAL("request.limit: unknown key", error_of(R"({"op":"status","limit":5})").c_str());
  STRCMP_EQUAL("request.config: unknown key", error_of(R"({"op":"counters","config":{"version":1}})").c_str());
}

TEST(ControlOps, FlowsLimitDefaultsAndRange) {
  const ControlRequest plain = parse_or_fail(R"({"op":"flows"})");
  CHECK(plain.op == ControlOp::flows);
  LONGS_EQUAL(default_flow_sample, plain.flow_limit);
  LONGS_EQUAL(100, plain.flow_limit);
  LONGS_EQUAL(7, parse_or_fail(R"({"op":"flows","limit":7})").flow_limit);
  LONGS_EQUAL(1, parse_or_fail(R"({"op":"flows","limit":1})").flow_limit);
  LONGS_EQUAL(max_flow_sample, parse_or_fail(R"({"op":"flows","limit":10000})").flow_limit);
  STRCMP_EQUAL("request.limit: must be from 1 to 10000, not 0", error_of(R"({"op":"flows","limit":0})").c_str());
  STRCMP_EQUAL("request.limit: must be from 1 to 10000, not 10001",
               error_of(R"({"op":"flows","limit":10001})").c_str());
  STRCMP_EQUAL("request.limit: must be an integer from 1 to 10000", error_of(R"({"op":"flows","limit":-5})").c_str());
  STRCMP_EQUAL("request.limit: must be an integer from 1 to 10000", error_of(R"({"op":"flows","limit":2.5})").c_str());
  STRCMP_EQUAL("request.limit: must be an integer from 1 to 10000", error_of(R"({"op":"flows","limit":"5"})").c_str());
  STRCMP_EQUAL("request.config: unknown key", error_of(R"({"op":"flows","config":{}})").c_str());
}

TEST(ControlOps, RenewNamesTheVersionAndHowLong) {
  const ControlRequest renew = parse_or_fail(R"({"op":"renew","version":12,"for_ms":1200})");
  CHECK(renew.op == ControlOp::renew);
  LONGS_EQUAL(12, renew.renew_version);
  LONGS_EQUAL(1200, renew.renew_for_ms);
  LONGS_EQUAL(max_owned_for_ms, parse_or_fail(R"({"op":"renew","version":0,"for_ms":600000})").renew_for_ms);
  STRCMP_EQUAL("request.version: is required", error_of(R"({"op":"renew","for_ms":5})").c_str());
  STRCMP_EQUAL("request.for_ms: is required", error_of(R"({"op":"renew","version":1})").c_str());
  STRCMP_EQUAL("request.for_ms: must be from 1 to 600000, not 0", error_of(R"({"op":"renew","version":1,"for_ms":0})").c_str());
  STRCMP_EQUAL("request.for_ms: must be from 1 to 600000, not 600001",
               error_of(R"({"op":"renew","version":1,"for_ms":600001})").c_str());
  STRCMP_EQUAL("request.config: unknown key", error_of(R"({"op":"renew","version":1,"for_ms":5,"config":{}})").c_str());
}

TEST(ControlOps, OwnedForMsIsOptionalAndBounded) {
  CHECK_FALSE(parse_or_fail(R"({"op":"apply","config":{"version":1}})").config.owned_for_ms.has_value());
  const ControlRequest held = parse_or_fail(R"({"op":"apply","config":{"version":1,"owned_for_ms":1200}})");
  CHECK(held.config.owned_for_ms.has_value());
  LONGS_EQUAL(1200, *held.config.owned_for_ms);
  STRCMP_EQUAL("config.owned_for_ms: must be from 1 to 600000, not 0",
               error_of(R"({"op":"apply","config":{"version":1,"owned_for_ms":0}})").c_str());
  STRCMP_EQUAL("config.owned_for_ms: must be an integer from 1 to 600000",
               error_of(R"({"op":"apply","config":{"version":1,"owned_for_ms":"1s"}})").c_str());
}

TEST_GROUP(ControlErrors){};

TEST(ControlErrors, EveryRefusalNamesTheFieldPath) {
  struct Case {
    const char* description;
    std::string request;
    const char* expected;
  };
  const Case cases[] = {
      // The request itself.
      {"array request", "[]", "request: must be an object"},
      {"string request", R"("apply")", "request: must be an object"},
      {"null request", "null", "request: must be an object"},
      {"no op", R"({"config":{"version":1}})", "request.op: is required"},
      {"numeric op", R"({"op":1})", "request.op: must be a string"},
      {"unknown op", R"({"op":"reboot"})",
       R"(request.op: must be "apply", "status", "counters", "flows" or "renew", not "reboot")"},
      {"op letter case", R"({"op":"Status"})",
       R"(request.op: must be "apply", "status", "counters", "flows" or "renew", not "Status")"},
      {"apply without config", R"({"op":"apply"})", "request.config: is required"},
      {"unknown request key", R"({"op":"apply","config":{"version":1},"dry_run":true})", "request.dry_run: unknown key"},
      {"config not an object", R"({"op":"apply","config":[]})", "config: must be an object"},
      // The config object.
      {"no version", R"({"op":"apply","config":{"services":[]}})", "config.version: is required"},
      {"unknown config key", apply_with(R"(,"colour":"blue")"), "config.colour: unknown key"},
      {"version as text", R"({"op":"apply","config":{"version":"7"}})",
       "config.version: must be an integer from 0 to 9223372036854775807"},
      {"negative version", R"({"op":"apply","config":{"version":-1}})",
       "config.version: must be an integer from 0 to 9223372036854775807"},
      {"fractional version", R"({"op":"apply","config":{"version":1.5}})",
       "config.version: must be an integer from 0 to 9223372036854775807"},
      {"version in exponent form", R"({"op":"apply","config":{"version":1e3}})",
       "config.version: must be an integer from 0 to 9223372036854775807"},
      {"version over int64", R"({"op":"apply","config":{"version":9223372036854775808}})",
       "config.version: must be from 0 to 9223372036854775807, not 9223372036854775808"},
      {"version over uint64", R"({"op":"apply","config":{"version":18446744073709551616}})",
       "config.version: must be an integer from 0 to 9223372036854775807"},
      {"services not a list", apply_with(R"(,"services":{})"), "config.services: must be an array"},
      {"service not an object", apply_with(R"(,"services":[5])"), "config.services[0]: must be an object"},
      {"owned VIP not a string", apply_with(R"(,"owned_vips":["198.18.0.100",1])"),
       "config.owned_vips[1]: must be a string"},
      {"bad owned VIP", apply_with(R"(,"owned_vips":["198.18.0.1000"])"),
       R"(config.owned_vips[0]: "198.18.0.1000" is not an IPv4 address)"},
      {"bad gateway", apply_with(R"(,"gateway":"gateway.local")"),
       R"(config.gateway: "gateway.local" is not an IPv4 address)"},
      {"gateway null", apply_with(R"(,"gateway":null)"), "config.gateway: must be a string"},
      {"neighbours not a list", apply_with(R"(,"neighbours":"198.18.1.11")"), "config.neighbours: must be an array"},
      {"neighbour not an object", apply_with(R"(,"neighbours":[["198.18.1.11","02:00:00:00:01:11"]])"),
       "config.neighbours[0]: must be an object"},
      {"neighbour without MAC", apply_with(R"(,"neighbours":[{"address":"198.18.1.11"}])"),
       "config.neighbours[0].mac: is required"},
      {"neighbour without address", apply_with(R"(,"neighbours":[{"mac":"02:00:00:00:01:11"}])"),
       "config.neighbours[0].address: is required"},
      {"unknown neighbour key", apply_with(R"(,"neighbours":[{"address":"198.18.1.11","mac":"02:00:00:00:01:11","port":1}])"),
       "config.neighbours[0].port: unknown key"},
      {"short MAC", apply_with(R"(,"neighbours":[{"address":"198.18.1.11","mac":"02:00:00:00:01"}])"),
       R"(config.neighbours[0].mac: "02:00:00:00:01" is not a MAC address (02:00:00:00:00:01))"},
      {"MAC with dashes",
       apply_with(R"(,"neighbours":[{"address":"198.18.1.11","mac":"02:00:00:00:01:11"},)"
                  R"({"address":"198.18.1.12","mac":"02-00-00-00-01-12"}])"),
       R"(config.neighbours[1].mac: "02-00-00-00-01-12" is not a MAC address (02:00:00:00:00:01))"},
      {"bad neighbour address", apply_with(R"(,"neighbours":[{"address":"198.18.1","mac":"02:00:00:00:01:11"}])"),
       R"(config.neighbours[0].address: "198.18.1" is not an IPv4 address)"},
      // A service.
      {"unknown service key", apply_with_service(R"("port":80,"colour":"blue")"), "config.services[0].colour: unknown key"},
      {"service without VIP", apply_with(R"(,"services":[{"protocol":"tcp","port":80}])"),
       "config.services[0].vip: is required"},
      {"service without protocol", apply_with(R"(,"services":[{"vip":"198.18.0.100","port":80}])"),
       "config.services[0].protocol: is required"},
      {"service without port", apply_with_service(R"("mode":"ipip")"), "config.services[0].port: is required"},
      {"IPv6 VIP", apply_with(R"(,"services":[{"vip":"2001:db8::1","protocol":"tcp","port":80}])"),
       R"(config.services[0].vip: "2001:db8::1" is not an IPv4 address)"},
      {"VIP with leading zero", apply_with(R"(,"services":[{"vip":"198.018.0.100","protocol":"tcp","port":80}])"),
       R"(config.services[0].vip: "198.018.0.100" is not an IPv4 address)"},
      {"bad protocol", apply_with(R"(,"services":[{"vip":"198.18.0.100","protocol":"sctp","port":80}])"),
       R"(config.services[0].protocol: must be "tcp" or "udp", not "sctp")"},
      {"protocol letter case", apply_with(R"(,"services":[{"vip":"198.18.0.100","protocol":"TCP","port":80}])"),
       R"(config.services[0].protocol: must be "tcp" or "udp", not "TCP")"},
      {"protocol as number", apply_with(R"(,"services":[{"vip":"198.18.0.100","protocol":6,"port":80}])"),
       "config.services[0].protocol: must be a string"},
      {"port 0", apply_with_service(R"("port":0)"), "config.services[0].port: must be from 1 to 65535, not 0"},
      {"port 65536", apply_with_service(R"("port":65536)"), "config.services[0].port: must be from 1 to 65535, not 65536"},
      {"negative port", apply_with_service(R"("port":-80)"), "config.services[0].port: must be an integer from 1 to 65535"},
      {"fractional port", apply_with_service(R"("port":80.5)"), "config.services[0].port: must be an integer from 1 to 65535"},
      {"integral float port", apply_with_service(R"("port":80.0)"),
       "config.services[0].port: must be an integer from 1 to 65535"},
      {"port as text", apply_with_service(R"("port":"80")"), "config.services[0].port: must be an integer from 1 to 65535"},
      {"port true", apply_with_service(R"("port":true)"), "config.services[0].port: must be an integer from 1 to 65535"},
      {"bad mode", apply_with_service(R"("port":80,"mode":"dsr")"),
       R"(config.services[0].mode: must be "ipip" or "l2_dsr", not "dsr")"},
      {"table size 2", apply_with_service(R"("port":80,"table_size":2)"),
       "config.services[0].table_size: must be from 3 to 4194301, not 2"},
      {"table size over the limit", apply_with_service(R"("port":80,"table_size":4194302)"),
       "config.services[0].table_size: must be from 3 to 4194301, not 4194302"},
      {"backends not a list", apply_with_service(R"("port":80,"backends":{"address":"198.18.1.11"})"),
       "config.services[0].backends: must be an array"},
      {"backend as text", apply_with_service(R"("port":80,"backends":["198.18.1.11"])"),
       "config.services[0].backends[0]: must be an object"},
      // A backend.
      {"backend without address", apply_with_backend(R"("weight":2)"),
       "config.services[0].backends[0].address: is required"},
      {"bad backend address", apply_with_backend(R"("address":"198.18.1.256")"),
       R"(config.services[0].backends[0].address: "198.18.1.256" is not an IPv4 address)"},
      {"unknown backend key", apply_with_backend(R"("address":"198.18.1.11","healthy":true)"),
       "config.services[0].backends[0].healthy: unknown key"},
      {"weight 0", apply_with_backend(R"("address":"198.18.1.11","weight":0)"),
       "config.services[0].backends[0].weight: must be from 1 to 65535, not 0"},
      {"weight 65536", apply_with_backend(R"("address":"198.18.1.11","weight":65536)"),
       "config.services[0].backends[0].weight: must be from 1 to 65535, not 65536"},
      {"negative weight", apply_with_backend(R"("address":"198.18.1.11","weight":-1)"),
       "config.services[0].backends[0].weight: must be an integer from 1 to 65535"},
      {"fractional weight", apply_with_backend(R"("address":"198.18.1.11","weight":0.5)"),
       "config.services[0].backends[0].weight: must be an integer from 1 to 65535"},
      {"bad state", apply_with_backend(R"("address":"198.18.1.11","state":"up")"),
       R"(config.services[0].backends[0].state: must be "active", "draining" or "down", not "up")"},
      {"state as bool", apply_with_backend(R"("address":"198.18.1.11","state":false)"),
       "config.services[0].backends[0].state: must be a string"},
      // Deeper indexes: the path counts from 0 at every level, and the first error wins.
      {"second service's third backend",
       apply_with(R"(,"services":[{"vip":"198.18.0.100","protocol":"tcp","port":80},)"
                  R"({"vip":"198.18.0.100","protocol":"udp","port":53,"backends":[)"
                  R"({"address":"198.18.1.11"},{"address":"198.18.1.12"},{"address":"198.18.1.13","weight":0}]},)"
                  R"({"vip":"bad","protocol":"tcp","port":81}])"),
       "config.services[1].backends[2].weight: must be from 1 to 65535, not 0"},
  };
  for (const Case& test_case : cases) {
    const std::string error = error_of(test_case.request);
    if (error != test_case.expected) {
      FAIL((std::string(test_case.description) + ": expected \"" + test_case.expected + "\", got \"" + error + "\"")
               .c_str());
    }
  }
}

TEST(ControlErrors, NotJson) {
  for (const char* line : {"", "{", R"({"op":)", R"({"op":"status"} x)", "{'op':'status'}", R"({"op":"status",})",
                           "apply", R"({"op":"\ud800"})"}) {
    const std::string error = error_of(line);
    if (error.rfind("not JSON: ", 0) != 0) FAIL((std::string(line) + ": got \"" + error + "\"").c_str());
  }
  STRCMP_EQUAL("not JSON: incomplete JSON", error_of(R"({"op":)").c_str());
  STRCMP_EQUAL("not JSON: extra data", error_of(R"({"op":"status"} {"op":"status"})").c_str());
}

TEST(ControlErrors, NestingDepthIsLimited) {
  // 16 levels (the request object and 15 arrays) are JSON the parser reads, then refuses by name.
  STRCMP_EQUAL("request.x: unknown key", error_of(nested(15)).c_str());
  STRCMP_EQUAL("not JSON: too deep", error_of(nested(16)).c_str());
  STRCMP_EQUAL("not JSON: too deep", error_of(nested(100000)).c_str());
  STRCMP_EQUAL("not JSON: too deep",
               parse_control_config(R"({"version":1,"x":)" + std::string(100000, '[')).error.c_str());
}

TEST(ControlErrors, RequestSizeIsLimited) {
  CHECK(parse_or_fail(status_of_size(max_control_request_bytes)).op == ControlOp::status);
  STRCMP_EQUAL("request of 8388609 bytes is over the limit of 8388608",
               error_of(status_of_size(max_control_request_bytes + 1)).c_str());
  const ControlConfigResult config = parse_control_config(std::string(max_control_request_bytes + 1, ' '));
  CHECK_FALSE(config.config.has_value());
  STRCMP_EQUAL("config of 8388609 bytes is over the limit of 8388608", config.error.c_str());
}

TEST(ControlErrors, ClientTextInAnErrorStaysOnOneLine) {
  // Keys and values are echoed with JSON escapes, so an error never spans lines (it may go to a
  // log line) and a quote inside a quoted value cannot end it early.
  STRCMP_EQUAL(R"(request.a\nb: unknown key)", error_of(R"({"op":"status","a\nb":1})").c_str());
  STRCMP_EQUAL(R"(request.op: must be "apply", "status", "counters", "flows" or "renew", not "re\"boot\r\n\\\t\u0001\u007f")",
               error_of(R"({"op":"re\"boot\r\n\\\t\u0001\u007f"})").c_str());
  STRCMP_EQUAL(R"(config.gateway: "198.18.1.1\n" is not an IPv4 address)",
               error_of(apply_with(R"(,"gateway":"198.18.1.1\n")")).c_str());
  STRCMP_EQUAL(R"(config.services[0].vip: "\u0000" is not an IPv4 address)",
               error_of(apply_with(R"(,"services":[{"vip":"\u0000","protocol":"tcp","port":80}])")).c_str());
  // Non-ASCII text is left as it is (the parser has checked it is UTF-8).
  STRCMP_EQUAL("config.services[0].mode: must be \"ipip\" or \"l2_dsr\", not \"d\xc3\xa9j\xc3\xa0\"",
               error_of(apply_with_service(R"("port":80,"mode":"déjà")")).c_str());
}

TEST_GROUP(ControlConfigText){};

TEST(ControlConfigText, ParsesTheConfigObjectAlone) {
  const ControlConfigResult result = parse_control_config(
      R"({"version":3,"services":[{"vip":"198.18.0.100","protocol":"udp","port":53,)"
      R"("backends":[{"address":"198.18.1.11"}]}],)"
      R"("owned_vips":["198.18.0.100"],"gateway":"198.18.1.1"})");
  CHECK(result.config.has_value());
  CHECK(result.error.empty());
  UNSIGNED_LONGLONGS_EQUAL(3, result.config->version);
  LONGS_EQUAL(1, result.config->services.size());
  CHECK(result.config->services[0].vip == (VipKey{address(vip_ip), IpProtocol::udp, 53}));
  check_backend(result.config->services[0].backends[0], backend1_ip, 1, BackendState::active);
  CHECK(*result.config->gateway == address(gateway_ip));
  // Errors name the fields from "config", as in an apply request; a whole request is not a config.
  STRCMP_EQUAL("config.version: is required", parse_control_config("{}").error.c_str());
  STRCMP_EQUAL("config.op: unknown key", parse_control_config(R"({"op":"apply","config":{"version":1}})").error.c_str());
  STRCMP_EQUAL("config: must be an object", parse_control_config("[1]").error.c_str());
  STRCMP_EQUAL("not JSON: incomplete JSON", parse_control_config("").error.c_str());
  CHECK_FALSE(parse_control_config(R"({"version":1,"services":[{"vip":"198.18.0.100"}]})").config.has_value());
}

TEST_GROUP(ControlSnapshot){};

TEST(ControlSnapshot, MakeSnapshotConfigCombinesPortsAndControlConfig) {
  const ControlConfig control = parse_or_fail(full_apply).config;
  const std::vector<PortConfig> ports = rack_config().ports;
  const SnapshotConfig config = make_snapshot_config(ports, control, 32);
  UNSIGNED_LONGLONGS_EQUAL(42, config.version);
  LONGS_EQUAL(32, config.outer_ttl);
  LONGS_EQUAL(2, config.ports.size());
  STRCMP_EQUAL("dpf0", config.ports[0].name.c_str());
  CHECK(config.ports[0].front && !config.ports[0].service);
  CHECK(config.ports[0].mac == mac(front_mac));
  STRCMP_EQUAL("dps0", config.ports[1].name.c_str());
  CHECK(config.ports[1].service);
  CHECK(config.ports[1].addresses == std::vector<IpAddress>{address(outer_source_ip)});
  LONGS_EQUAL(3, config.services.size());
  for (std::size_t index = 0; index < config.services.size(); ++index) {
    CHECK(config.services[index].vip == control.services[index].vip);
    CHECK(config.services[index].mode == control.services[index].mode);
    LONGS_EQUAL(control.services[index].maglev_table_size, config.services[index].maglev_table_size);
    LONGS_EQUAL(control.services[index].backends.size(), config.services[index].backends.size());
  }
  CHECK(config.owned_vips == control.owned_vips);
  LONGS_EQUAL(3, config.neighbours.size());
  CHECK(config.neighbours[2].address == address(gateway_ip) && config.neighbours[2].mac == mac(gateway_mac));
  CHECK(config.gateway == control.gateway);
}

TEST(ControlSnapshot, ParsedConfigBuildsTheSnapshotItDescribes) {
  const auto snapshot = build_or_fail(make_snapshot_config(rack_config().ports, parse_or_fail(full_apply).config, 32));
  UNSIGNED_LONGLONGS_EQUAL(42, snapshot->version());
  LONGS_EQUAL(32, snapshot->outer_ttl());
  LONGS_EQUAL(3, snapshot->services().size());
  const Service* http = snapshot->find_service({address(vip_ip), IpProtocol::tcp, 80});
  CHECK(http != nullptr);
  CHECK(http->mode == ForwardingMode::ipip);
  LONGS_EQUAL(251, http->table_size);
  LONGS_EQUAL(4, http->backend_count);
  LONGS_EQUAL(2, http->active_backends);
  const auto backends = snapshot->backends_of(*http);  // canonical order now
  CHECK(backends[0].address == address(backend1_ip));
  LONGS_EQUAL(65535, backends[0].weight);
  CHECK(backends[0].state == BackendState::draining);
  CHECK(backends[0].mac_known && backends[0].mac == mac(backend1_mac));
  CHECK(backends[1].address == address(backend2_ip));
  LONGS_EQUAL(3, backends[1].weight);
  CHECK(backends[1].mac_known && backends[1].mac == mac(gateway_mac));  // no neighbour entry: the gateway's
  CHECK(backends[2].state == BackendState::down);
  CHECK(backends[3].address == IpAddress::ipv4(198, 18, 2, 50));
  const Service* dsr = snapshot->find_service({address(other_vip_ip), IpProtocol::tcp, 65535});
  CHECK(dsr != nullptr);
  CHECK(dsr->mode == ForwardingMode::l2_dsr);
  LONGS_EQUAL(3, snapshot->maglev_entries(*dsr).size());
  CHECK(snapshot->find_service({address(vip_ip), IpProtocol::udp, 53}) != nullptr);
  CHECK(snapshot->owns_vip(address(vip_ip)));
  CHECK(snapshot->owns_vip(address(other_vip_ip)));
}

TEST(ControlSnapshot, WhatTheParserLeavesToTheBuilderIsRefusedThere) {
  // A table size in range but not prime parses; build_snapshot refuses it, naming the service.
  const ControlConfig control = parse_or_fail(apply_with_service(R"("port":80,"table_size":100)")).config;
  const SnapshotBuildResult result = build_snapshot(make_snapshot_config(rack_config().ports, control, default_outer_ttl));
  CHECK(result.snapshot == nullptr);
  STRCMP_EQUAL(
      "services[0] (198.18.0.100 tcp 80): Maglev table size 100 is not a prime (use a prime such as 65537, 131071 or 262139)",
      result.error.c_str());
}

TEST_GROUP(ControlReply){};

TEST(ControlReply, ErrorReplyIsOneLineOfJsonWithTheMessage) {
  const std::string message = "config.gateway: \"x\" is\nnot \\ an address\t\x01";
  const std::string reply = control_error_reply(message);
  STRCMP_EQUAL(R"({"ok":false,"error":"config.gateway: \"x\" is\nnot \\ an address\t\u0001"})", reply.c_str());
  CHECK(reply.find('\n') == std::string::npos);
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(reply, error);
  CHECK_FALSE(error);
  const boost::json::object& object = parsed.as_object();
  LONGS_EQUAL(2, object.size());
  CHECK(object.at("ok").is_bool() && !object.at("ok").as_bool());
  STRCMP_EQUAL(message.c_str(), std::string(object.at("error").as_string()).c_str());
  STRCMP_EQUAL(R"({"ok":false,"error":""})", control_error_reply("").c_str());
}
