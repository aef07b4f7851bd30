// The block map of a disk image: which blocks hold data and, per range, their SHA-256. Read from a
// bmaptool ".bmap" file (the XML that `bmaptool create` writes, format versions 1.x and 2.x with
// SHA-256 checksums), or found from the image file's own holes when there is no bmap. The flash
// tool writes only the mapped ranges and verifies each against its checksum. Pure code: the parser
// takes bytes and returns a map or one line saying what is wrong (it is fuzzed).
//
// Invariants of a BlockMap that parse_bmap or map_of_sparse_file returned:
//  1. block_size is a power of two in [min_block_size, max_block_size]; blocks_count ==
//     ceil(image_size / block_size).
//  2. ranges are sorted, do not overlap or touch out of order, and end before blocks_count;
//     mapped_blocks is the sum of their lengths.
//  3. Either every range has a checksum or none has (a bmap lists all, or none if made with
//     `bmaptool create --no-checksum`; a sparse scan none).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stacknode::flash {

using Sha256 = std::array<std::uint8_t, 32>;

// Limits on a bmap file (untrusted input: it may come with a downloaded image). A real bmap of a
// multi-terabyte image with fragmented files stays in the megabytes.
inline constexpr std::size_t max_bmap_bytes = std::size_t{16} << 20;
inline constexpr std::size_t max_ranges = 1u << 20;
inline constexpr std::uint64_t min_block_size = 512;
inline constexpr std::uint64_t max_block_size = std::uint64_t{1} << 20;
// Images up to 16 TiB: more than any boot disk, and it keeps block arithmetic far from overflow.
inline constexpr std::uint64_t max_image_bytes = std::uint64_t{1} << 44;
// The block size of a map found from the image's holes (what bmaptool uses on Linux).
inline constexpr std::uint64_t sparse_scan_block_size = 4096;

struct BlockRange {
  std::uint64_t first = 0;  // block numbers, both included
  std::uint64_t last = 0;
  std::optional<Sha256> sha256;  // of the range's bytes in the image (the last block may be partial)
  std::uint64_t blocks() const { return last - first + 1; }
};

struct BlockMap {
  std::string version;  // "2.0"; "sparse scan" for a map made from the image's holes
  std::uint64_t image_size = 0;
  std::uint64_t block_size = 0;
  std::uint64_t blocks_count = 0;
  std::uint64_t mapped_blocks = 0;
  std::vector<BlockRange> ranges;

  // The image bytes a range covers: [offset, offset + length), clipped to image_size.
  std::uint64_t offset_of(const BlockRange& range) const { return range.first * block_size; }
  std::uint64_t length_of(const BlockRange& range) const;
  std::uint64_t mapped_bytes() const;
};

struct BmapParseResult {
  std::optional<BlockMap> map;
  std::string error;  // one line when map is empty, e.g. "bmap: <Range> 7-3: first block after last"
};

// Parses and checks a bmap file, including its own checksum (BmapFileChecksum: the SHA-256 of the
// file with that value written as zeros) when it has one.
BmapParseResult parse_bmap(std::string_view text);

// A map of the data in the image file `fd` of `size` bytes, from SEEK_DATA/SEEK_HOLE (the same
// thing `bmaptool create` finds), with blocks of sparse_scan_block_size; no checksums. An empty
// string in `error` on success.
std::optional<BlockMap> map_of_sparse_file(int fd, std::uint64_t size, std::string& error);

}  // namespace stacknode::flash
