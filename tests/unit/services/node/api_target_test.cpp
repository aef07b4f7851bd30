// Unit tests of the REST API's request-target parser (services/node/core/api_target.hpp): what
// every endpoint needs is read, and every shape the API does not speak is refused.
#include <CppUTest/TestHarness.h>

#include <string>
#include <vector>

#include "stacknode/node/api_target.hpp"

using namespace stacknode::node;

TEST_GROUP(ApiTarget){};

TEST(ApiTarget, SegmentsAndQueryOfAnEndpoint) {
  const std::optional<ApiTarget> target = parse_api_target("/api/v1/users/ops/password?limit=5&after=x");
  CHECK(target.has_value());
  CHECK((target->segments == std::vector<std::string>{"users", "ops", "password"}));
  CHECK_EQUAL(2u, target->query.size());
  STRCMP_EQUAL("5", target->query.at("limit").c_str());
  STRCMP_EQUAL("x", target->query.at("after").c_str());
  // An empty value and empty pairs ("&&") are fine; a trailing slash is not a segment.
  const std::optional<ApiTarget> loose = parse_api_target("/api/v1/audit/?after=&&limit=1");
  CHECK(loose.has_value());
  CHECK((loose->segments == std::vector<std::string>{"audit"}));
  STRCMP_EQUAL("", loose->query.at("after").c_str());
}

TEST(ApiTarget, RefusesWhatTheApiDoesNotSpeak) {
  for (const char* bad : {"/healthz", "/api/v2/cluster", "/api/v1//nodes", "/api/v1/nodes/%2e%2e",
                          "/api/v1/nodes?limit", "/api/v1/nodes?a=%41", "/api/v1/a/b/c/d/e/f/g/h/i"}) {
    if (parse_api_target(bad).has_value()) FAIL(bad);
  }
  std::string many = "/api/v1/audit?";
  for (int index = 0; index <= static_cast<int>(max_api_parameters); ++index) many += "p" + std::to_string(index) + "=1&";
  CHECK_FALSE(parse_api_target(many).has_value());
}
