// The serial console's line editor (line_editor.hpp).
#include "line_editor.hpp"

namespace stacknode::console {

namespace {
constexpr char escape = 0x1b;
constexpr char control_c = 0x03;
constexpr char control_u = 0x15;
constexpr char backspace = 0x08;
constexpr char del = 0x7f;
}  // namespace

LineEditor::Event LineEditor::feed(char byte) {
  const bool after_cr = last_was_cr_;
  last_was_cr_ = false;
  // Escape sequences: swallowed to their final byte.
  if (escape_ == Escape::started) {
    escape_ = byte == '[' ? Escape::csi : byte == 'O' ? Escape::ss3 : Escape::none;
    escape_length_ = 0;
    return Event::none;
  }
  if (escape_ == Escape::ss3) {
    escape_ = Escape::none;
    return Event::none;
  }
  if (escape_ == Escape::csi) {
    const auto value = static_cast<unsigned char>(byte);
    if ((value >= 0x40 && value <= 0x7e) || ++escape_length_ > max_escape_bytes) escape_ = Escape::none;
    return Event::none;
  }
  switch (byte) {
    case escape:
      escape_ = Escape::started;
      return Event::none;
    case '\r':
      last_was_cr_ = true;
      return Event::line;
    case '\n':
      return after_cr ? Event::none : Event::line;
    case backspace:
    case del:
      if (text_.empty()) return Event::bell;
      text_.pop_back();
      return Event::erase;
    case control_u:
      cleared_ = text_.size();
      text_.clear();
      return Event::clear;
    case control_c:
      text_.clear();
      return Event::cancelled;
    default:
      break;
  }
  const auto value = static_cast<unsigned char>(byte);
  if (value < 0x20 || value > 0x7e || text_.size() >= max_line_bytes) return Event::bell;
  text_ += byte;
  return Event::echo;
}

std::string LineEditor::take_line() {
  std::string line;
  line.swap(text_);
  return line;
}

}  // namespace stacknode::console
