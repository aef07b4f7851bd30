// A/B firmware slots on the box itself (stackctl firmware): what is installed where, applying an
// update bundle to the slot that is not running, marking a trial boot good, rolling back by
// hand. The state lives in GRUB's environment block on the EFI system partition (grub_env.hpp),
// which image/grub.cfg reads at every boot.
//
// Slot state (variables in grubenv), and the function of this file that changes each:
//  1. active_slot: the slot that last proved healthy; GRUB boots it unless a trial is pending.
//     mark_firmware_good() sets it to the booted trial slot; roll_back_firmware() to the other.
//  2. trial_slot / trial_left: apply_firmware_update() writes the slot that is not running and
//     sets trial_slot to it with trial_left=1; GRUB spends the one try (trial_left=0) and, on the
//     boot after it, clears trial_slot if nobody marked it good (automatic rollback, rolled_back=1).
//  3. slot_X_version / _bytes / _sha256: what apply_firmware_update() wrote into slot X (and the
//     image build into both), checked before slot X is made active by hand.
// An update is refused while a trial is pending or when the box did not boot its active slot: it
// would overwrite the only slot known to be good.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace stacknode::node {

// Bundle limits (the file may come from anywhere): the manifest is a few hundred bytes; a bundle
// holds exactly a manifest and a root file system.
inline constexpr std::size_t max_manifest_bytes = 64 * 1024;
inline constexpr std::size_t max_bundle_entries = 8;
inline constexpr std::string_view bundle_format = "stacknode-bundle-1";

struct FirmwareLayout {
  std::filesystem::path grubenv = "/boot/efi/EFI/stacknode/grubenv";
  std::filesystem::path slot_a = "/dev/disk/by-partlabel/stacknode-root-a";
  std::filesystem::path slot_b = "/dev/disk/by-partlabel/stacknode-root-b";
  std::filesystem::path release = "/etc/stacknode-release";  // VERSION=, BOARD= of the running firmware
  std::filesystem::path cmdline = "/proc/cmdline";           // stacknode.slot= of the running boot

  const std::filesystem::path& slot_path(char slot) const { return slot == 'b' ? slot_b : slot_a; }
};

struct SlotInfo {
  std::string version;  // empty: nothing recorded
  std::uint64_t bytes = 0;
  std::string sha256;
};

struct FirmwareStatus {
  char booted = '?';  // 'a', 'b', or '?' when the kernel command line does not say
  char active = 'a';
  char trial = 0;     // 0: no trial pending
  bool trial_left = false;
  bool rolled_back = false;  // the last trial did not become healthy and GRUB went back
  std::string board;
  std::string running_version;
  SlotInfo a, b;
  const SlotInfo& slot(char name) const { return name == 'b' ? b : a; }
};

std::optional<FirmwareStatus> read_firmware_status(const FirmwareLayout& layout, std::string& error);

struct UpdateOutcome {
  char slot = 0;
  std::string version;
  std::uint64_t bytes = 0;
  std::string sha256;
};

// Checks the bundle (format, board, the root file system's size and SHA-256), writes it into the
// slot that is not running, reads it back, and sets the trial (state 2). `progress` gets bytes
// done and total. Nothing in grubenv changes unless the slot was written and verified.
std::optional<UpdateOutcome> apply_firmware_update(const FirmwareLayout& layout, const std::filesystem::path& bundle,
                                                   std::string& error,
                                                   const std::function<void(std::uint64_t, std::uint64_t)>& progress = {});

// The booted trial slot becomes the active one (state 1). True with nothing to do when the box
// runs its active slot with no trial; false (error) when it runs anything else.
bool mark_firmware_good(const FirmwareLayout& layout, std::string& error, bool& changed);

// Makes the other slot the active one after checking it against its recorded SHA-256; the next
// boot runs it. With a trial pending (an update not booted yet), cancels the trial instead and the
// active slot stays. Returns the slot now active.
std::optional<char> roll_back_firmware(const FirmwareLayout& layout, std::string& error);

}  // namespace stacknode::node
