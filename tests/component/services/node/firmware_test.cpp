// Component test of `stackctl firmware` (services/node/ops firmware.hpp, and the stackctl command
// around it): the real binary on a box made of files, a grubenv made by the real grub-editenv as
// image/build.sh makes it, bundles made by the real jq and tar as build.sh makes them, and GRUB's
// own steps (image/grub.cfg) done with grub-editenv. Checks status, update, mark-good and
// rollback through each transition of firmware.hpp, and that every refusal changes nothing.
#include <CppUTest/TestHarness.h>

#include <boost/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "process.hpp"

namespace fs = std::filesystem;
namespace json = boost::json;
namespace support = stacknode::test;

namespace {

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_usage = 2;

// Each slot "device" is a file of this size (a small partition).
constexpr std::uint64_t slot_bytes = std::uint64_t{8} << 20;
// The image build's root file system, in both slots: not a multiple of tar's 512-byte blocks.
constexpr std::uint64_t image_rootfs_bytes = (std::uint64_t{1} << 20) + 123;
// An update's: more than one of stackctl's 4 MiB I/O chunks, not a multiple of 512 either.
constexpr std::uint64_t update_rootfs_bytes = (std::uint64_t{5} << 20) + 321;
// The bytes of a slot past its root file system, so that "untouched" compares something.
constexpr char slot_filler = '\xa5';
// How many characters of a SHA-256 `firmware status` shows.
constexpr std::size_t status_sha256_chars = 16;
// `firmware update` reports progress every 10%: 10, 20, ... 100.
constexpr int progress_step_percent = 10;

constexpr char board[] = "qemu-x86_64";
constexpr char image_version[] = "1.0.0";

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Reproducible "random" bytes: a root file system is only hashed and copied.
std::string random_bytes(std::uint64_t size, std::uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = static_cast<char>(generator() & 0xff);
  return bytes;
}

// SHA-256 by coreutils' sha256sum, not the code under test.
std::string sha256_of_file(const fs::path& path) {
  const support::CommandResult result = support::run_command({"sha256sum", path.string()});
  CHECK_EQUAL_TEXT(0, result.status, result.output.c_str());
  return result.output.substr(0, 64);
}

void flip_byte(const fs::path& path, std::uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(offset));
  const char byte = static_cast<char>(file.get() ^ 0x5a);
  file.seekp(static_cast<std::streamoff>(offset));
  file.put(byte);
}

void run_ok(const std::vector<std::string>& argv) {
  const support::CommandResult result = support::run_command(argv);
  CHECK_EQUAL_TEXT(0, result.status, (argv[0] + ": " + result.output).c_str());
}

struct Run {
  int status = -1;
  std::string out;  // stdout alone
  std::string err;  // stderr alone
};

// What an update bundle holds, and what its manifest says (by default: the truth).
struct BundleSpec {
  std::string rootfs;
  std::string version = "2.0.0";
  std::string board = "qemu-x86_64";
  std::string format = "stacknode-bundle-1";
  std::optional<std::string> manifest_sha256;   // default: the rootfs's
  std::optional<std::uint64_t> manifest_bytes;  // default: the rootfs's size
  bool with_manifest = true;
  std::vector<std::string> extra_files;  // more files in the tar, after the two
};

// Everything a refusal must leave as it was.
struct Snapshot {
  std::string grubenv, slot_a, slot_b;
};

}  // namespace

TEST_GROUP(Firmware) {
  support::TempDir dir;
  fs::path grubenv, slot_a, slot_b, release, cmdline, stderr_file;
  std::string image_rootfs, image_sha256;

  void setup() override {
    support::require_program("grub-editenv", "grub-common");
    support::require_program("tar", "tar");
    support::require_program("jq", "jq");
    support::require_program("sha256sum", "coreutils");
    const fs::path box = dir.path() / "box";
    fs::create_directories(box / "esp");
    grubenv = box / "esp" / "grubenv";
    slot_a = box / "root-a";
    slot_b = box / "root-b";
    release = box / "stacknode-release";
    cmdline = box / "cmdline";
    stderr_file = dir.path() / "stackctl.stderr";

    image_rootfs = random_bytes(image_rootfs_bytes, 1);
    support::write_file(dir.path() / "image-rootfs.squashfs", image_rootfs);
    image_sha256 = sha256_of_file(dir.path() / "image-rootfs.squashfs");
    for (const fs::path& slot : {slot_a, slot_b}) write_slot(slot, image_rootfs);
    // image/build.sh, step 5.
    run_ok({"grub-editenv", grubenv.string(), "create"});
    const std::string bytes = std::to_string(image_rootfs_bytes);
    editenv({"active_slot=a", "trial_slot=", "trial_left=0",
             std::string("slot_a_version=") + image_version, "slot_a_bytes=" + bytes,
             "slot_a_sha256=" + image_sha256, std::string("slot_b_version=") + image_version,
             "slot_b_bytes=" + bytes, "slot_b_sha256=" + image_sha256});
    support::write_file(release,
                        std::string("VERSION=") + image_version + "\nBOARD=" + board + "\n");
    boot_slot('a');
  }

  // A slot device holding `rootfs`, then the filler to slot_bytes.
  void write_slot(const fs::path& slot, const std::string& rootfs) {
    std::string bytes = rootfs;
    bytes.resize(slot_bytes, slot_filler);
    support::write_file(slot, bytes);
  }

  // The kernel command line grub.cfg gives a boot of `slot`.
  void boot_slot(char slot) {
    const std::string name(1, slot);
    support::write_file(
        cmdline, "BOOT_IMAGE=/boot/vmlinuz root=/dev/disk/by-partlabel/stacknode-root-" + name +
                     " rootfstype=squashfs ro stacknode.slot=" + name + " console=ttyS0,115200\n");
  }

  void editenv(std::vector<std::string> assignments) {
    assignments.insert(assignments.begin(), {"grub-editenv", grubenv.string(), "set"});
    run_ok(assignments);
  }

  // grubenv as grub-editenv lists it.
  std::map<std::string, std::string> env_list() {
    const support::CommandResult result =
        support::run_command({"grub-editenv", grubenv.string(), "list"});
    CHECK_EQUAL_TEXT(0, result.status, result.output.c_str());
    std::map<std::string, std::string> variables;
    std::istringstream lines(result.output);
    for (std::string line; std::getline(lines, line);) {
      const std::size_t equals = line.find('=');
      if (equals == std::string::npos) FAIL(("grub-editenv list printed " + line).c_str());
      variables[line.substr(0, equals)] = line.substr(equals + 1);
    }
    return variables;
  }

  // The variables of a fresh box, as the image build set them.
  std::map<std::string, std::string> image_env() {
    const std::string bytes = std::to_string(image_rootfs_bytes);
    return {{"active_slot", "a"},
            {"trial_slot", ""},
            {"trial_left", "0"},
            {"slot_a_version", image_version},
            {"slot_a_bytes", bytes},
            {"slot_a_sha256", image_sha256},
            {"slot_b_version", image_version},
            {"slot_b_bytes", bytes},
            {"slot_b_sha256", image_sha256}};
  }

  void check_env(const std::map<std::string, std::string>& expected) {
    const std::map<std::string, std::string> actual = env_list();
    for (const auto& [name, value] : expected) {
      const auto found = actual.find(name);
      if (found == actual.end()) FAIL(("grubenv lacks " + name).c_str());
      STRCMP_EQUAL_TEXT(value.c_str(), found->second.c_str(), name.c_str());
    }
    for (const auto& [name, value] : actual) {
      if (!expected.contains(name)) FAIL(("grubenv has " + name + "=" + value + " too").c_str());
    }
    CHECK_EQUAL(1024u, fs::file_size(grubenv));
    CHECK_FALSE(fs::exists(grubenv.string() + ".new"));
  }

  // stackctl with the box's paths; stdout and stderr apart.
  Run stackctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"sh",
                                     "-c",
                                     "exec \"$@\" 2>\"$0\"",
                                     stderr_file.string(),
                                     "env",
                                     "STACKNODE_FIRMWARE_GRUBENV=" + grubenv.string(),
                                     "STACKNODE_FIRMWARE_SLOT_A=" + slot_a.string(),
                                     "STACKNODE_FIRMWARE_SLOT_B=" + slot_b.string(),
                                     "STACKNODE_FIRMWARE_RELEASE=" + release.string(),
                                     "STACKNODE_FIRMWARE_CMDLINE=" + cmdline.string(),
                                     (support::binary_dir() / "stackctl").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    const support::CommandResult result = support::run_command(argv);
    return {result.status, result.output, support::read_file(stderr_file)};
  }

  Run stackctl_ok(const std::vector<std::string>& args) {
    const Run run = stackctl(args);
    CHECK_EQUAL_TEXT(exit_ok, run.status, (run.out + run.err).c_str());
    return run;
  }

  json::object stackctl_json(const std::vector<std::string>& args, int expected_status = exit_ok) {
    std::vector<std::string> with_json = {"--json"};
    with_json.insert(with_json.end(), args.begin(), args.end());
    const Run run = stackctl(with_json);
    CHECK_EQUAL_TEXT(expected_status, run.status, (run.out + run.err).c_str());
    boost::system::error_code error;
    json::value value = json::parse(run.out, error);
    if (error || !value.is_object()) FAIL(("not a JSON object: " + run.out).c_str());
    return value.as_object();
  }

  // `firmware update` refused with `message` on stderr, nothing printed on stdout.
  void check_update_refused(const fs::path& bundle, const std::string& message) {
    const Run run = stackctl({"firmware", "update", bundle.string()});
    CHECK_EQUAL_TEXT(exit_failed, run.status, (run.out + run.err).c_str());
    STRCMP_EQUAL("", run.out.c_str());
    if (!contains(run.err, "stackctl: firmware update: " + message)) {
      FAIL(("stderr \"" + run.err + "\" lacks \"" + message + "\"").c_str());
    }
  }

  std::string update_rootfs(std::uint64_t seed = 2) {
    return random_bytes(update_rootfs_bytes, seed);
  }

  // A bundle as image/build.sh step 7 makes it: jq's manifest, tar -cf of the two files.
  fs::path make_bundle(const std::string& name, const BundleSpec& spec) {
    const fs::path work = dir.path() / (name + ".work");
    fs::create_directories(work);
    support::write_file(work / "rootfs.squashfs", spec.rootfs);
    const std::string sha256 =
        spec.manifest_sha256.value_or(sha256_of_file(work / "rootfs.squashfs"));
    const std::uint64_t bytes = spec.manifest_bytes.value_or(spec.rootfs.size());
    const support::CommandResult manifest = support::run_command(
        {"jq",
         "-n",
         "--arg",
         "format",
         spec.format,
         "--arg",
         "board",
         spec.board,
         "--arg",
         "version",
         spec.version,
         "--arg",
         "variant",
         "normal",
         "--arg",
         "commit",
         "52c95fb1a2b3",
         "--argjson",
         "bytes",
         std::to_string(bytes),
         "--arg",
         "sha256",
         sha256,
         "{format: $format, board: $board, version: $version, variant: $variant, commit: $commit, "
         "rootfs: {file: \"rootfs.squashfs\", bytes: $bytes, sha256: $sha256}}"});
    CHECK_EQUAL_TEXT(0, manifest.status, manifest.output.c_str());
    support::write_file(work / "manifest.json", manifest.output);
    const fs::path bundle = dir.path() / (name + ".bundle");
    std::vector<std::string> tar = {"tar", "-C", work.string(), "-cf", bundle.string()};
    if (spec.with_manifest) tar.push_back("manifest.json");
    tar.push_back("rootfs.squashfs");
    for (const std::string& extra : spec.extra_files) {
      support::write_file(work / extra, "an extra file\n");
      tar.push_back(extra);
    }
    run_ok(tar);
    return bundle;
  }

  fs::path make_update(const std::string& name = "update", const std::string& version = "2.0.0") {
    BundleSpec spec;
    spec.rootfs = update_rootfs();
    spec.version = version;
    return make_bundle(name, spec);
  }

  Snapshot snapshot() {
    return {support::read_file(grubenv), support::read_file(slot_a), support::read_file(slot_b)};
  }

  void check_unchanged(const Snapshot& before) {
    const Snapshot now = snapshot();
    CHECK_TEXT(before.grubenv == now.grubenv, "grubenv changed");
    CHECK_TEXT(before.slot_a == now.slot_a, "slot a changed");
    CHECK_TEXT(before.slot_b == now.slot_b, "slot b changed");
    CHECK_FALSE(fs::exists(grubenv.string() + ".new"));
  }

  // `slot` holds `rootfs` at its start and the filler after it, its size unchanged.
  void check_slot_holds(const fs::path& slot, const std::string& rootfs) {
    const std::string bytes = support::read_file(slot);
    CHECK_EQUAL(slot_bytes, bytes.size());
    CHECK_TEXT(bytes.compare(0, rootfs.size(), rootfs) == 0,
               (slot.string() + ": not the root file system").c_str());
    CHECK_TEXT(bytes.find_first_not_of(slot_filler, rootfs.size()) == std::string::npos,
               (slot.string() + ": the bytes after the root file system changed").c_str());
  }

  // Update, then GRUB's transition 1 (image/grub.cfg): trial_left=0 saved, the trial slot booted.
  void update_and_boot_the_trial(const fs::path& bundle) {
    stackctl_ok({"firmware", "update", bundle.string()});
    editenv({"trial_left=0"});
    boot_slot('b');
  }

  // GRUB's transition 2 on the boot after an unmarked trial: trial_slot cleared, rolled_back=1,
  // the active slot booted.
  void grub_rolls_back() {
    editenv({"trial_slot=", "rolled_back=1"});
    boot_slot('a');
  }

  std::string short_sha256(const std::string& sha256) {
    return sha256.substr(0, status_sha256_chars) + "...";
  }
};

// ---- status ---------------------------------------------------------------------------------

TEST(Firmware, StatusOfAFreshBox) {
  const Snapshot before = snapshot();
  const Run run = stackctl_ok({"firmware", "status"});
  STRCMP_EQUAL(("board qemu-x86_64, running 1.0.0 from slot a\n"
                "slot a: 1.0.0  active, booted  sha256 " +
                short_sha256(image_sha256) +
                "\n"
                "slot b: 1.0.0  standby  sha256 " +
                short_sha256(image_sha256) + "\n")
                   .c_str(),
               run.out.c_str());
  STRCMP_EQUAL("", run.err.c_str());

  const json::object status = stackctl_json({"firmware", "status"});
  STRCMP_EQUAL(board, status.at("board").as_string().c_str());
  STRCMP_EQUAL(image_version, status.at("running_version").as_string().c_str());
  STRCMP_EQUAL("a", status.at("booted").as_string().c_str());
  STRCMP_EQUAL("a", status.at("active").as_string().c_str());
  CHECK(status.at("trial").is_null());
  CHECK_FALSE(status.at("trial_left").as_bool());
  CHECK_FALSE(status.at("rolled_back").as_bool());
  for (const char* name : {"a", "b"}) {
    const json::object& slot = status.at("slots").at(name).as_object();
    STRCMP_EQUAL(image_version, slot.at("version").as_string().c_str());
    CHECK_EQUAL(static_cast<std::int64_t>(image_rootfs_bytes),
                slot.at("bytes").to_number<std::int64_t>());
    STRCMP_EQUAL(image_sha256.c_str(), slot.at("sha256").as_string().c_str());
    CHECK_EQUAL(std::string(name) == "a", slot.at("active").as_bool());
    CHECK_EQUAL(std::string(name) == "a", slot.at("booted").as_bool());
    CHECK_FALSE(slot.at("trial").as_bool());
  }
  check_unchanged(before);
}

TEST(Firmware, StatusOfABootThatDoesNotNameItsSlot) {
  support::write_file(cmdline, "BOOT_IMAGE=/boot/vmlinuz ro quiet\n");
  const json::object status = stackctl_json({"firmware", "status"});
  STRCMP_EQUAL("?", status.at("booted").as_string().c_str());
  CHECK_FALSE(status.at("slots").at("a").at("booted").as_bool());
  CHECK_FALSE(status.at("slots").at("b").at("booted").as_bool());
}

// ---- update ---------------------------------------------------------------------------------

TEST(Firmware, UpdateWritesTheOtherSlotAndSetsATrial) {
  const std::string rootfs = update_rootfs();
  const fs::path bundle = make_update();
  const std::string rootfs_sha256 = sha256_of_file(dir.path() / "update.work" / "rootfs.squashfs");
  const std::string before_a = support::read_file(slot_a);

  const Run run = stackctl_ok({"firmware", "update", bundle.string()});
  STRCMP_EQUAL(
      "slot b now holds 2.0.0; the next boot tries it once, and it becomes the active slot when "
      "the "
      "box is healthy\n",
      run.out.c_str());
  std::string progress;
  for (int percent = progress_step_percent; percent <= 100; percent += progress_step_percent) {
    progress += "stackctl: firmware update " + std::to_string(percent) +
                "% (checked, written, read back)\n";
  }
  STRCMP_EQUAL(progress.c_str(), run.err.c_str());

  check_slot_holds(slot_b, rootfs);
  CHECK_TEXT(before_a == support::read_file(slot_a), "slot a changed");
  std::map<std::string, std::string> expected = image_env();
  expected["trial_slot"] = "b";
  expected["trial_left"] = "1";
  expected["rolled_back"] = "0";
  expected["slot_b_version"] = "2.0.0";
  expected["slot_b_bytes"] = std::to_string(update_rootfs_bytes);
  expected["slot_b_sha256"] = rootfs_sha256;
  check_env(expected);

  const Run status = stackctl_ok({"firmware", "status"});
  STRCMP_EQUAL(("board qemu-x86_64, running 1.0.0 from slot a\n"
                "slot a: 1.0.0  active, booted  sha256 " +
                short_sha256(image_sha256) +
                "\n"
                "slot b: 2.0.0  trial (one boot left)  sha256 " +
                short_sha256(rootfs_sha256) + "\n")
                   .c_str(),
               status.out.c_str());
  const json::object json_status = stackctl_json({"firmware", "status"});
  STRCMP_EQUAL("a", json_status.at("active").as_string().c_str());
  STRCMP_EQUAL("b", json_status.at("trial").as_string().c_str());
  CHECK(json_status.at("trial_left").as_bool());
  const json::object& slot = json_status.at("slots").at("b").as_object();
  CHECK(slot.at("trial").as_bool());
  CHECK_FALSE(slot.at("active").as_bool());
  STRCMP_EQUAL("2.0.0", slot.at("version").as_string().c_str());
  CHECK_EQUAL(static_cast<std::int64_t>(update_rootfs_bytes),
              slot.at("bytes").to_number<std::int64_t>());
  STRCMP_EQUAL(rootfs_sha256.c_str(), slot.at("sha256").as_string().c_str());
}

TEST(Firmware, UpdateSaysWhatItWroteInJson) {
  const fs::path bundle = make_update();
  const std::string rootfs_sha256 = sha256_of_file(dir.path() / "update.work" / "rootfs.squashfs");
  const json::object outcome = stackctl_json({"firmware", "update", bundle.string()});
  CHECK(outcome.at("ok").as_bool());
  STRCMP_EQUAL("b", outcome.at("slot").as_string().c_str());
  STRCMP_EQUAL("2.0.0", outcome.at("version").as_string().c_str());
  CHECK_EQUAL(static_cast<std::int64_t>(update_rootfs_bytes),
              outcome.at("bytes").to_number<std::int64_t>());
  STRCMP_EQUAL(rootfs_sha256.c_str(), outcome.at("sha256").as_string().c_str());
  check_slot_holds(slot_b, update_rootfs());
}

TEST(Firmware, ASecondUpdateWhileTheTrialIsPendingIsRefused) {
  stackctl_ok({"firmware", "update", make_update().string()});
  BundleSpec spec;
  spec.rootfs = update_rootfs(3);
  spec.version = "3.0.0";
  const fs::path second = make_bundle("second", spec);
  const std::string refusal =
      "a trial boot of slot b is pending: reboot into it (or roll back) before another update";

  const Snapshot before = snapshot();
  check_update_refused(second, refusal);
  check_unchanged(before);

  // Nor from the trial boot itself, before it is marked good.
  editenv({"trial_left=0"});
  boot_slot('b');
  const Snapshot in_trial = snapshot();
  check_update_refused(second, refusal);
  check_unchanged(in_trial);
}

// ---- mark-good ------------------------------------------------------------------------------

TEST(Firmware, MarkGoodAfterGrubsOneTryMakesTheTrialSlotActive) {
  const fs::path bundle = make_update();
  const std::string rootfs_sha256 = sha256_of_file(dir.path() / "update.work" / "rootfs.squashfs");
  update_and_boot_the_trial(bundle);
  const Run status = stackctl_ok({"firmware", "status"});
  STRCMP_EQUAL(("board qemu-x86_64, running 1.0.0 from slot b\n"
                "slot a: 1.0.0  active  sha256 " +
                short_sha256(image_sha256) +
                "\n"
                "slot b: 2.0.0  trial (booting), booted  sha256 " +
                short_sha256(rootfs_sha256) + "\n")
                   .c_str(),
               status.out.c_str());
  const std::string before_a = support::read_file(slot_a), before_b = support::read_file(slot_b);

  const Run run = stackctl_ok({"firmware", "mark-good"});
  STRCMP_EQUAL("the booted slot is now the active one\n", run.out.c_str());
  std::map<std::string, std::string> expected = image_env();
  expected["active_slot"] = "b";
  expected["trial_slot"] = "";
  expected["trial_left"] = "0";
  expected["rolled_back"] = "0";
  expected["slot_b_version"] = "2.0.0";
  expected["slot_b_bytes"] = std::to_string(update_rootfs_bytes);
  expected["slot_b_sha256"] = rootfs_sha256;
  check_env(expected);
  CHECK_TEXT(before_a == support::read_file(slot_a) && before_b == support::read_file(slot_b),
             "mark-good changed a slot");

  // Marked: marking again has nothing to do.
  const Snapshot marked = snapshot();
  const Run again = stackctl_ok({"firmware", "mark-good"});
  STRCMP_EQUAL("the active slot runs: nothing to mark\n", again.out.c_str());
  check_unchanged(marked);

  // Slot b is the good one now: the next update goes to slot a.
  BundleSpec spec;
  spec.rootfs = update_rootfs(3);
  spec.version = "3.0.0";
  const json::object outcome =
      stackctl_json({"firmware", "update", make_bundle("third", spec).string()});
  STRCMP_EQUAL("a", outcome.at("slot").as_string().c_str());
  check_slot_holds(slot_a, spec.rootfs);
  CHECK_TEXT(before_b == support::read_file(slot_b), "the update of slot a changed slot b");
  const std::map<std::string, std::string> after = env_list();
  STRCMP_EQUAL("b", after.at("active_slot").c_str());
  STRCMP_EQUAL("a", after.at("trial_slot").c_str());
  STRCMP_EQUAL("3.0.0", after.at("slot_a_version").c_str());
}

TEST(Firmware, MarkGoodOnTheActiveSlotWithNoTrialHasNothingToMark) {
  const Snapshot before = snapshot();
  const Run run = stackctl_ok({"firmware", "mark-good"});
  STRCMP_EQUAL("the active slot runs: nothing to mark\n", run.out.c_str());
  const json::object outcome = stackctl_json({"firmware", "mark-good"});
  CHECK(outcome.at("ok").as_bool());
  CHECK_FALSE(outcome.at("changed").as_bool());
  check_unchanged(before);
}

TEST(Firmware, MarkGoodRefusesABootOfNeitherTheActiveNorTheTrialSlot) {
  boot_slot('b');
  const Snapshot before = snapshot();
  const Run run = stackctl({"firmware", "mark-good"});
  CHECK_EQUAL(exit_failed, run.status);
  STRCMP_EQUAL(
      "stackctl: firmware mark-good: this boot runs slot b, which is neither the active slot (a) "
      "nor a "
      "pending trial\n",
      run.err.c_str());
  check_unchanged(before);
}

// ---- GRUB's automatic rollback ----------------------------------------------------------------

TEST(Firmware, StatusReportsGrubsAutomaticRollback) {
  const fs::path bundle = make_update();
  const std::string rootfs_sha256 = sha256_of_file(dir.path() / "update.work" / "rootfs.squashfs");
  update_and_boot_the_trial(bundle);
  grub_rolls_back();  // nobody marked slot b good

  const Run run = stackctl_ok({"firmware", "status"});
  STRCMP_EQUAL(("board qemu-x86_64, running 1.0.0 from slot a\n"
                "slot a: 1.0.0  active, booted  sha256 " +
                short_sha256(image_sha256) +
                "\n"
                "slot b: 2.0.0  standby  sha256 " +
                short_sha256(rootfs_sha256) +
                "\n"
                "the last update did not become healthy: GRUB went back to slot a\n")
                   .c_str(),
               run.out.c_str());
  const json::object status = stackctl_json({"firmware", "status"});
  CHECK(status.at("rolled_back").as_bool());
  CHECK(status.at("trial").is_null());
  CHECK_FALSE(status.at("trial_left").as_bool());
  STRCMP_EQUAL("a", status.at("active").as_string().c_str());

  // The old slot runs and is active: nothing to mark, and the notice stays.
  const Snapshot before = snapshot();
  stackctl_ok({"firmware", "mark-good"});
  check_unchanged(before);

  // A new update is allowed again, into slot b, and clears the notice.
  BundleSpec spec;
  spec.rootfs = update_rootfs(4);
  spec.version = "2.0.1";
  stackctl_ok({"firmware", "update", make_bundle("fixed", spec).string()});
  check_slot_holds(slot_b, spec.rootfs);
  const std::map<std::string, std::string> after = env_list();
  STRCMP_EQUAL("0", after.at("rolled_back").c_str());
  STRCMP_EQUAL("b", after.at("trial_slot").c_str());
  STRCMP_EQUAL("2.0.1", after.at("slot_b_version").c_str());
}

// ---- rollback by hand -----------------------------------------------------------------------

TEST(Firmware, RollbackMakesTheOtherSlotActiveAfterCheckingIt) {
  const std::string before_a = support::read_file(slot_a), before_b = support::read_file(slot_b);
  const Run run = stackctl_ok({"firmware", "rollback"});
  STRCMP_EQUAL("slot b is the active slot; it runs from the next boot\n", run.out.c_str());
  std::map<std::string, std::string> expected = image_env();
  expected["active_slot"] = "b";
  expected["rolled_back"] = "0";
  check_env(expected);
  CHECK_TEXT(before_a == support::read_file(slot_a) && before_b == support::read_file(slot_b),
             "rollback changed a slot");

  // Before the reboot, the box still runs slot a: rolling back again makes a active again.
  const json::object outcome = stackctl_json({"firmware", "rollback"});
  CHECK(outcome.at("ok").as_bool());
  STRCMP_EQUAL("a", outcome.at("active").as_string().c_str());
  expected["active_slot"] = "a";
  check_env(expected);
}

TEST(Firmware, RollbackChecksOnlyTheRecordedBytesOfTheOtherSlot) {
  flip_byte(slot_b, slot_bytes - 1);  // past the recorded root file system
  stackctl_ok({"firmware", "rollback"});
  STRCMP_EQUAL("b", env_list().at("active_slot").c_str());
}

TEST(Firmware, RollbackIsRefusedWhenTheOtherSlotNoLongerMatchesItsSha256) {
  for (const std::uint64_t offset :
       {std::uint64_t{0}, image_rootfs_bytes / 2, image_rootfs_bytes - 1}) {
    write_slot(slot_b, image_rootfs);
    flip_byte(slot_b, offset);
    const Snapshot before = snapshot();
    const Run run = stackctl({"firmware", "rollback"});
    CHECK_EQUAL(exit_failed, run.status);
    STRCMP_EQUAL(
        "stackctl: firmware rollback: slot b does not match its recorded SHA-256 (version 1.0.0): "
        "refusing to make it active\n",
        run.err.c_str());
    STRCMP_EQUAL("", run.out.c_str());
    check_unchanged(before);
  }
  // Shorter than the recorded bytes.
  support::write_file(slot_b, image_rootfs.substr(0, image_rootfs_bytes - 1));
  const Snapshot before = snapshot();
  CHECK_EQUAL(exit_failed, stackctl({"firmware", "rollback"}).status);
  check_unchanged(before);
  const json::object refusal = stackctl_json({"firmware", "rollback"}, exit_failed);
  CHECK_FALSE(refusal.at("ok").as_bool());
  STRCMP_EQUAL("rollback", refusal.at("step").as_string().c_str());
  CHECK(contains(std::string(refusal.at("error").as_string()),
                 "does not match its recorded SHA-256"));
}

TEST(Firmware, RollbackIsRefusedWhenTheOtherSlotHasNoRecordedVersion) {
  const std::string message =
      "stackctl: firmware rollback: slot b holds no firmware that was recorded: nothing to roll "
      "back to\n";
  // What an update cut short leaves: the slot marked empty.
  editenv({"slot_b_version=", "slot_b_bytes=0", "slot_b_sha256="});
  Snapshot before = snapshot();
  Run run = stackctl({"firmware", "rollback"});
  CHECK_EQUAL(exit_failed, run.status);
  STRCMP_EQUAL(message.c_str(), run.err.c_str());
  check_unchanged(before);

  // No slot b variables at all.
  run_ok({"grub-editenv", grubenv.string(), "unset", "slot_b_version", "slot_b_bytes",
          "slot_b_sha256"});
  before = snapshot();
  run = stackctl({"firmware", "rollback"});
  CHECK_EQUAL(exit_failed, run.status);
  STRCMP_EQUAL(message.c_str(), run.err.c_str());
  check_unchanged(before);
}

TEST(Firmware, RollbackWithAPendingTrialCancelsItAndKeepsTheActiveSlot) {
  stackctl_ok({"firmware", "update", make_update().string()});
  std::map<std::string, std::string> expected = env_list();
  const std::string before_a = support::read_file(slot_a), before_b = support::read_file(slot_b);

  const Run run = stackctl_ok({"firmware", "rollback"});
  STRCMP_EQUAL("slot a is the active slot; it runs from the next boot\n", run.out.c_str());
  expected["trial_slot"] = "";
  expected["trial_left"] = "0";
  check_env(expected);  // active_slot=a, slot b's record kept
  CHECK_TEXT(before_a == support::read_file(slot_a) && before_b == support::read_file(slot_b),
             "rollback changed a slot");
  const json::object status = stackctl_json({"firmware", "status"});
  CHECK(status.at("trial").is_null());
  CHECK_FALSE(status.at("rolled_back").as_bool());
}

TEST(Firmware, RollbackFromTheTrialBootCancelsTheTrial) {
  update_and_boot_the_trial(make_update());
  const json::object outcome = stackctl_json({"firmware", "rollback"});
  STRCMP_EQUAL("a", outcome.at("active").as_string().c_str());
  const std::map<std::string, std::string> after = env_list();
  STRCMP_EQUAL("a", after.at("active_slot").c_str());
  STRCMP_EQUAL("", after.at("trial_slot").c_str());
  STRCMP_EQUAL("0", after.at("trial_left").c_str());
}

TEST(Firmware, RollbackByHandAfterGrubsRollbackClearsItsNotice) {
  update_and_boot_the_trial(make_update());
  grub_rolls_back();
  const Run run =
      stackctl_ok({"firmware", "rollback"});  // back to the update that failed, by choice
  STRCMP_EQUAL("slot b is the active slot; it runs from the next boot\n", run.out.c_str());
  const std::map<std::string, std::string> after = env_list();
  STRCMP_EQUAL("b", after.at("active_slot").c_str());
  STRCMP_EQUAL("0", after.at("rolled_back").c_str());
  const Run status = stackctl_ok({"firmware", "status"});
  CHECK_FALSE(contains(status.out, "GRUB went back"));
}

// ---- refusals that change nothing -------------------------------------------------------------

TEST(Firmware, ABundleThatDoesNotMatchItsSha256ChangesNothing) {
  BundleSpec spec;
  spec.rootfs = update_rootfs();
  support::write_file(dir.path() / "undamaged.squashfs", spec.rootfs);
  spec.manifest_sha256 = sha256_of_file(dir.path() / "undamaged.squashfs");
  spec.rootfs[update_rootfs_bytes / 2] ^= 1;  // damaged after the manifest was made
  const fs::path bundle = make_bundle("damaged", spec);
  const Snapshot before = snapshot();
  check_update_refused(
      bundle,
      "the bundle's root file system does not match its SHA-256 (corrupt or altered): "
      "nothing was written\n");
  check_unchanged(before);

  const json::object refusal = stackctl_json({"firmware", "update", bundle.string()}, exit_failed);
  CHECK_FALSE(refusal.at("ok").as_bool());
  STRCMP_EQUAL("update", refusal.at("step").as_string().c_str());
  CHECK(contains(std::string(refusal.at("error").as_string()), "does not match its SHA-256"));
  check_unchanged(before);
}

TEST(Firmware, ABundleForAnotherBoardChangesNothing) {
  BundleSpec spec;
  spec.rootfs = update_rootfs();
  spec.board = "rpi4-arm64";
  const fs::path bundle = make_bundle("other-board", spec);
  const Snapshot before = snapshot();
  check_update_refused(bundle, "the bundle is for board rpi4-arm64; this box is qemu-x86_64\n");
  check_unchanged(before);
}

TEST(Firmware, ABundleOfAnotherFormatChangesNothing) {
  BundleSpec spec;
  spec.rootfs = update_rootfs();
  spec.format = "stacknode-bundle-2";
  const fs::path bundle = make_bundle("other-format", spec);
  const Snapshot before = snapshot();
  check_update_refused(bundle,
                       "the bundle's format is 'stacknode-bundle-2', not stacknode-bundle-1\n");
  check_unchanged(before);
}

TEST(Firmware, AManifestWhoseBytesDifferFromTheTarEntryChangesNothing) {
  BundleSpec spec;
  spec.rootfs = update_rootfs();
  spec.manifest_bytes = update_rootfs_bytes + 1;
  const fs::path bundle = make_bundle("bytes", spec);
  const Snapshot before = snapshot();
  check_update_refused(bundle, "the manifest says the root file system is " +
                                   std::to_string(update_rootfs_bytes + 1) +
                                   " bytes; the bundle holds " +
                                   std::to_string(update_rootfs_bytes) + "\n");
  check_unchanged(before);
}

TEST(Firmware, ABundleWithAnExtraFileChangesNothing) {
  BundleSpec spec;
  spec.rootfs = update_rootfs();
  spec.extra_files = {"extra.txt"};
  const fs::path bundle = make_bundle("extra", spec);
  const Snapshot before = snapshot();
  check_update_refused(
      bundle,
      "the bundle holds extra.txt (only one manifest.json and one rootfs.squashfs belong in it)\n");
  check_unchanged(before);
}

TEST(Firmware, ABundleWithoutAManifestChangesNothing) {
  BundleSpec spec;
  spec.rootfs = update_rootfs();
  spec.with_manifest = false;
  const fs::path bundle = make_bundle("no-manifest", spec);
  const Snapshot before = snapshot();
  check_update_refused(bundle, "the bundle lacks manifest.json\n");
  check_unchanged(before);
}

TEST(Firmware, ATruncatedBundleChangesNothing) {
  constexpr std::uint64_t tar_block = 512;
  const fs::path bundle = make_update();
  const std::uint64_t full = fs::file_size(bundle);
  const auto blocks = [](std::uint64_t bytes) {
    return (bytes + tar_block - 1) / tar_block * tar_block;
  };
  // Where rootfs.squashfs's data starts: manifest.json's header and data, then its own header.
  const std::uint64_t manifest_bytes = fs::file_size(dir.path() / "update.work" / "manifest.json");
  const std::uint64_t rootfs_data = tar_block + blocks(manifest_bytes) + tar_block;
  const Snapshot before = snapshot();

  fs::resize_file(bundle, rootfs_data + update_rootfs_bytes / 2);  // mid-rootfs
  check_update_refused(bundle, "the bundle is cut short inside rootfs.squashfs\n");
  check_unchanged(before);

  // Cut after the rootfs data, where the end-of-archive blocks begin.
  const fs::path whole = make_update("whole");
  CHECK(fs::file_size(whole) == full);
  fs::resize_file(whole, rootfs_data + blocks(update_rootfs_bytes));
  check_update_refused(whole, "the bundle ends inside its tar headers (cut short?)\n");
  check_unchanged(before);
}

TEST(Firmware, SomethingThatIsNotATarChangesNothing) {
  const Snapshot before = snapshot();
  support::write_file(dir.path() / "text.bundle", "this is not a tar file\n");
  check_update_refused(dir.path() / "text.bundle",
                       "the bundle ends inside its tar headers (cut short?)\n");
  support::write_file(dir.path() / "random.bundle", random_bytes(64 * 1024, 5));
  check_update_refused(
      dir.path() / "random.bundle",
      "the bundle is not a tar file stacknode wrote (a header's checksum or magic is wrong)\n");
  check_update_refused(dir.path() / "missing.bundle",
                       "cannot open the bundle " + (dir.path() / "missing.bundle").string());
  check_unchanged(before);
}

TEST(Firmware, ARootFileSystemLargerThanTheSlotChangesNothing) {
  BundleSpec spec;
  spec.rootfs = random_bytes(slot_bytes + 1, 6);
  const fs::path bundle = make_bundle("too-large", spec);
  const Snapshot before = snapshot();
  check_update_refused(bundle, "slot b holds " + std::to_string(slot_bytes) +
                                   " bytes, less than the " + std::to_string(slot_bytes + 1) +
                                   " of the bundle's root file system\n");
  check_unchanged(before);
}

TEST(Firmware, AnUpdateWhenTheBootedSlotIsNotTheActiveOneChangesNothing) {
  const fs::path bundle = make_update();
  // A rollback by hand made slot b active; the box has not restarted into it yet.
  stackctl_ok({"firmware", "rollback"});
  const Snapshot before = snapshot();
  check_update_refused(bundle,
                       "this boot runs slot a, not the active slot b: writing the other slot would "
                       "overwrite the only good one\n");
  check_unchanged(before);

  support::write_file(cmdline, "BOOT_IMAGE=/boot/vmlinuz ro\n");  // a boot that does not say
  const Snapshot unknown = snapshot();
  check_update_refused(bundle, "this boot runs slot ?, not the active slot b");
  check_unchanged(unknown);
}

TEST(Firmware, ACorruptGrubenvChangesNothing) {
  const fs::path bundle = make_update();
  // A damaged header.
  flip_byte(grubenv, 2);
  Snapshot before = snapshot();
  check_update_refused(
      bundle, grubenv.string() + ": grubenv does not start with '# GRUB Environment Block'\n");
  for (const std::vector<std::string>& verb : {std::vector<std::string>{"firmware", "status"},
                                               {"firmware", "rollback"},
                                               {"firmware", "mark-good"}}) {
    const Run run = stackctl(verb);
    CHECK_EQUAL_TEXT(exit_failed, run.status, verb[1].c_str());
    CHECK_TEXT(contains(run.err, "grubenv does not start with"), run.err.c_str());
  }
  check_unchanged(before);

  // A value grub.cfg would read otherwise, written by grub-editenv itself.
  flip_byte(grubenv, 2);
  editenv({"slot_b_version=$(reboot)"});
  before = snapshot();
  check_update_refused(bundle,
                       grubenv.string() + ": grubenv has a variable stacknode does not write");
  check_unchanged(before);

  // Cut short.
  fs::resize_file(grubenv, 1000);
  before = snapshot();
  check_update_refused(bundle, grubenv.string() + ": grubenv is 1000 bytes, not 1024\n");
  check_unchanged(before);

  // Missing.
  fs::remove(grubenv);
  const Run run = stackctl({"firmware", "update", bundle.string()});
  CHECK_EQUAL(exit_failed, run.status);
  CHECK_TEXT(contains(run.err, "cannot read " + grubenv.string()), run.err.c_str());
  CHECK_FALSE(fs::exists(grubenv));
  CHECK_TEXT(
      before.slot_a == support::read_file(slot_a) && before.slot_b == support::read_file(slot_b),
      "a slot changed");
}

// ---- the command line -------------------------------------------------------------------------

TEST(Firmware, UsageErrorsExitTwoAndChangeNothing) {
  const fs::path bundle = make_update();
  const Snapshot before = snapshot();
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"firmware", "frobnicate"}, "stackctl: unknown firmware command 'frobnicate'"},
      {{"firmware", "update"}, "stackctl: firmware update takes one argument: the bundle"},
      {{"firmware", "update", bundle.string(), bundle.string()}, "takes one argument: the bundle"},
      {{"firmware", "status", "extra"}, "stackctl: firmware status takes no arguments"},
      {{"firmware", "rollback", "b"}, "stackctl: firmware rollback takes no arguments"},
      {{"firmware", "status", "--force"}, "stackctl: unknown option --force"},
      {{"firmware", "update", bundle.string(), "--now"}, "stackctl: unknown option --now"},
      {{"firmware", "mark-good", "--reboot"}, "stackctl: unknown option --reboot"},
      {{"firmware", "status", "--reboot"}, "stackctl: unknown option --reboot"},
  };
  for (const Case& usage : cases) {
    const Run run = stackctl(usage.args);
    CHECK_EQUAL_TEXT(exit_usage, run.status, (usage.message + ": " + run.out + run.err).c_str());
    CHECK_TEXT(contains(run.err, usage.message + "\n"), run.err.c_str());
    CHECK_TEXT(contains(run.err, "usage: stackctl [--json] firmware status"), run.err.c_str());
  }
  // No verb at all: the usage, and exit 2; --help: the usage, and exit 0.
  const Run bare = stackctl({"firmware"});
  CHECK_EQUAL(exit_usage, bare.status);
  CHECK(contains(bare.out, "usage: stackctl [--json] firmware status"));
  const Run help = stackctl({"firmware", "--help"});
  CHECK_EQUAL(exit_ok, help.status);
  CHECK(contains(help.out, "stackctl [--json] firmware update BUNDLE [--reboot]"));
  check_unchanged(before);
}
