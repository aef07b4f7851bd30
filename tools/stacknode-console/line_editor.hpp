// The serial console's line input: keystrokes from a dumb terminal (or a person pasting into
// one) in, whole lines out. Pure code, fuzzed: every byte is untrusted. Printable ASCII is kept;
// backspace and DEL erase; Ctrl-U clears the line; Ctrl-C cancels it; CR or LF ends it; escape
// sequences (arrow and function keys: ESC [ ... final, ESC O x) are swallowed whole; every other
// control byte and everything past max_line_bytes is dropped (and rung as a bell).
#pragma once

#include <cstddef>
#include <string>

namespace stacknode::console {

// Long enough for a join token (about 150 characters) or a password; a menu choice is 1-2.
inline constexpr std::size_t max_line_bytes = 256;
// A CSI sequence longer than this is not a key: it ends the swallowing (the rest is dropped).
inline constexpr std::size_t max_escape_bytes = 16;

class LineEditor {
 public:
  enum class Event {
    none,       // nothing for the caller: keep feeding
    echo,       // the byte was added: echo it (unless the field is secret)
    erase,      // the last byte was erased: echo "\b \b"
    clear,      // the line was cleared: erase what was echoed (size_before_clear() bytes)
    bell,       // the byte was refused (too long, or an unknown control byte)
    line,       // a line ended: take it with take_line()
    cancelled,  // Ctrl-C: the line was dropped
  };

  Event feed(char byte);
  std::string take_line();                 // the finished line; the editor starts empty again
  const std::string& text() const { return text_; }
  std::size_t size_before_clear() const { return cleared_; }

 private:
  enum class Escape { none, started, csi, ss3 };
  std::string text_;
  Escape escape_ = Escape::none;
  std::size_t escape_length_ = 0;
  std::size_t cleared_ = 0;
  bool last_was_cr_ = false;  // CR LF is one end of line, not two
};

}  // namespace stacknode::console
