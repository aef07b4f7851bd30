// The bmap parser (bmap.hpp): a small reader for exactly the XML that bmaptool writes (a prolog,
// comments, one <bmap> element with simple children and a <BlockMap> of <Range> elements), not a
// general XML parser. Everything it does not know is refused with the element's name, so a file
// that merely resembles a bmap is never half understood. Also the sparse-file scan.
#include "bmap.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "stacknode/node/hex.hpp"

namespace stacknode::flash {

namespace {

constexpr std::size_t max_element_depth = 3;  // bmap > BlockMap > Range
constexpr std::size_t sha256_hex_digits = 64;
constexpr std::size_t max_error_bytes = 300;  // a refusal quotes the file: one readable line at most

struct Element {
  std::string_view name;
  std::string_view text;           // the character data directly inside (trimmed by the reader)
  std::size_t text_offset = 0;     // where `text` starts in the file (BmapFileChecksum is rewritten)
  std::string_view chksum;         // the one attribute bmaptool writes on a Range
  std::string_view version;        // the one attribute of <bmap>
  std::vector<Element> children;
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.';
}

std::string_view trim(std::string_view text, std::size_t& offset) {
  std::size_t start = 0;
  while (start < text.size() && is_space(text[start])) ++start;
  std::size_t end = text.size();
  while (end > start && is_space(text[end - 1])) --end;
  offset += start;
  return text.substr(start, end - start);
}

class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  // The document's one root element, or nullopt with error().
  std::optional<Element> document() {
    skip_misc();
    std::optional<Element> root = element(1);
    if (!root) return std::nullopt;
    skip_misc();
    if (position_ != text_.size() && error_.empty()) fail("text after the </" + std::string(root->name) + ">");
    if (!error_.empty()) return std::nullopt;
    return root;
  }
  const std::string& error() const { return error_; }

 private:
  void fail(const std::string& message) {
    if (error_.empty()) error_ = message + " (at byte " + std::to_string(position_) + ")";
  }
  bool starts_with(std::string_view prefix) const { return text_.substr(position_).starts_with(prefix); }
  bool skip_past(std::string_view terminator) {
    const std::size_t found = text_.find(terminator, position_);
    if (found == std::string_view::npos) return false;
    position_ = found + terminator.size();
    return true;
  }
  // White space, comments and the XML declaration, between elements.
  void skip_misc() {
    for (;;) {
      while (position_ < text_.size() && is_space(text_[position_])) ++position_;
      if (starts_with("<!--")) {
        if (!skip_past("-->")) return fail("a comment that never ends");
      } else if (starts_with("<?")) {
        if (!skip_past("?>")) return fail("an XML declaration that never ends");
      } else {
        return;
      }
    }
  }
  std::string_view name() {
    const std::size_t start = position_;
    while (position_ < text_.size() && is_name_char(text_[position_])) ++position_;
    return text_.substr(start, position_ - start);
  }

  std::optional<Element> element(std::size_t depth) {
    if (depth > max_element_depth) return fail("elements nested deeper than a bmap's"), std::nullopt;
    if (!starts_with("<")) return fail("expected an element"), std::nullopt;
    ++position_;
    Element result;
    result.name = name();
    if (result.name.empty()) return fail("an element without a name"), std::nullopt;
    // Attributes: name="value" or name='value'.
    for (;;) {
      while (position_ < text_.size() && is_space(text_[position_])) ++position_;
      if (position_ >= text_.size()) return fail("<" + std::string(result.name) + " never closes"), std::nullopt;
      if (text_[position_] == '>' || starts_with("/>")) break;
      const std::string_view attribute = name();
      if (attribute.empty() || position_ + 1 >= text_.size() || text_[position_] != '=' ||
          (text_[position_ + 1] != '"' && text_[position_ + 1] != '\'')) {
        return fail("a malformed attribute in <" + std::string(result.name) + ">"), std::nullopt;
      }
      const char quote = text_[position_ + 1];
      position_ += 2;
      const std::size_t end = text_.find(quote, position_);
      if (end == std::string_view::npos) return fail("an attribute value that never ends"), std::nullopt;
      const std::string_view value = text_.substr(position_, end - position_);
      position_ = end + 1;
      if (value.find_first_of("<&") != std::string_view::npos) {
        return fail("markup inside an attribute value"), std::nullopt;
      }
      std::string_view* slot = nullptr;
      if (attribute == "chksum" && result.name == "Range") slot = &result.chksum;
      if (attribute == "version" && result.name == "bmap") slot = &result.version;
      if (slot != nullptr && slot->data() != nullptr) {
        return fail("attribute " + std::string(attribute) + " twice on <" + std::string(result.name) + ">"),
               std::nullopt;
      }
      if (slot != nullptr) {
        *slot = value;
      } else {
        return fail("unknown attribute " + std::string(attribute) + " on <" + std::string(result.name) + ">"),
               std::nullopt;
      }
    }
    if (starts_with("/>")) {
      position_ += 2;
      return result;
    }
    ++position_;  // '>'
    // Content: character data and child elements, until the matching end tag.
    std::size_t text_start = std::string_view::npos;
    for (;;) {
      skip_misc();
      if (!error_.empty()) return std::nullopt;
      if (position_ >= text_.size()) return fail("<" + std::string(result.name) + "> never ends"), std::nullopt;
      if (starts_with("</")) {
        position_ += 2;
        const std::string_view closing = name();
        if (closing != result.name || position_ >= text_.size() || text_[position_] != '>') {
          return fail("</" + std::string(closing) + "> does not close <" + std::string(result.name) + ">"),
                 std::nullopt;
        }
        ++position_;
        return result;
      }
      if (text_[position_] == '<') {
        std::optional<Element> child = element(depth + 1);
        if (!child) return std::nullopt;
        result.children.push_back(std::move(*child));
        continue;
      }
      const std::size_t start = position_;
      while (position_ < text_.size() && text_[position_] != '<') ++position_;
      if (!result.text.empty() || text_start != std::string_view::npos) {
        return fail("text in two places inside <" + std::string(result.name) + ">"), std::nullopt;
      }
      text_start = start;
      std::size_t offset = start;
      result.text = trim(text_.substr(start, position_ - start), offset);
      result.text_offset = offset;
      if (result.text.find('&') != std::string_view::npos) {
        return fail("an entity inside <" + std::string(result.name) + ">"), std::nullopt;
      }
    }
  }

  std::string_view text_;
  std::size_t position_ = 0;
  std::string error_;
};

bool parse_number(std::string_view text, std::uint64_t& value) {
  if (text.empty()) return false;
  const auto [end, problem] = std::from_chars(text.data(), text.data() + text.size(), value);
  return problem == std::errc() && end == text.data() + text.size();
}

bool sha256_of(std::string_view bytes, Sha256& digest) {
  unsigned int length = 0;
  return EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) == 1 &&
         length == digest.size();
}

// The one-line refusal. The parts of the file it quotes may hold line breaks or terminal control
// bytes: each is shown as '?'.
BmapParseResult refuse(std::string message) {
  if (message.size() > max_error_bytes) message = message.substr(0, max_error_bytes) + "...";
  for (char& c : message) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  return {std::nullopt, "bmap: " + message};
}

}  // namespace

std::uint64_t BlockMap::length_of(const BlockRange& range) const {
  const std::uint64_t end = std::min(image_size, (range.last + 1) * block_size);
  return end - offset_of(range);
}

std::uint64_t BlockMap::mapped_bytes() const {
  std::uint64_t total = 0;
  for (const BlockRange& range : ranges) total += length_of(range);
  return total;
}

BmapParseResult parse_bmap(std::string_view text) {
  if (text.size() > max_bmap_bytes) {
    return refuse("the file is " + std::to_string(text.size()) + " bytes, more than the limit of " +
                  std::to_string(max_bmap_bytes));
  }
  Reader reader(text);
  const std::optional<Element> root = reader.document();
  if (!root) return refuse(reader.error());
  if (root->name != "bmap") return refuse("the root element is <" + std::string(root->name) + ">, not <bmap>");
  if (!root->text.empty()) return refuse("text directly inside <bmap>");

  BlockMap map;
  map.version = std::string(root->version);
  if (!(map.version.starts_with("1.") || map.version.starts_with("2."))) {
    return refuse("format version '" + map.version + "' is not 1.x or 2.x");
  }
  std::optional<std::uint64_t> image_size, block_size, blocks_count, mapped_blocks;
  const Element* checksum_type_element = nullptr;
  const Element* file_checksum = nullptr;
  const Element* block_map = nullptr;
  for (const Element& child : root->children) {
    std::optional<std::uint64_t>* number = nullptr;
    const Element** single = nullptr;  // bmaptool reads the first of each: a second is refused
    if (child.name == "ImageSize") number = &image_size;
    else if (child.name == "BlockSize") number = &block_size;
    else if (child.name == "BlocksCount") number = &blocks_count;
    else if (child.name == "MappedBlocksCount") number = &mapped_blocks;
    else if (child.name == "ChecksumType") single = &checksum_type_element;
    else if (child.name == "BmapFileChecksum" || child.name == "BmapFileSHA1") single = &file_checksum;
    else if (child.name == "BlockMap") single = &block_map;
    else return refuse("unknown element <" + std::string(child.name) + ">");
    if (child.name != "BlockMap" && !child.children.empty()) {
      return refuse("an element inside <" + std::string(child.name) + ">");
    }
    if (single != nullptr) {
      if (*single != nullptr) return refuse("<" + std::string(child.name) + "> appears twice");
      *single = &child;
    }
    if (number != nullptr) {
      std::uint64_t value = 0;
      if (number->has_value()) return refuse("<" + std::string(child.name) + "> appears twice");
      if (!parse_number(child.text, value)) {
        return refuse("<" + std::string(child.name) + "> '" + std::string(child.text) + "' is not a number");
      }
      *number = value;
    }
  }
  if (!image_size || !block_size || !blocks_count || !mapped_blocks || block_map == nullptr) {
    return refuse("one of ImageSize, BlockSize, BlocksCount, MappedBlocksCount, BlockMap is missing");
  }
  map.image_size = *image_size;
  map.block_size = *block_size;
  map.blocks_count = *blocks_count;
  if (map.image_size == 0 || map.image_size > max_image_bytes) {
    return refuse("ImageSize " + std::to_string(map.image_size) + " is outside [1, " +
                  std::to_string(max_image_bytes) + "]");
  }
  if (map.block_size < min_block_size || map.block_size > max_block_size ||
      (map.block_size & (map.block_size - 1)) != 0) {
    return refuse("BlockSize " + std::to_string(map.block_size) + " is not a power of two in [" +
                  std::to_string(min_block_size) + ", " + std::to_string(max_block_size) + "]");
  }
  if (map.blocks_count != (map.image_size + map.block_size - 1) / map.block_size) {
    return refuse("BlocksCount " + std::to_string(map.blocks_count) + " does not fit ImageSize " +
                  std::to_string(map.image_size) + " in blocks of " + std::to_string(map.block_size));
  }
  const std::string_view checksum_type = checksum_type_element != nullptr ? checksum_type_element->text : "";
  const bool has_checksums = !checksum_type.empty() || file_checksum != nullptr;
  if (has_checksums && checksum_type != "sha256") {
    return refuse("checksum type '" + std::string(checksum_type.empty() ? "sha1" : checksum_type) +
                  "' is not supported: make the bmap again with bmaptool 3.2 or later (sha256)");
  }

  if (block_map->children.size() > max_ranges) {
    return refuse(std::to_string(block_map->children.size()) + " ranges, more than the limit of " +
                  std::to_string(max_ranges));
  }
  if (!block_map->text.empty()) return refuse("text directly inside <BlockMap>");
  map.ranges.reserve(block_map->children.size());
  // `bmaptool create --no-checksum` still writes ChecksumType and BmapFileChecksum, only no chksum
  // on any Range: the first range says which kind of map this is, and the others must agree.
  const bool range_checksums =
      has_checksums && !block_map->children.empty() && !block_map->children.front().chksum.empty();
  for (const Element& element : block_map->children) {
    if (element.name != "Range") return refuse("unknown element <" + std::string(element.name) + "> in <BlockMap>");
    BlockRange range;
    const std::size_t dash = element.text.find('-');
    const std::string_view first = element.text.substr(0, dash);
    const std::string_view last = dash == std::string_view::npos ? first : element.text.substr(dash + 1);
    if (!parse_number(first, range.first) || !parse_number(last, range.last)) {
      return refuse("<Range> '" + std::string(element.text) + "' is not FIRST-LAST or a block number");
    }
    const std::string label = "<Range> " + std::string(element.text);
    if (range.first > range.last) return refuse(label + ": first block after last");
    if (range.last >= map.blocks_count) {
      return refuse(label + ": beyond the image's " + std::to_string(map.blocks_count) + " blocks");
    }
    if (!map.ranges.empty() && range.first <= map.ranges.back().last) {
      return refuse(label + ": overlaps or comes before the range before it");
    }
    if (range_checksums) {
      Sha256 digest{};
      if (element.chksum.size() != sha256_hex_digits || !node::from_hex(element.chksum, digest)) {
        return refuse(label + ": chksum is not 64 hex digits");
      }
      range.sha256 = digest;
    } else if (!element.chksum.empty()) {
      return refuse(label + (has_checksums ? ": a chksum, but the first range has none"
                                           : ": a chksum without a ChecksumType"));
    }
    map.mapped_blocks += range.blocks();
    map.ranges.push_back(range);
  }
  if (map.mapped_blocks != *mapped_blocks) {
    return refuse("MappedBlocksCount " + std::to_string(*mapped_blocks) + " but the ranges hold " +
                  std::to_string(map.mapped_blocks) + " blocks");
  }

  if (file_checksum != nullptr) {
    Sha256 expected{};
    if (file_checksum->text.size() != sha256_hex_digits || !node::from_hex(file_checksum->text, expected)) {
      return refuse("BmapFileChecksum is not 64 hex digits");
    }
    std::string zeroed(text);
    std::memset(zeroed.data() + file_checksum->text_offset, '0', sha256_hex_digits);
    Sha256 actual{};
    if (!sha256_of(zeroed, actual)) return refuse("SHA-256 is not available (OpenSSL)");
    if (actual != expected) {
      return refuse("the file does not match its own BmapFileChecksum: it was changed or cut short");
    }
  }
  return {std::move(map), {}};
}

std::optional<BlockMap> map_of_sparse_file(int fd, std::uint64_t size, std::string& error) {
  BlockMap map;
  map.version = "sparse scan";
  map.image_size = size;
  map.block_size = sparse_scan_block_size;
  map.blocks_count = (size + map.block_size - 1) / map.block_size;
  if (size == 0 || size > max_image_bytes) {
    error = "the image is " + std::to_string(size) + " bytes, outside [1, " + std::to_string(max_image_bytes) + "]";
    return std::nullopt;
  }
  off_t position = 0;
  while (static_cast<std::uint64_t>(position) < size) {
    const off_t data = lseek(fd, position, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole from here to the end
      error = std::string("cannot look for data in the image: ") + std::strerror(errno);
      return std::nullopt;
    }
    if (static_cast<std::uint64_t>(data) >= size) break;  // the file grew after `size` was taken
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      error = std::string("cannot look for holes in the image: ") + std::strerror(errno);
      return std::nullopt;
    }
    if (static_cast<std::uint64_t>(hole) > size) hole = static_cast<off_t>(size);
    BlockRange range{static_cast<std::uint64_t>(data) / map.block_size,
                     (static_cast<std::uint64_t>(hole) - 1) / map.block_size, std::nullopt};
    if (!map.ranges.empty() && range.first <= map.ranges.back().last) {
      map.mapped_blocks -= map.ranges.back().blocks();
      range.first = map.ranges.back().first;
      map.ranges.pop_back();
    }
    map.mapped_blocks += range.blocks();
    map.ranges.push_back(range);
    position = hole;
  }
  return map;
}

}  // namespace stacknode::flash
