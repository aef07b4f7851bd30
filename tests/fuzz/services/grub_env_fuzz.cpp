// libFuzzer target over GRUB's environment block parser (services/node/core: GrubEnv::parse), which
// reads the grubenv that the boot loader, grub-editenv and stackctl firmware all write. Sanitizers
// catch memory errors; the invariants below catch wrong answers and stop with std::abort().
//
// Invariants checked:
//  1. A refusal has a one-line message.
//  2. An accepted block holds only names and values that valid_name/valid_value allow, each name
//     once; render() gives exactly grub_env_bytes bytes that parse again to the same variables in
//     the same order, and render again to the same bytes.
//  3. A block that starts with grub-editenv's header and warning line renders back to exactly the
//     input: the variables have one spelling.
// Each input is parsed as it is and, so that mutations reach the line parser rather than stopping
// at the size or the header, as the header and warning line followed by the input, cut or padded
// with '#' to grub_env_bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "stacknode/node/grub_env.hpp"

using namespace stacknode::node;

namespace {

void check(bool condition) {
  if (!condition) std::abort();
}

void check_parse(std::string_view bytes) {
  std::string error;
  const std::optional<GrubEnv> env = GrubEnv::parse(bytes, error);
  if (!env) {
    check(!error.empty() && error.find('\n') == std::string::npos);
    return;
  }
  std::set<std::string> names;
  for (const auto& [name, value] : env->variables()) {
    check(GrubEnv::valid_name(name) && GrubEnv::valid_value(value));
    check(names.insert(name).second);
  }
  const std::optional<std::string> rendered = env->render();
  check(rendered.has_value() && rendered->size() == grub_env_bytes);
  std::string again_error;
  const std::optional<GrubEnv> again = GrubEnv::parse(*rendered, again_error);
  check(again.has_value() && again->variables() == env->variables());
  check(again->render() == rendered);
  const std::string header = std::string(grub_env_header) + std::string(grub_env_warning);
  if (bytes.starts_with(header)) check(*rendered == bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_parse(input);
  std::string block = std::string(grub_env_header) + std::string(grub_env_warning);
  block.append(input.substr(0, grub_env_bytes - block.size()));
  block.resize(grub_env_bytes, '#');
  check_parse(block);
  return 0;
}
