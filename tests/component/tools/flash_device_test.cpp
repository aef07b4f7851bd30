// Component test of stacknode-flash (tools/flash) onto real block devices: loop devices the test
// attaches and detaches itself (root). A free device is written and read back equal to the image;
// a mounted one, one too small, and a partition are refused with the device unchanged.
#include <unistd.h>

#include <CppUTest/TestHarness.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "flash_support.hpp"
#include "process.hpp"
#include "skip.hpp"

using namespace stacknode::test;
using namespace stacknode::test::flash;

namespace {

constexpr int exit_refused = 2;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A loop device over a backing file of `bytes`, detached (and unmounted) when this ends.
class LoopDevice {
 public:
  LoopDevice(const std::filesystem::path& backing, std::uint64_t bytes, bool partitions = false) {
    CHECK_EQUAL(0, run_command({"truncate", "-s", std::to_string(bytes), backing.string()}).status);
    std::vector<std::string> argv = {"losetup", "--find", "--show"};
    if (partitions) argv.push_back("--partscan");
    argv.push_back(backing.string());
    const CommandResult attached = run_command(argv);
    CHECK_EQUAL_TEXT(0, attached.status, attached.output.c_str());
    device_ = attached.output.substr(0, attached.output.find('\n'));
  }
  ~LoopDevice() {
    if (!mount_point_.empty()) run_command({"umount", mount_point_.string()});
    run_command({"losetup", "--detach", device_});
  }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  const std::string& path() const { return device_; }
  void mount_ext4(const std::filesystem::path& at) {
    CHECK_EQUAL(0, run_command({"mkfs.ext4", "-q", "-F", device_}).status);
    std::filesystem::create_directories(at);
    const CommandResult mounted = run_command({"mount", device_, at.string()});
    CHECK_EQUAL_TEXT(0, mounted.status, mounted.output.c_str());
    mount_point_ = at;
  }

 private:
  std::string device_;
  std::filesystem::path mount_point_;
};

std::string sha256_of(const std::string& path, std::uint64_t bytes) {
  return run_command({"sh", "-c", "head -c " + std::to_string(bytes) + " '" + path + "' | sha256sum"}).output;
}

}  // namespace

TEST_GROUP(FlashDevice) {
  TempDir dir;
  std::filesystem::path image, bmap;
  void setup() override {
    if (::geteuid() != 0) skip_all("loop devices need root");
    if (!have_program("losetup") || !std::filesystem::exists("/dev/loop-control")) {
      skip_all("no loop devices here (losetup, /dev/loop-control)");
    }
    require_program("bmaptool", "bmap-tools");
    image = dir.path() / "stacknode.img";
    bmap = dir.path() / "stacknode.img.bmap";
    make_image(image);
    make_bmap(image, bmap);
  }
};

TEST(FlashDevice, AFreeDeviceIsWrittenAndReadBackEqual) {
  LoopDevice device(dir.path() / "disk", image_bytes + 8 * mib);
  // Old data on the device where the image has a hole stays (as with bmaptool): only the map's
  // blocks are written, and the image's file systems do not read the rest.
  const CommandResult result = run_flash({image.string(), device.path()});
  CHECK_EQUAL_TEXT(0, result.status, result.output.c_str());
  CHECK(contains(result.output, "read back identical"));
  CHECK(same_content(image, device.path()));
}

TEST(FlashDevice, AMountedDeviceIsRefusedAndLeftAlone) {
  LoopDevice device(dir.path() / "disk", image_bytes + 8 * mib);
  device.mount_ext4(dir.path() / "mnt");
  const std::string before = sha256_of(device.path(), image_bytes);
  const CommandResult result = run_flash({image.string(), device.path()});
  CHECK_EQUAL_TEXT(exit_refused, result.status, result.output.c_str());
  CHECK(contains(result.output, "is mounted on " + (dir.path() / "mnt").string()));
  CHECK(contains(result.output, "--force"));
  CHECK_EQUAL(before, sha256_of(device.path(), image_bytes));
}

TEST(FlashDevice, ADeviceSmallerThanTheImageIsRefused) {
  LoopDevice device(dir.path() / "disk", image_bytes / 2);
  const CommandResult result = run_flash({image.string(), device.path()});
  CHECK_EQUAL_TEXT(exit_refused, result.status, result.output.c_str());
  CHECK(contains(result.output, "less than the image's"));
}

TEST(FlashDevice, APartitionIsRefusedWithoutForce) {
  const std::filesystem::path backing = dir.path() / "disk";
  CHECK_EQUAL(0, run_command({"truncate", "-s", std::to_string(2 * image_bytes), backing.string()}).status);
  const CommandResult parted =
      run_command({"sh", "-c", "echo 'start=2048, type=L' | sfdisk -q '" + backing.string() + "'"});
  CHECK_EQUAL_TEXT(0, parted.status, parted.output.c_str());
  LoopDevice device(backing, 2 * image_bytes, true);
  // The kernel lists the partition in sysfs; without udev (as in a container) nobody makes its
  // /dev node, so the test makes one of its own from the numbers sysfs gives.
  const std::string name = std::filesystem::path(device.path()).filename().string() + "p1";
  const std::filesystem::path numbers = "/sys/class/block/" + name + "/dev";
  // losetup --partscan asks the kernel to read the table; where it does not, partx adds them
  // (it fails harmlessly for partitions the kernel has already added).
  if (!std::filesystem::exists(numbers)) run_command({"partx", "--add", device.path()});
  CHECK(poll_until([&] { return std::filesystem::exists(numbers); }, std::chrono::seconds(5)));
  std::string major_minor = read_file(numbers);
  major_minor.erase(major_minor.find_last_not_of("\n") + 1);
  const std::string partition = (dir.path() / name).string();
  const CommandResult made = run_command({"mknod", partition, "b", major_minor.substr(0, major_minor.find(':')),
                                          major_minor.substr(major_minor.find(':') + 1)});
  CHECK_EQUAL_TEXT(0, made.status, made.output.c_str());
  const CommandResult result = run_flash({image.string(), partition});
  CHECK_EQUAL_TEXT(exit_refused, result.status, result.output.c_str());
  CHECK(contains(result.output, "is a partition"));
}
