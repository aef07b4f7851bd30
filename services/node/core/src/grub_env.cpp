// GRUB's environment block (grub_env.hpp): the parser, the renderer and the rules for names and
// values.
#include "stacknode/node/grub_env.hpp"

#include <algorithm>

namespace stacknode::node {

namespace {
constexpr char padding = '#';
}  // namespace

bool GrubEnv::valid_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool GrubEnv::valid_value(std::string_view value) {
  return std::all_of(value.begin(), value.end(), [](char c) {
    return c >= 0x20 && c < 0x7f && c != '\\' && c != '"' && c != '\'' && c != '$' && c != ';';
  });
}

std::optional<GrubEnv> GrubEnv::parse(std::string_view bytes, std::string& error) {
  if (bytes.size() != grub_env_bytes) {
    error = "grubenv is " + std::to_string(bytes.size()) + " bytes, not " + std::to_string(grub_env_bytes);
    return std::nullopt;
  }
  if (!bytes.starts_with(grub_env_header)) {
    error = "grubenv does not start with '# GRUB Environment Block'";
    return std::nullopt;
  }
  GrubEnv env;
  std::string_view rest = bytes.substr(grub_env_header.size());
  if (rest.starts_with(grub_env_warning)) rest.remove_prefix(grub_env_warning.size());
  while (!rest.empty() && rest.front() != padding) {
    const std::size_t end = rest.find('\n');
    if (end == std::string_view::npos) {
      error = "grubenv has a line without its newline";
      return std::nullopt;
    }
    const std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + 1);
    const std::size_t equals = line.find('=');
    if (equals == std::string_view::npos) {
      error = "grubenv has a line without '='";
      return std::nullopt;
    }
    const std::string_view name = line.substr(0, equals);
    const std::string_view value = line.substr(equals + 1);
    if (!valid_name(name) || !valid_value(value)) {
      error = "grubenv has a variable stacknode does not write (a name or value with other characters)";
      return std::nullopt;
    }
    if (env.get(name)) {
      error = "grubenv sets " + std::string(name) + " twice";
      return std::nullopt;
    }
    env.variables_.emplace_back(name, value);
  }
  if (rest.find_first_not_of(padding) != std::string_view::npos) {
    error = "grubenv has text after its padding";
    return std::nullopt;
  }
  return env;
}

std::optional<std::string> GrubEnv::get(std::string_view name) const {
  for (const auto& [key, value] : variables_) {
    if (key == name) return value;
  }
  return std::nullopt;
}

std::string GrubEnv::get_or(std::string_view name, std::string_view fallback) const {
  const std::optional<std::string> value = get(name);
  return value ? *value : std::string(fallback);
}

bool GrubEnv::set(std::string_view name, std::string_view value) {
  if (!valid_name(name) || !valid_value(value)) return false;
  for (auto& [key, current] : variables_) {
    if (key == name) {
      current = value;
      return true;
    }
  }
  variables_.emplace_back(name, value);
  return true;
}

void GrubEnv::erase(std::string_view name) {
  std::erase_if(variables_, [&](const auto& variable) { return variable.first == name; });
}

std::optional<std::string> GrubEnv::render() const {
  std::string bytes = std::string(grub_env_header) + std::string(grub_env_warning);
  for (const auto& [name, value] : variables_) bytes += name + "=" + value + "\n";
  if (bytes.size() > grub_env_bytes) return std::nullopt;
  bytes.resize(grub_env_bytes, padding);
  return bytes;
}

}  // namespace stacknode::node
