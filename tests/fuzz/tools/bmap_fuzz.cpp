// libFuzzer target over stacknode-flash's bmap parser (tools/stacknode-flash: parse_bmap), which
// reads a file that may come with a downloaded image: the input is the file's bytes. Sanitizers
// catch memory errors; the invariants below catch wrong answers and stop with __builtin_trap().
//
// Invariants checked:
//  1. A refusal has a message starting "bmap: ", one line without control characters (it goes
//     to a terminal and quotes the file); an acceptance has none.
//  2. An accepted map keeps the BlockMap invariants of bmap.hpp: a power-of-two block size inside
//     the limits, blocks_count == ceil(image_size / block_size); ranges sorted, apart, inside the
//     image, mapped_blocks their sum; every range with a checksum or none.
//  3. The bytes it maps are inside the image: mapped_bytes() <= image_size, each range's length in
//     (0, its blocks * block_size].
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bmap.hpp"

using namespace stacknode::flash;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const BmapParseResult result = parse_bmap(text);
  if (!result.map) {
    check(result.error.starts_with("bmap: "));
    for (const char c : result.error) check(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    return 0;
  }
  check(result.error.empty());
  const BlockMap& map = *result.map;
  check(map.block_size >= min_block_size && map.block_size <= max_block_size);
  check((map.block_size & (map.block_size - 1)) == 0);
  check(map.image_size >= 1 && map.image_size <= max_image_bytes);
  check(map.blocks_count == (map.image_size + map.block_size - 1) / map.block_size);
  std::uint64_t mapped_blocks = 0;
  std::uint64_t mapped_bytes = 0;
  for (std::size_t index = 0; index < map.ranges.size(); ++index) {
    const BlockRange& range = map.ranges[index];
    check(range.first <= range.last && range.last < map.blocks_count);
    if (index > 0) check(range.first > map.ranges[index - 1].last);
    check(range.sha256.has_value() == map.ranges.front().sha256.has_value());
    const std::uint64_t length = map.length_of(range);
    check(length > 0 && length <= range.blocks() * map.block_size);
    mapped_blocks += range.blocks();
    mapped_bytes += length;
  }
  check(mapped_blocks == map.mapped_blocks);
  check(mapped_bytes == map.mapped_bytes() && mapped_bytes <= map.image_size);
  return 0;
}
