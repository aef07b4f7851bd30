// Unit tests of services/common config: typed look-ups, defaults, errors naming file:line and key,
// and the report of settings nobody read.
#include <CppUTest/TestHarness.h>

#include <string>

#include "stacknode/common/config.hpp"

using stacknode::config::ConfigError;
using stacknode::config::Document;

namespace {
// Returns the message of the ConfigError that `action` throws, or "" if it throws none.
template <typename Action>
std::string error_of(Action action) {
  try {
    action();
  } catch (const ConfigError& error) {
    return error.what();
  }
  return "";
}
bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
}  // namespace

TEST_GROUP(Config){};

TEST(Config, TypedValuesAndDefaults) {
  auto document = Document::load_string(
      "web: { threads = 4; ratio = 0.5; name = \"front\"; tls = true; big = 5000000000L;\n"
      "       hosts = [\"a\", \"b\"]; };",
      "node.cfg");
  auto web = document->root().section("web");
  LONGS_EQUAL(4, web.get_int("threads", 1));
  DOUBLES_EQUAL(0.5, web.get_double("ratio", 0), 1e-12);
  DOUBLES_EQUAL(4.0, web.get_double("threads", 0), 1e-12);  // an integer is a fine number
  STRCMP_EQUAL("front", web.get_string("name", "x").c_str());
  CHECK_TRUE(web.get_bool("tls", false));
  CHECK(5000000000LL == web.get_int("big", 0));
  CHECK(web.get_strings("hosts") == (std::vector<std::string>{"a", "b"}));
  LONGS_EQUAL(7, web.get_int("absent", 7));
  STRCMP_EQUAL("dflt", document->root().section("nothing").get_string("x", "dflt").c_str());
}

TEST(Config, WrongTypeNamesFileLineAndKey) {
  auto document = Document::load_string("log: { level = \"info\"; };\nweb: {\n  threads = \"four\";\n};", "node.cfg");
  const auto message = error_of([&] { document->root().section("web").get_int("threads", 1); });
  CHECK_TRUE(contains(message, "node.cfg:3"));
  CHECK_TRUE(contains(message, "web.threads"));
  CHECK_TRUE(contains(message, "expected an integer, found a string"));
}

TEST(Config, OutOfRangeIsAnError) {
  auto document = Document::load_string("web: { threads = 5000; };", "node.cfg");
  const auto message = error_of([&] { document->root().section("web").get_int("threads", 1, 0, 256); });
  CHECK_TRUE(contains(message, "web.threads"));
  CHECK_TRUE(contains(message, "out of range [0, 256]"));
}

TEST(Config, SyntaxErrorNamesLine) {
  const auto message = error_of([] { Document::load_string("a = 1;\nb = ;\n", "bad.cfg"); });
  CHECK_TRUE(contains(message, "bad.cfg:2: syntax error"));
}

TEST(Config, AWideIntegerWithoutLSuffixIsRefusedNotTruncated) {
  // libconfig 1.5 would read this as 1588561939 without a word.
  const auto message = error_of([] { Document::load_string("a = 1;\nnode_id = 8245050306693139;\n", "id.cfg"); });
  CHECK_TRUE(contains(message, "id.cfg:2: integer 8245050306693139 does not fit 32 bits"));
  CHECK_TRUE(contains(message, "8245050306693139L"));
  CHECK_TRUE(contains(error_of([] { Document::load_string("x = 0x1FFFFFFFF;", "h.cfg"); }), "h.cfg:1: integer 0x1FFFFFFFF"));
  CHECK_TRUE(contains(error_of([] { Document::load_string("x = 2147483648;", "e.cfg"); }), "e.cfg:1:"));
  // With the suffix it is read whole; 32-bit values, floats, strings and comments are left alone.
  auto document = Document::load_string(
      "wide = 8245050306693139L;\nmax = 2147483647;\nhex = 0xFFFFFFFF;\nf = 12345678901.5;\ne = 1e12;\n"
      "s = \"99999999999\";\n# 99999999999\n// 99999999999\n/* 99999999999 */\nname_99999999999 = 1;\n",
      "ok.cfg");
  CHECK_EQUAL(8245050306693139LL, document->root().get_int("wide", 0, 0, INT64_MAX));
  CHECK_EQUAL(2147483647LL, document->root().get_int("max", 0, 0, INT64_MAX));
  STRCMP_EQUAL("99999999999", document->root().get_string("s", "").c_str());
}

TEST(Config, MissingFileIsAClearError) {
  const auto message = error_of([] { Document::load_file("/nonexistent/stacknode/node.cfg"); });
  CHECK_TRUE(contains(message, "cannot read /nonexistent/stacknode/node.cfg: no such file"));
}

TEST(Config, ListOfGroups) {
  auto document = Document::load_string(
      "web: { routes = ( { prefix = \"/a/\"; pool = \"p\"; }, { prefix = \"/b/\"; pool = \"q\"; } ); };",
      "node.cfg");
  auto routes = document->root().section("web").sections("routes");
  LONGS_EQUAL(2, routes.size());
  STRCMP_EQUAL("/b/", routes[1].get_string("prefix", "").c_str());
  const auto message = error_of([&] { routes[1].fail("pool", "no such pool"); });
  CHECK_TRUE(contains(message, "web.routes[1].pool: no such pool"));
}

TEST(Config, ListElementThatIsNotAGroup) {
  auto document = Document::load_string("web: { routes = ( 1 ); };", "node.cfg");
  const auto message = error_of([&] { document->root().section("web").sections("routes"); });
  CHECK_TRUE(contains(message, "web.routes[0]: expected a group"));
}

TEST(Config, UnreadSettingsAreReported) {
  auto document = Document::load_string(
      "web: {\n  threads = 2;\n  thraeds = 3;\n};\nextra = 1;\n", "node.cfg");
  document->root().section("web").get_int("threads", 1);
  const auto unread = document->unread_settings();
  LONGS_EQUAL(2, unread.size());
  STRCMP_EQUAL("node.cfg:3: web.thraeds", unread[0].c_str());
  STRCMP_EQUAL("node.cfg:5: extra", unread[1].c_str());
}

TEST(Config, ReadingADefaultedKeyMarksNothing) {
  auto document = Document::load_string("web: { a = 1; };", "node.cfg");
  document->root().section("web").get_int("b", 0);
  LONGS_EQUAL(1, document->unread_settings().size());
}
