// The serial console's menu, as data and pure checks: the numbered items, the screen text, what
// a typed line chooses (only a number on the menu does anything: no input is ever run as a
// command), and the checks of what the items ask for (addresses, names, typed confirmations).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stacknode::console {

enum class Item {
  status = 1,
  cluster_init,
  join_token,
  cluster_join,
  leave,
  recover,
  admin_password,
  ping,
  switch_slot,
  factory_reset,
  shell,
  reboot,
  power_off,
};
inline constexpr int item_count = 13;

struct MenuEntry {
  Item item;
  std::string_view title;
};
const std::vector<MenuEntry>& menu_entries();

// What the console shows above the menu: this box in one line each.
struct Summary {
  std::string node_name;      // from node.cfg, or "not configured"
  std::string address;        // the service address
  std::string version;        // /etc/stacknode-release
  std::string slot;           // booted slot
};
std::string menu_text(const Summary& summary);

// The item a line chooses: a number from 1 to item_count, spaces around it allowed; anything
// else (words, commands, several numbers, 0, signs) chooses nothing.
std::optional<Item> parse_choice(std::string_view line);

// Exactly the phrase, after trimming spaces around it (case matters).
bool confirmed(std::string_view line, std::string_view phrase);
// A yes/no answer: "y" or "yes" (any case) is yes; anything else is no.
bool said_yes(std::string_view line);
// Dotted-quad IPv4 without leading zeros, the only ping target (no names: no DNS on a rack's
// service network, and nothing a shell could read).
bool valid_ipv4(std::string_view text);
// A cluster or user-facing name: 1-63 of letters, digits, '-' and '_', starting with a letter or digit.
bool valid_name(std::string_view text);

// The phrase factory reset wants typed.
inline constexpr std::string_view factory_reset_phrase = "factory reset";
inline constexpr std::string_view recover_phrase = "recover";
inline constexpr std::string_view leave_phrase = "leave";

}  // namespace stacknode::console
