// The serial console's menu (menu.hpp): entries, screen text, choices and input checks.
#include "menu.hpp"

#include <algorithm>
#include <charconv>
#include <sstream>

namespace stacknode::console {

namespace {
std::string_view trimmed(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}
}  // namespace

const std::vector<MenuEntry>& menu_entries() {
  static const std::vector<MenuEntry> entries = {
      {Item::status, "Status: node, cluster, services, slots, addresses"},
      {Item::cluster_init, "Cluster: make this box the first member of a new cluster"},
      {Item::join_token, "Cluster: show a join token for the next box"},
      {Item::cluster_join, "Cluster: join with a token"},
      {Item::leave, "Cluster: leave (forget this box's membership)"},
      {Item::recover, "Cluster: recover a cluster that lost quorum"},
      {Item::admin_password, "Reset the admin password"},
      {Item::ping, "Ping an address"},
      {Item::switch_slot, "Switch the boot slot (firmware rollback)"},
      {Item::factory_reset, "Factory reset"},
      {Item::shell, "Shell (root password)"},
      {Item::reboot, "Reboot"},
      {Item::power_off, "Power off"},
  };
  return entries;
}

std::string menu_text(const Summary& summary) {
  std::ostringstream out;
  out << "\r\nstacknode " << summary.version << " (slot " << summary.slot << ")  node " << summary.node_name
      << "  address " << summary.address << "\r\n\r\n";
  for (const MenuEntry& entry : menu_entries()) {
    const int number = static_cast<int>(entry.item);
    out << (number < 10 ? "   " : "  ") << number << ") " << entry.title << "\r\n";
  }
  out << "\r\nChoose 1-" << item_count << ": ";
  return out.str();
}

std::optional<Item> parse_choice(std::string_view line) {
  const std::string_view text = trimmed(line);
  if (text.empty() || text.size() > 2 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int number = 0;
  std::from_chars(text.data(), text.data() + text.size(), number);
  if (number < 1 || number > item_count || (text.size() == 2 && text[0] == '0')) return std::nullopt;
  return static_cast<Item>(number);
}

bool confirmed(std::string_view line, std::string_view phrase) { return trimmed(line) == phrase; }

bool said_yes(std::string_view line) {
  std::string text(trimmed(line));
  std::transform(text.begin(), text.end(), text.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
  return text == "y" || text == "yes";
}

bool valid_ipv4(std::string_view text) {
  int parts = 0;
  while (true) {
    const std::size_t dot = text.find('.');
    const std::string_view part = text.substr(0, dot);
    if (part.empty() || part.size() > 3 || (part.size() > 1 && part[0] == '0') ||
        !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    int value = 0;
    std::from_chars(part.data(), part.data() + part.size(), value);
    if (value > 255) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  return parts == 4;
}

bool valid_name(std::string_view text) {
  constexpr std::size_t max_name_bytes = 63;
  if (text.empty() || text.size() > max_name_bytes || !std::isalnum(static_cast<unsigned char>(text[0]))) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; });
}

}  // namespace stacknode::console
