// libFuzzer target over the serial console's line editor: any bytes typed at the console. Every
// finished line holds only printable ASCII and fits max_line_bytes, and what the menu makes of it
// is a number in range or nothing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "line_editor.hpp"
#include "menu.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace stacknode::console;
  LineEditor editor;
  for (std::size_t index = 0; index < size; ++index) {
    if (editor.feed(static_cast<char>(data[index])) != LineEditor::Event::line) continue;
    const std::string line = editor.take_line();
    if (line.size() > max_line_bytes) std::abort();
    for (const char c : line) {
      if (c < 0x20 || c > 0x7e) std::abort();
    }
    const auto item = parse_choice(line);
    if (item && (static_cast<int>(*item) < 1 || static_cast<int>(*item) > item_count)) std::abort();
  }
  if (editor.text().size() > max_line_bytes) std::abort();
  return 0;
}
