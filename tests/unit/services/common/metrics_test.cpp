// Unit tests of services/common metrics: counters, gauges, histograms, labels and the exact
// Prometheus text exposition (format 0.0.4). promtool's own check is a component test.
#include <CppUTest/TestHarness.h>

#include <stdexcept>
#include <string>

#include "stacknode/common/metrics.hpp"

using stacknode::metrics::Registry;

namespace {
bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
}  // namespace

TEST_GROUP(Metrics){};

TEST(Metrics, CounterWithLabelsIsExposed) {
  Registry registry;
  registry.counter("web_requests_total", "Requests.", {{"code", "2xx"}}).inc();
  registry.counter("web_requests_total", "Requests.", {{"code", "2xx"}}).inc(2);
  registry.counter("web_requests_total", "Requests.", {{"code", "5xx"}}).inc();
  STRCMP_EQUAL(
      "# HELP web_requests_total Requests.\n"
      "# TYPE web_requests_total counter\n"
      "web_requests_total{code=\"2xx\"} 3\n"
      "web_requests_total{code=\"5xx\"} 1\n",
      registry.expose().c_str());
}

TEST(Metrics, GaugeAndCallback) {
  Registry registry;
  auto& open = registry.gauge("open_connections", "Open.");
  open.inc(5);
  open.dec(2);
  registry.gauge_callback("queue_depth", "Depth.", [] { return 42.0; });
  const auto text = registry.expose();
  CHECK_TRUE(contains(text, "open_connections 3\n"));
  CHECK_TRUE(contains(text, "queue_depth 42\n"));
}

TEST(Metrics, HistogramBucketsAreCumulative) {
  Registry registry;
  auto& latency = registry.histogram("latency_seconds", "Latency.", {0.1, 1.0});
  latency.observe(0.25);
  latency.observe(0.5);
  latency.observe(0.5);
  latency.observe(7);
  STRCMP_EQUAL(
      "# HELP latency_seconds Latency.\n"
      "# TYPE latency_seconds histogram\n"
      "latency_seconds_bucket{le=\"0.1\"} 0\n"
      "latency_seconds_bucket{le=\"1\"} 3\n"
      "latency_seconds_bucket{le=\"+Inf\"} 4\n"
      "latency_seconds_sum 8.25\n"
      "latency_seconds_count 4\n",
      registry.expose().c_str());
}

TEST(Metrics, LabelValuesAndHelpAreEscaped) {
  Registry registry;
  registry.counter("odd_total", "Line one\nback\\slash", {{"path", "a\"b\\c\nd"}}).inc();
  const auto text = registry.expose();
  CHECK_TRUE(contains(text, "# HELP odd_total Line one\\nback\\\\slash\n"));
  CHECK_TRUE(contains(text, "odd_total{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(Metrics, BadNamesAndTypeClashesAreRefused) {
  Registry registry;
  CHECK_THROWS(std::invalid_argument, registry.counter("9starts_with_digit", "x"));
  CHECK_THROWS(std::invalid_argument, registry.counter("has-dash", "x"));
  CHECK_THROWS(std::invalid_argument, registry.counter("ok_total", "x", {{"__reserved", "v"}}));
  CHECK_THROWS(std::invalid_argument, registry.histogram("h", "x", {2.0, 1.0}));
  registry.counter("same_name", "x");
  CHECK_THROWS(std::invalid_argument, registry.gauge("same_name", "x"));
}

TEST(Metrics, SameNameAndLabelsIsTheSameObject) {
  Registry registry;
  auto& first = registry.counter("c_total", "x", {{"a", "1"}});
  auto& second = registry.counter("c_total", "x", {{"a", "1"}});
  POINTERS_EQUAL(&first, &second);
}

TEST(Metrics, BuildInfo) {
  Registry registry;
  stacknode::metrics::register_build_info(registry, "stacknode_web");
  const auto text = registry.expose();
  CHECK_TRUE(contains(text, "# TYPE stacknode_web_build_info gauge\n"));
  CHECK_TRUE(contains(text, "stacknode_web_build_info{version=\""));
  CHECK_TRUE(contains(text, "\"} 1\n"));
}
