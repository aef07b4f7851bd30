// node.cfg loading for every stacknode daemon: a thin, typed layer over libconfig++.
// It owns the parsed file, answers typed look-ups with defaults, and remembers which settings
// were looked up so that the daemon can report the ones nobody reads (typos, stale keys).
//
// Every error names file:line and the full key path, e.g.
//   /etc/stacknode/node.cfg:12: web.threads: expected an integer, found a string
// and is thrown as ConfigError; daemons turn it into exit status 2 (see daemon.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace libconfig {
class Config;
class Setting;
}  // namespace libconfig

namespace stacknode::config {

// The default location of node.cfg on an installed node.
inline constexpr std::string_view default_config_path = "/etc/stacknode/node.cfg";

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Document;

// A group of settings (the file's root, or `name: { ... }`), read with typed accessors.
// Accessors take a key relative to this section; a missing key gives the default, a key of the
// wrong type or outside the allowed range throws ConfigError.
class Section {
 public:
  bool has(std::string_view key) const;

  bool get_bool(std::string_view key, bool fallback) const;
  std::int64_t get_int(std::string_view key, std::int64_t fallback,
                       std::int64_t min = INT64_MIN, std::int64_t max = INT64_MAX) const;
  double get_double(std::string_view key, double fallback) const;
  std::string get_string(std::string_view key, std::string_view fallback) const;
  // A list or array of strings; absent gives `fallback`.
  std::vector<std::string> get_strings(std::string_view key,
                                       std::vector<std::string> fallback = {}) const;

  // A nested group; absent gives an empty section (every look-up in it returns its default).
  Section section(std::string_view key) const;
  // A list of groups, `key = ( { ... }, { ... } );`. Absent gives an empty vector.
  std::vector<Section> sections(std::string_view key) const;

  // "file:line: path" of this section or of `key` in it, for error messages of the caller's own
  // validation (for example a pool that names an unknown upstream).
  std::string where(std::string_view key = {}) const;
  [[noreturn]] void fail(std::string_view key, std::string_view problem) const;

 private:
  friend class Document;
  Section(const Document* document, const libconfig::Setting* setting, std::string path)
      : document_(document), setting_(setting), path_(std::move(path)) {}
  const libconfig::Setting* lookup(std::string_view key) const;
  std::string key_path(std::string_view key) const;

  const Document* document_;
  const libconfig::Setting* setting_;  // null for an absent section
  std::string path_;                   // "" for the root
};

// One parsed configuration file.
class Document {
 public:
  // Throws ConfigError: "cannot read FILE: reason" or "FILE:LINE: syntax error: reason".
  static std::unique_ptr<Document> load_file(const std::filesystem::path& file);
  // For tests and generated configs; `name` stands in for the file name in messages.
  static std::unique_ptr<Document> load_string(std::string_view text, std::string name);

  ~Document();
  Document(const Document&) = delete;
  Document& operator=(const Document&) = delete;

  Section root() const;
  const std::string& file_name() const { return file_name_; }

  // Settings present in the file that no accessor looked up, as "file:line: key" lines.
  // Call it after the daemon has read all of its configuration.
  std::vector<std::string> unread_settings() const;

 private:
  friend class Section;
  Document(std::unique_ptr<libconfig::Config> parsed, std::string file_name);
  void mark_read(const libconfig::Setting* setting) const;

  std::unique_ptr<libconfig::Config> parsed_;
  std::string file_name_;
  mutable std::set<const libconfig::Setting*> read_;
};

}  // namespace stacknode::config
