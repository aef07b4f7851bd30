// Unit tests of the serial console's pure parts: the line editor (every kind of keystroke) and
// the menu's choices and input checks.
#include <CppUTest/TestHarness.h>

#include <string>

#include "line_editor.hpp"
#include "menu.hpp"

using namespace stacknode::console;

namespace {
// Feeds every byte; returns the lines that ended, joined by '|', and the editor's events as
// letters (e echo, x erase, c clear, b bell, l line, k cancelled, . none).
std::string typed(LineEditor& editor, const std::string& keys, std::string* events = nullptr) {
  std::string lines;
  for (const char key : keys) {
    const LineEditor::Event event = editor.feed(key);
    if (events != nullptr) {
      switch (event) {
        case LineEditor::Event::echo: *events += 'e'; break;
        case LineEditor::Event::none: *events += '.'; break;
        case LineEditor::Event::erase: *events += 'x'; break;
        case LineEditor::Event::clear: *events += 'c'; break;
        case LineEditor::Event::bell: *events += 'b'; break;
        case LineEditor::Event::line: *events += 'l'; break;
        case LineEditor::Event::cancelled: *events += 'k'; break;
      }
    }
    if (event == LineEditor::Event::line) lines += (lines.empty() ? "" : "|") + editor.take_line();
  }
  return lines;
}
}  // namespace

TEST_GROUP(LineEditor){};

TEST(LineEditor, PrintableKeysMakeALineThatEnterEnds) {
  LineEditor editor;
  std::string events;
  CHECK_EQUAL(std::string("12"), typed(editor, "12\r", &events));
  CHECK_EQUAL(std::string("eel"), events);
}

TEST(LineEditor, CrLfIsOneEndOfLineAndLfAloneIsOne) {
  LineEditor editor;
  CHECK_EQUAL(std::string("a|b|"), typed(editor, "a\r\nb\n\r\n"));
}

TEST(LineEditor, BackspaceAndDelEraseAndBellOnAnEmptyLine) {
  LineEditor editor;
  std::string events;
  CHECK_EQUAL(std::string("c"), typed(editor, "ab\x7f" "c\b\b" "c\r", &events));
  CHECK_EQUAL(std::string("eexexxel"), events);
  events.clear();
  typed(editor, "\x7f", &events);
  CHECK_EQUAL(std::string("b"), events);
}

TEST(LineEditor, ControlUClearsAndControlCCancels) {
  LineEditor editor;
  std::string events;
  typed(editor, "abc\x15", &events);
  CHECK_EQUAL(std::string("eeec"), events);
  CHECK_EQUAL(3u, editor.size_before_clear());
  CHECK_EQUAL(std::string("x"), typed(editor, "x\r"));
  events.clear();
  typed(editor, "abc\x03", &events);
  CHECK_EQUAL(std::string("eeek"), events);
  CHECK_EQUAL(std::string(), editor.text());
}

TEST(LineEditor, EscapeSequencesAreSwallowedWhole) {
  LineEditor editor;
  // Up, down, F1 (SS3), F5 (CSI 15~), a colour sequence with parameters, then "7".
  CHECK_EQUAL(std::string("7"), typed(editor, "\x1b[A\x1b[B\x1bOP\x1b[15~\x1b[1;31m7\r"));
  // An unterminated CSI gives up after max_escape_bytes and is not typed either.
  LineEditor long_escape;
  CHECK_EQUAL(std::string("9"), typed(long_escape, "\x1b[" + std::string(max_escape_bytes + 1, '1') + "9\r"));
}

TEST(LineEditor, OtherControlBytesAndHighBytesRingTheBell) {
  LineEditor editor;
  std::string events;
  CHECK_EQUAL(std::string("ok"), typed(editor, std::string("o\x01\t\x80\xffk\x00\r", 8), &events));
  CHECK_EQUAL(std::string("ebbbbebl"), events);
}

TEST(LineEditor, ALineStopsAtItsLimit) {
  LineEditor editor;
  const std::string lines = typed(editor, std::string(max_line_bytes + 10, 'a') + "\r");
  CHECK_EQUAL(max_line_bytes, lines.size());
}

TEST_GROUP(Menu){};

TEST(Menu, OnlyAMenuNumberChoosesAnything) {
  CHECK(parse_choice("1") == Item::status);
  CHECK(parse_choice(" 10 ") == Item::factory_reset);
  CHECK(parse_choice("13") == Item::power_off);
  for (const char* line : {"", " ", "0", "14", "99", "01", "-1", "+1", "1 2", "1;", "a", "status", "1x", "100"}) {
    CHECK_TEXT(!parse_choice(line).has_value(), line);
  }
}

TEST(Menu, TheMenuListsEveryItemByItsNumber) {
  const std::string text = menu_text({"sn1", "198.18.1.11", "1.0.0", "a"});
  CHECK(text.find("stacknode 1.0.0 (slot a)  node sn1  address 198.18.1.11") != std::string::npos);
  for (const MenuEntry& entry : menu_entries()) {
    const std::string line = std::to_string(static_cast<int>(entry.item)) + ") " + std::string(entry.title);
    CHECK_TEXT(text.find(line) != std::string::npos, line.c_str());
  }
  CHECK_EQUAL(static_cast<std::size_t>(item_count), menu_entries().size());
}

TEST(Menu, ConfirmationsAndAnswers) {
  CHECK(confirmed(" factory reset ", factory_reset_phrase));
  CHECK(!confirmed("Factory reset", factory_reset_phrase));
  CHECK(!confirmed("factory  reset", factory_reset_phrase));
  CHECK(said_yes("y"));
  CHECK(said_yes(" YES "));
  CHECK(!said_yes(""));
  CHECK(!said_yes("yep"));
}

TEST(Menu, Ipv4AddressesAndNames) {
  CHECK(valid_ipv4("198.18.0.1"));
  CHECK(valid_ipv4("0.0.0.0"));
  for (const char* text : {"198.18.0", "198.18.0.1.2", "198.18.0.256", "198.018.0.1", "198.18.0.1 ", "a.b.c.d", "", "...",
                           "198.18.0.1;ls"}) {
    CHECK_TEXT(!valid_ipv4(text), text);
  }
  CHECK(valid_name("rack-1"));
  CHECK(valid_name("a"));
  CHECK(!valid_name("-rack"));
  CHECK(!valid_name("rack 1"));
  CHECK(!valid_name(std::string(64, 'a')));
}
