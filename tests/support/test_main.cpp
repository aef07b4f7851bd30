// main() of every CppUTest executable in tests/. CppUTest's new/delete leak detector is turned off:
// Boost and OpenSSL keep process-lifetime singletons that it would report as leaks; the asan
// preset's LeakSanitizer checks leaks instead, and knows those singletons.
#include <CppUTest/CommandLineTestRunner.h>
#include <CppUTest/MemoryLeakWarningPlugin.h>

int main(int argc, char** argv) {
  MemoryLeakWarningPlugin::turnOffNewDeleteOverloads();
  MemoryLeakWarningPlugin::saveAndDisableNewDeleteOverloads();
  return CommandLineTestRunner::RunAllTests(argc, argv);
}
