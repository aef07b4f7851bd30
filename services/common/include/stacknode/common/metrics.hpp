// Metrics registry shared by every stacknode daemon, exposed in the Prometheus text format 0.0.4.
// It owns metric families (name, help, type) and their labelled children. Registration happens at
// set-up time and may throw std::invalid_argument for a bad name; updating a metric is lock-free
// (relaxed atomics) so request paths can count without contention on a lock.
//
// Invariants:
//  1. A name belongs to one family of one type; registering it again with the same type and
//     labels returns the same object, with another type throws.
//  2. Metric objects never move or die while the registry lives, so callers keep references.
//  3. expose() renders families in name order and children in label order, so output is stable.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stacknode::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void dec(double amount = 1.0) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  // `upper_bounds` must be strictly increasing; +Inf is implicit.
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Count of observations <= upper_bounds()[index] (cumulative, as exposed).
  std::uint64_t cumulative_count(std::size_t index) const;
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> bucket_counts_;  // per bucket, not cumulative
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0.0};
};

// Latency buckets in seconds, from 100 µs to 10 s: covers a cache hit and a slow upstream alike.
std::vector<double> default_latency_buckets();

class Registry {
 public:
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& histogram(std::string_view name, std::string_view help,
                       std::vector<double> upper_bounds, const Labels& labels = {});
  // A gauge whose value is read from `read` at exposition time (queue sizes, open connections).
  void gauge_callback(std::string_view name, std::string_view help, std::function<double()> read,
                      const Labels& labels = {});

  // The whole registry in the Prometheus text exposition format, version 0.0.4.
  std::string expose() const;

  // Content-Type of expose()'s output.
  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

 private:
  enum class Type { counter, gauge, histogram };
  struct Child {
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> read;
  };
  struct Family {
    std::string help;
    Type type;
    std::map<std::string, Child> children;  // key: rendered label set, e.g. {code="200"}
  };
  Child& child(std::string_view name, std::string_view help, Type type, const Labels& labels);

  mutable std::mutex mutex_;
  std::map<std::string, Family, std::less<>> families_;
};

// `<program>_build_info{version="...",commit="..."} 1`, the usual way to expose what runs.
void register_build_info(Registry& registry, std::string_view program_prefix);

// The version and commit baked in at build time.
std::string_view build_version();
std::string_view build_commit();

}  // namespace stacknode::metrics
