// db_client_bench: one writer through the C++ dqlite client (services/db/client), no HTTP, so
// that tools/bench/db can tell the API's cost from the client's and the cluster's. Writes
// --writes single INSERTs of a --key-bytes key and a --value-bytes value (dqlite-benchmark's
// kvwrite sizes by default) into a fresh table of --database, one after the other, and prints
// one JSON line: {"cps":..,"p50_ms":..,"p99_ms":..,"errors":..}.
//
// Usage: db_client_bench --address HOST:PORT --database NAME [--writes N] [--key-bytes N]
//                        [--value-bytes N] [--tls-dir DIR]
// --tls-dir: the cluster's wire port runs mutual TLS; ca.crt, node.crt and node.key are in DIR.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "stacknode/db/client.hpp"

namespace {

using namespace stacknode::db;
using Clock = std::chrono::steady_clock;

constexpr long default_writes = 2000;
constexpr long default_key_bytes = 32;     // kvwrite's default
constexpr long default_value_bytes = 1024;  // kvwrite's default
constexpr long max_writes = 10'000'000;
constexpr long max_field_bytes = 1 << 20;

struct Options {
  std::string address;
  std::string database;
  long writes = default_writes;
  long key_bytes = default_key_bytes;
  long value_bytes = default_value_bytes;
  std::string tls_dir;
};

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "db_client_bench: %s\nusage: db_client_bench --address HOST:PORT --database NAME [--writes N] "
               "[--key-bytes N] [--value-bytes N] [--tls-dir DIR]\n",
               problem);
  std::exit(2);
}

long number(const char* text, long low, long high) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < low || value > high) usage("a number is out of range");
  return value;
}

Options parse(int argc, char** argv) {
  Options options;
  for (int index = 1; index < argc; index += 2) {
    const std::string_view flag = argv[index];
    if (index + 1 >= argc) usage("a flag lacks its value");
    const char* value = argv[index + 1];
    if (flag == "--address") {
      options.address = value;
    } else if (flag == "--database") {
      options.database = value;
    } else if (flag == "--writes") {
      options.writes = number(value, 1, max_writes);
    } else if (flag == "--key-bytes") {
      options.key_bytes = number(value, 1, max_field_bytes);
    } else if (flag == "--value-bytes") {
      options.value_bytes = number(value, 0, max_field_bytes);
    } else if (flag == "--tls-dir") {
      options.tls_dir = value;
    } else {
      usage("unknown flag");
    }
  }
  if (options.address.empty() || options.database.empty()) usage("--address and --database are required");
  return options;
}

double percentile_ms(std::vector<double>& sorted_ms, double fraction) {
  const auto index = static_cast<std::size_t>(fraction * static_cast<double>(sorted_ms.size() - 1));
  return sorted_ms[index];
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  ClientOptions client_options;
  client_options.addresses = {options.address};
  if (!options.tls_dir.empty()) {
    std::string problem;
    client_options.tls = TlsContext::from_dir(TlsContext::Side::client, options.tls_dir, problem);
    if (!client_options.tls) {
      std::fprintf(stderr, "db_client_bench: %s\n", problem.c_str());
      return 2;
    }
  }
  Client client(client_options);
  Outcome<wire::Result> created = client.exec(options.database, "CREATE TABLE kv (k TEXT, v TEXT)");
  if (!created) {
    std::fprintf(stderr, "db_client_bench: CREATE TABLE: %s\n", created.error().message.c_str());
    return 1;
  }
  const std::string value(static_cast<std::size_t>(options.value_bytes), 'v');
  std::vector<double> latencies_ms;
  latencies_ms.reserve(static_cast<std::size_t>(options.writes));
  long errors = 0;
  const auto started = Clock::now();
  for (long write = 0; write < options.writes; ++write) {
    std::string key = std::to_string(write);
    key.insert(0, static_cast<std::size_t>(std::max(0L, options.key_bytes - static_cast<long>(key.size()))), '0');
    const auto sent = Clock::now();
    Outcome<wire::Result> done = client.exec(options.database, "INSERT INTO kv VALUES (?, ?)", {key, value});
    latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
    if (!done) ++errors;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  std::printf("{\"cps\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"errors\":%ld}\n",
              static_cast<double>(options.writes - errors) / seconds, percentile_ms(latencies_ms, 0.50),
              percentile_ms(latencies_ms, 0.99), errors);
  return errors == 0 ? 0 : 1;
}
