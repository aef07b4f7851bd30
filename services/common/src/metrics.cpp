// Metrics registry and Prometheus text exposition (format 0.0.4); see metrics.hpp.
#include "stacknode/common/metrics.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#ifndef STACKNODE_VERSION
#define STACKNODE_VERSION "0.0.0"
#endif
#ifndef STACKNODE_GIT_COMMIT
#define STACKNODE_GIT_COMMIT "unknown"
#endif

namespace stacknode::metrics {
namespace {

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t index = 0; index < name.size(); ++index) {
    const char c = name[index];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && index > 0)) return false;
  }
  return true;
}

bool valid_label_name(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (std::size_t index = 0; index < name.size(); ++index) {
    const char c = name[index];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && index > 0)) return false;
  }
  return true;
}

// Label values escape backslash, double quote and newline; HELP text escapes backslash and newline.
void append_escaped(std::string& out, std::string_view text, bool escape_quote) {
  for (const char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"' && escape_quote) out += "\\\"";
    else out += c;
  }
}

std::string render_labels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    append_escaped(out, value, true);
    out += '"';
  }
  out += '}';
  return out;
}

// Adds one label to an already rendered label set ("" or "{a=\"1\"}").
std::string with_label(const std::string& rendered, std::string_view name, std::string_view value) {
  std::string extra(name);
  extra += "=\"";
  append_escaped(extra, value, true);
  extra += '"';
  if (rendered.empty()) return "{" + extra + "}";
  return rendered.substr(0, rendered.size() - 1) + "," + extra + "}";
}

void append_number(std::string& out, double value) {
  if (std::isnan(value)) { out += "NaN"; return; }
  if (std::isinf(value)) { out += value > 0 ? "+Inf" : "-Inf"; return; }
  char buffer[40];
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    std::snprintf(buffer, sizeof buffer, "%.0f", value);
  } else {
    // The shortest of 15 or 17 significant digits that reads back as the same double.
    std::snprintf(buffer, sizeof buffer, "%.15g", value);
    if (std::strtod(buffer, nullptr) != value) std::snprintf(buffer, sizeof buffer, "%.17g", value);
  }
  out += buffer;
}

const char* type_text(int type) {
  switch (type) {
    case 0: return "counter";
    case 1: return "gauge";
    default: return "histogram";
  }
}

}  // namespace

// ---- Histogram ----

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      bucket_counts_(new std::atomic<std::uint64_t>[upper_bounds_.size() + 1]) {
  for (std::size_t index = 0; index < upper_bounds_.size(); ++index) {
    if (std::isnan(upper_bounds_[index]) ||
        (index > 0 && upper_bounds_[index] <= upper_bounds_[index - 1])) {
      throw std::invalid_argument("histogram bucket bounds must be strictly increasing");
    }
  }
  for (std::size_t index = 0; index <= upper_bounds_.size(); ++index) bucket_counts_[index] = 0;
}

void Histogram::observe(double value) {
  std::size_t bucket = 0;
  while (bucket < upper_bounds_.size() && value > upper_bounds_[bucket]) ++bucket;
  bucket_counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t Histogram::cumulative_count(std::size_t index) const {
  std::uint64_t total = 0;
  for (std::size_t bucket = 0; bucket <= index && bucket <= upper_bounds_.size(); ++bucket) {
    total += bucket_counts_[bucket].load(std::memory_order_relaxed);
  }
  return total;
}

std::vector<double> default_latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
}

// ---- Registry ----

Registry::Child& Registry::child(std::string_view name, std::string_view help, Type type,
                                 const Labels& labels) {
  if (!valid_metric_name(name)) {
    throw std::invalid_argument("invalid metric name '" + std::string(name) + "'");
  }
  for (const auto& [label, value] : labels) {
    if (!valid_label_name(label) || (type == Type::histogram && label == "le")) {
      throw std::invalid_argument("invalid label name '" + label + "' on metric " +
                                  std::string(name));
    }
  }
  std::lock_guard lock(mutex_);
  auto family = families_.find(name);
  if (family == families_.end()) {
    family = families_.emplace(std::string(name), Family{std::string(help), type, {}}).first;
  } else if (family->second.type != type) {
    throw std::invalid_argument("metric " + std::string(name) + " is already registered as a " +
                                type_text(static_cast<int>(family->second.type)));
  }
  return family->second.children[render_labels(labels)];
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  Child& entry = child(name, help, Type::counter, labels);
  std::lock_guard lock(mutex_);
  if (!entry.counter) entry.counter = std::make_unique<Counter>();
  return *entry.counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  Child& entry = child(name, help, Type::gauge, labels);
  std::lock_guard lock(mutex_);
  if (!entry.gauge) entry.gauge = std::make_unique<Gauge>();
  return *entry.gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               std::vector<double> upper_bounds, const Labels& labels) {
  Child& entry = child(name, help, Type::histogram, labels);
  std::lock_guard lock(mutex_);
  if (!entry.histogram) entry.histogram = std::make_unique<Histogram>(std::move(upper_bounds));
  return *entry.histogram;
}

void Registry::gauge_callback(std::string_view name, std::string_view help,
                              std::function<double()> read, const Labels& labels) {
  Child& entry = child(name, help, Type::gauge, labels);
  std::lock_guard lock(mutex_);
  entry.read = std::move(read);
}

std::string Registry::expose() const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(families_.size() * 128);
  for (const auto& [name, family] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    append_escaped(out, family.help, false);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type_text(static_cast<int>(family.type));
    out += '\n';
    for (const auto& [labels, child] : family.children) {
      if (family.type == Type::histogram) {
        const Histogram& histogram = *child.histogram;
        const auto& bounds = histogram.upper_bounds();
        for (std::size_t index = 0; index < bounds.size(); ++index) {
          std::string bound;
          append_number(bound, bounds[index]);
          out += name + "_bucket" + with_label(labels, "le", bound) + ' ';
          append_number(out, static_cast<double>(histogram.cumulative_count(index)));
          out += '\n';
        }
        // Read count once so that the +Inf bucket and _count agree even under concurrent updates.
        const auto count = static_cast<double>(histogram.cumulative_count(bounds.size()));
        out += name + "_bucket" + with_label(labels, "le", "+Inf") + ' ';
        append_number(out, count);
        out += '\n' + name + "_sum" + labels + ' ';
        append_number(out, histogram.sum());
        out += '\n' + name + "_count" + labels + ' ';
        append_number(out, count);
        out += '\n';
        continue;
      }
      double value = 0;
      if (child.read) value = child.read();
      else if (child.counter) value = child.counter->value();
      else if (child.gauge) value = child.gauge->value();
      out += name + labels + ' ';
      append_number(out, value);
      out += '\n';
    }
  }
  return out;
}

void register_build_info(Registry& registry, std::string_view program_prefix) {
  registry
      .gauge(std::string(program_prefix) + "_build_info",
             "Build of this process; the value is always 1.",
             {{"version", std::string(build_version())}, {"commit", std::string(build_commit())}})
      .set(1);
}

std::string_view build_version() { return STACKNODE_VERSION; }
std::string_view build_commit() { return STACKNODE_GIT_COMMIT; }

}  // namespace stacknode::metrics
