// The Maglev build workload shared by maglev_bench and lb_bench: 1000 active backends into a
// 65537-entry table, built from scratch (validation, canonical sort, permutation hashes, filling)
// as the control thread does for every config change, timed over several builds. The anchor is
// the paper's 1.8 ms (Eisenbud et al., NSDI 2016, section 5.3); the goal is <= 2 ms.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stacknode/dataplane/maglev.hpp"

namespace stacknode::dataplane::bench {

inline constexpr std::uint32_t maglev_bench_table_size = 65537;
inline constexpr std::size_t maglev_bench_backends = 1000;
inline constexpr int maglev_default_runs = 21;
inline constexpr int maglev_warm_up_runs = 3;
inline constexpr double maglev_paper_build_ms = 1.8;  // 65537 entries, 1000 backends
inline constexpr double maglev_goal_build_ms = 2.0;
// Spreads the backends' arrival order: a prime, coprime with maglev_bench_backends.
inline constexpr std::size_t maglev_scramble_step = 7919;

// 10.x.y.1 for x.y = 0..999, in a scrambled order, as a control plane might list them.
inline std::vector<MaglevBackend> maglev_bench_backend_list() {
  std::vector<MaglevBackend> backends;
  for (std::size_t index = 0; index < maglev_bench_backends; ++index) {
    const std::size_t scrambled = (index * maglev_scramble_step) % maglev_bench_backends;
    backends.push_back({IpAddress::ipv4(10, static_cast<std::uint8_t>(scrambled >> 8),
                                        static_cast<std::uint8_t>(scrambled & 0xff), 1),
                        1, BackendState::active});
  }
  return backends;
}

struct MaglevTiming {
  double median_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
  int runs = 0;
  std::size_t check = 0;  // sums entries of the builds, so that they stay observable
  std::string error;      // set when a build was refused (a bug)
};

// Times `runs` builds after maglev_warm_up_runs unmeasured ones.
inline MaglevTiming time_maglev_builds(int runs) {
  const std::vector<MaglevBackend> backends = maglev_bench_backend_list();
  MaglevTiming timing;
  timing.runs = runs;
  std::vector<double> milliseconds;
  for (int run = 0; run < maglev_warm_up_runs + runs; ++run) {
    const auto start = std::chrono::steady_clock::now();
    MaglevBuildResult result = build_maglev_table(backends, maglev_bench_table_size);
    const auto stop = std::chrono::steady_clock::now();
    if (!result.ok) {
      timing.error = result.error;
      return timing;
    }
    timing.check += result.table.entries[static_cast<std::size_t>(run) % maglev_bench_table_size];
    if (run >= maglev_warm_up_runs) {
      milliseconds.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    }
  }
  std::sort(milliseconds.begin(), milliseconds.end());
  timing.median_ms = milliseconds[milliseconds.size() / 2];
  timing.min_ms = milliseconds.front();
  timing.max_ms = milliseconds.back();
  return timing;
}

}  // namespace stacknode::dataplane::bench
