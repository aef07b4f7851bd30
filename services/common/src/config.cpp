// node.cfg loading: typed look-ups over libconfig++ with file:line in every error, and the list of
// settings that nothing read. See config.hpp for the contract.
#include "stacknode/common/config.hpp"

#include <libconfig.h++>

#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace stacknode::config {
namespace {

const char* type_name(libconfig::Setting::Type type) {
  switch (type) {
    case libconfig::Setting::TypeInt:
    case libconfig::Setting::TypeInt64:
      return "an integer";
    case libconfig::Setting::TypeFloat:
      return "a number";
    case libconfig::Setting::TypeString:
      return "a string";
    case libconfig::Setting::TypeBoolean:
      return "a boolean";
    case libconfig::Setting::TypeGroup:
      return "a group { ... }";
    case libconfig::Setting::TypeArray:
      return "an array [ ... ]";
    case libconfig::Setting::TypeList:
      return "a list ( ... )";
    case libconfig::Setting::TypeNone:
      break;
  }
  return "nothing";
}

// libconfig 1.5 (Debian bookworm) reads an integer literal that does not fit 32 bits and has no
// L suffix as a 32-bit value, silently (8245050306693139 became 1588561939). Such a literal is
// refused here, before parsing, with file:line and what to write instead. Strings and comments
// (#, //, /* */) are skipped; a number followed by '.', 'e' or 'E' is a float and left alone.
void refuse_wide_unsuffixed_integers(std::string_view text, const std::string& name) {
  constexpr long long int32_max = 2147483647LL;
  int line = 1;
  for (std::size_t at = 0; at < text.size(); ++at) {
    const char c = text[at];
    if (c == '\n') {
      ++line;
    } else if (c == '"') {
      for (++at; at < text.size() && text[at] != '"'; ++at) {
        if (text[at] == '\\') ++at;
        else if (text[at] == '\n') ++line;
      }
    } else if (c == '#' || (c == '/' && at + 1 < text.size() && text[at + 1] == '/')) {
      while (at + 1 < text.size() && text[at + 1] != '\n') ++at;
    } else if (c == '/' && at + 1 < text.size() && text[at + 1] == '*') {
      for (at += 2; at + 1 < text.size() && !(text[at] == '*' && text[at + 1] == '/'); ++at) {
        if (text[at] == '\n') ++line;
      }
      ++at;
    } else if (std::isdigit(static_cast<unsigned char>(c)) &&
               (at == 0 || !(std::isalnum(static_cast<unsigned char>(text[at - 1])) || text[at - 1] == '_' ||
                             text[at - 1] == '.'))) {
      const std::size_t start = at;
      const bool hex = c == '0' && at + 1 < text.size() && (text[at + 1] == 'x' || text[at + 1] == 'X');
      if (hex) at += 2;
      while (at < text.size() && std::isxdigit(static_cast<unsigned char>(text[at])) &&
             (hex || std::isdigit(static_cast<unsigned char>(text[at])))) {
        ++at;
      }
      const std::string_view literal = text.substr(start, at - start);
      const char next = at < text.size() ? text[at] : ' ';
      const bool is_float = !hex && (next == '.' || next == 'e' || next == 'E');
      const bool suffixed = next == 'L';
      if (!is_float && !suffixed) {
        // Hex literals of up to 8 digits are 32-bit patterns (libconfig's own rule); decimal
        // ones must not exceed INT32_MAX.
        const std::string digits(hex ? literal.substr(2) : literal);
        const std::size_t first = std::min(digits.find_first_not_of('0'), digits.size());
        const std::size_t significant = digits.size() - first;
        const bool wide = hex ? significant > 8
                              : significant > 10 || (significant > 0 && std::stoull(digits.substr(first)) >
                                                                              static_cast<unsigned long long>(int32_max));
        if (wide) {
          throw ConfigError(name + ':' + std::to_string(line) + ": integer " + std::string(literal) +
                            " does not fit 32 bits: write it as " + std::string(literal) +
                            "L (without the L, libconfig reads another number)");
        }
      }
      --at;  // the loop's ++at looks at the character after the literal
    }
  }
}

// libconfig++ insists that the C++ type matches the stored width exactly.
long long integer_value(const libconfig::Setting& setting) {
  if (setting.getType() == libconfig::Setting::TypeInt) return static_cast<int>(setting);
  return static_cast<long long>(setting);
}

std::string location(const std::string& file_name, const libconfig::Setting& setting) {
  std::ostringstream out;
  const char* source = setting.getSourceFile();
  out << (source != nullptr ? source : file_name.c_str()) << ':' << setting.getSourceLine();
  return out.str();
}

void collect_unread(const libconfig::Setting& setting, const std::set<const libconfig::Setting*>& read,
                    const std::string& file_name, std::vector<std::string>& out) {
  if (read.count(&setting) == 0) {
    // Nobody looked at this setting nor at anything inside it: report it once, as a whole.
    out.push_back(location(file_name, setting) + ": " + setting.getPath());
    return;
  }
  if (setting.isGroup() || setting.isList()) {
    for (int index = 0; index < setting.getLength(); ++index) {
      collect_unread(setting[index], read, file_name, out);
    }
  }
}

}  // namespace

// ---- Document ----

Document::Document(std::unique_ptr<libconfig::Config> parsed, std::string file_name)
    : parsed_(std::move(parsed)), file_name_(std::move(file_name)) {
  read_.insert(&parsed_->getRoot());
}

Document::~Document() = default;

std::unique_ptr<Document> Document::load_file(const std::filesystem::path& file) {
  auto parsed = std::make_unique<libconfig::Config>();
  {
    std::ifstream in(file);
    if (in) refuse_wide_unsuffixed_integers(std::string(std::istreambuf_iterator<char>(in), {}), file.string());
  }
  try {
    parsed->readFile(file.c_str());
  } catch (const libconfig::FileIOException&) {
    std::error_code error;
    const bool exists = std::filesystem::exists(file, error);
    throw ConfigError("cannot read " + file.string() + ": " +
                      (exists ? "permission denied or not a regular file" : "no such file"));
  } catch (const libconfig::ParseException& parse) {
    std::ostringstream message;
    message << (parse.getFile() != nullptr ? parse.getFile() : file.c_str()) << ':'
            << parse.getLine() << ": syntax error: " << parse.getError();
    throw ConfigError(message.str());
  }
  return std::unique_ptr<Document>(new Document(std::move(parsed), file.string()));
}

std::unique_ptr<Document> Document::load_string(std::string_view text, std::string name) {
  auto parsed = std::make_unique<libconfig::Config>();
  refuse_wide_unsuffixed_integers(text, name);
  try {
    parsed->readString(std::string(text));
  } catch (const libconfig::ParseException& parse) {
    std::ostringstream message;
    message << name << ':' << parse.getLine() << ": syntax error: " << parse.getError();
    throw ConfigError(message.str());
  }
  return std::unique_ptr<Document>(new Document(std::move(parsed), std::move(name)));
}

Section Document::root() const { return Section(this, &parsed_->getRoot(), ""); }

void Document::mark_read(const libconfig::Setting* setting) const {
  // Reading a setting also accounts for every group that leads to it.
  while (setting != nullptr && read_.insert(setting).second && !setting->isRoot()) {
    setting = &setting->getParent();
  }
}

std::vector<std::string> Document::unread_settings() const {
  std::vector<std::string> out;
  collect_unread(parsed_->getRoot(), read_, file_name_, out);
  return out;
}

// ---- Section ----

const libconfig::Setting* Section::lookup(std::string_view key) const {
  if (setting_ == nullptr || !setting_->isGroup()) return nullptr;
  const std::string name(key);
  if (!setting_->exists(name)) return nullptr;
  const libconfig::Setting& found = (*setting_)[name.c_str()];
  document_->mark_read(&found);
  return &found;
}

std::string Section::key_path(std::string_view key) const {
  if (path_.empty()) return std::string(key);
  if (key.empty()) return path_;
  return path_ + "." + std::string(key);
}

std::string Section::where(std::string_view key) const {
  const libconfig::Setting* setting = key.empty() ? setting_ : lookup(key);
  std::string prefix = setting != nullptr ? location(document_->file_name_, *setting)
                                          : document_->file_name_;
  return prefix + ": " + key_path(key);
}

void Section::fail(std::string_view key, std::string_view problem) const {
  throw ConfigError(where(key) + ": " + std::string(problem));
}

bool Section::has(std::string_view key) const { return lookup(key) != nullptr; }

bool Section::get_bool(std::string_view key, bool fallback) const {
  const libconfig::Setting* setting = lookup(key);
  if (setting == nullptr) return fallback;
  if (setting->getType() != libconfig::Setting::TypeBoolean) {
    fail(key, std::string("expected a boolean (true/false), found ") + type_name(setting->getType()));
  }
  return static_cast<bool>(*setting);
}

std::int64_t Section::get_int(std::string_view key, std::int64_t fallback, std::int64_t min,
                              std::int64_t max) const {
  const libconfig::Setting* setting = lookup(key);
  if (setting == nullptr) return fallback;
  const auto type = setting->getType();
  if (type != libconfig::Setting::TypeInt && type != libconfig::Setting::TypeInt64) {
    fail(key, std::string("expected an integer, found ") + type_name(type));
  }
  const auto value = integer_value(*setting);
  if (value < min || value > max) {
    std::ostringstream problem;
    problem << "value " << value << " is out of range [" << min << ", " << max << "]";
    fail(key, problem.str());
  }
  return value;
}

double Section::get_double(std::string_view key, double fallback) const {
  const libconfig::Setting* setting = lookup(key);
  if (setting == nullptr) return fallback;
  const auto type = setting->getType();
  if (type == libconfig::Setting::TypeFloat) return static_cast<double>(*setting);
  if (type == libconfig::Setting::TypeInt || type == libconfig::Setting::TypeInt64) {
    return static_cast<double>(integer_value(*setting));
  }
  fail(key, std::string("expected a number, found ") + type_name(type));
}

std::string Section::get_string(std::string_view key, std::string_view fallback) const {
  const libconfig::Setting* setting = lookup(key);
  if (setting == nullptr) return std::string(fallback);
  if (setting->getType() != libconfig::Setting::TypeString) {
    fail(key, std::string("expected a string in double quotes, found ") +
                  type_name(setting->getType()));
  }
  return static_cast<std::string>(*setting);
}

std::vector<std::string> Section::get_strings(std::string_view key,
                                              std::vector<std::string> fallback) const {
  const libconfig::Setting* setting = lookup(key);
  if (setting == nullptr) return fallback;
  if (!setting->isArray() && !setting->isList()) {
    fail(key, std::string("expected an array of strings [\"a\", \"b\"], found ") +
                  type_name(setting->getType()));
  }
  std::vector<std::string> values;
  for (int index = 0; index < setting->getLength(); ++index) {
    const libconfig::Setting& element = (*setting)[index];
    if (element.getType() != libconfig::Setting::TypeString) {
      fail(key, "element " + std::to_string(index) + " is " + type_name(element.getType()) +
                    ", expected a string");
    }
    document_->mark_read(&element);
    values.push_back(static_cast<std::string>(element));
  }
  return values;
}

Section Section::section(std::string_view key) const {
  const libconfig::Setting* setting = lookup(key);
  if (setting == nullptr) return Section(document_, nullptr, key_path(key));
  if (!setting->isGroup()) {
    fail(key, std::string("expected a group { ... }, found ") + type_name(setting->getType()));
  }
  return Section(document_, setting, key_path(key));
}

std::vector<Section> Section::sections(std::string_view key) const {
  const libconfig::Setting* setting = lookup(key);
  if (setting == nullptr) return {};
  if (!setting->isList()) {
    fail(key, std::string("expected a list of groups ( { ... }, { ... } ), found ") +
                  type_name(setting->getType()));
  }
  std::vector<Section> out;
  for (int index = 0; index < setting->getLength(); ++index) {
    const libconfig::Setting& element = (*setting)[index];
    const std::string element_path = key_path(key) + "[" + std::to_string(index) + "]";
    if (!element.isGroup()) {
      throw ConfigError(location(document_->file_name_, element) + ": " + element_path +
                        ": expected a group { ... }, found " + type_name(element.getType()));
    }
    document_->mark_read(&element);
    out.push_back(Section(document_, &element, element_path));
  }
  return out;
}

}  // namespace stacknode::config
