// Skipping a whole test executable loudly: prints the reason and exits with the status that
// ctest's SKIP_RETURN_CODE turns into "Skipped" (never "Passed").
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace stacknode::test {

inline constexpr int skip_exit_status = 77;

[[noreturn]] inline void skip_all(std::string_view reason) {
  std::fprintf(stderr, "SKIPPED: %.*s\n", static_cast<int>(reason.size()), reason.data());
  std::fflush(stderr);
  std::_Exit(skip_exit_status);
}

}  // namespace stacknode::test
