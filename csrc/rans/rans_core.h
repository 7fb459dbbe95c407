// Interleaved rANS coder over validated CDF tables. Pure C++17, no Python.
//
// Coder: 64-bit state x in [2^31, 2^63), 32-bit little-endian renormalisation words
// (one word at most per coding step), precision P <= 24 bits per table.
//
// Stream format, version 2 (docs/bitstream.md is the full description; all integers
// little-endian; "varint" = unsigned LEB128):
//   u8      magic 0xC7
//   u8      (version << 5) | (precision - 1)
//   varint  (n << 1) | e: n symbols; e = 1 if a chunk-size byte follows
//   [u8     chunk_log2, only if e; else chunk_log2 = kDefaultChunkLog2. The encoder omits
//           it when it would not change the chunking]
//   varint  byte length of each chunk except the last (the last runs to the end)
//   chunks, each independent (coded in parallel; the bytes do not depend on threads).
// A chunk of m symbols:
//   m >= kMultiLaneMinSymbols: varint t (1 <= t <= m), then the body. Symbols
//     [0, m - t) are interleaved over 4 lanes (symbol j on lane j % 4); the last t
//     symbols (the "tail") are coded by lane 0 alone. Lanes 1..3 keep no bytes of their
//     own: at the chunk start the decoder pops their states out of lane 0, and when the
//     interleaved part is done it pushes their end states back into lane 0 (bits-back),
//     then decodes the tail. If t == m there is no interleaved part and no lanes 1..3.
//   m < kMultiLaneMinSymbols: the body alone, one lane.
//   body: lane 0's state in k = 4 + (body bytes % 4) bytes (4..7), then the u32 words in
//     decode order. A state that needs 8 bytes is split, its low word first among the
//     words, so the decoder reads k bytes and, if the value is below 2^31, one more word.
// A lane state y in [2^31, 2^63) moves through lane 0 as: e = floor(log2 y) - 31 in 5
// raw bits, then the low 31 bits of y, then (if e > 0) bits 31 .. 30 + e of y (the
// leading 1 is implied); raw bits use the escape path's renormalisation.
// Escape: a value v outside [offset, offset + escape) is coded as the escape symbol,
// then raw = (v < offset ? 2(offset - v) - 1 : 2(v - offset - escape)) as a 4-bit count
// of nibbles (0..9) and the nibbles, least significant first, each with 4 raw bits.
// Checksum: lane 0 starts from state 2^32 + h, h the 32-bit checksum of the chunk's
// (symbol, index) pairs seeded by the table-set fingerprint and the chunk number. The
// decoder ends each chunk by checking it returned to exactly that state and consumed
// exactly the chunk's bytes: a corrupt stream, or a decoder whose indexes or tables
// differ, fails that check with probability ~1-2^-32. The checksum costs its own 32
// bits, not 32 more: it replaces the initial state.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rans/cdf_table.h"
#include "rans/checksum.h"

namespace gwn {

constexpr uint8_t kMagic = 0xC7;
constexpr int kFormatVersion = 2;
constexpr int kDefaultChunkLog2 = 18;
constexpr int kMinChunkLog2 = 4;
constexpr int kMaxChunkLog2 = 30;
constexpr size_t kMultiLaneMinSymbols = 512;

// Encode n symbols with their table indexes. threads >= 1 chunks are coded at once.
// Throws ArgumentError for an index outside [0, num_tables) or a bad chunk_log2.
std::vector<uint8_t> encode(const TableSet& tables, const int32_t* symbols,
                            const int32_t* indexes, size_t n, int threads,
                            int chunk_log2 = kDefaultChunkLog2);

struct StreamLayout {
  int precision = 0;
  uint64_t num_symbols = 0;
  int chunk_log2 = 0;
  std::vector<size_t> chunk_begin;  // byte offsets into the stream
  std::vector<size_t> chunk_end;
};

// Parse and check the header and chunk table. Throws BitstreamError.
StreamLayout parse_stream(const uint8_t* data, size_t size);

// Decodes one chunk, in steps of any size.
class ChunkDecoder {
 public:
  ChunkDecoder(const TableSet& tables, const uint8_t* begin, const uint8_t* end,
               uint64_t chunk_index, size_t num_symbols);
  // Decode the next n symbols of the chunk. REQUIRES: position() + n <= num_symbols and
  // every index in range (callers check with check_indexes first).
  void decode(const int32_t* indexes, int32_t* out, size_t n);
  // After the last symbol: checks final states, checksum and that all bytes were used.
  void finish() const;
  size_t position() const { return pos_; }
  size_t num_symbols() const { return count_; }
  // Symbols that decode_pair can take from a fresh decoder (the 4-lane part, rounded
  // down to a multiple of 4).
  size_t pairable() const { return pos_ == 0 ? split_ & ~size_t{3} : 0; }
  // Decode the first n symbols of two fresh chunks in one loop: eight independent coder
  // states in flight instead of four, which hides the latency of table lookups that
  // miss the cache (the results are those of a.decode and b.decode). REQUIRES:
  // n <= a.pairable(), n <= b.pairable(), indexes checked.
  static void decode_pair(ChunkDecoder& a, const int32_t* ia, int32_t* oa, ChunkDecoder& b,
                          const int32_t* ib, int32_t* ob, size_t n);

 private:
  void decode_interleaved(const int32_t* indexes, int32_t* out, size_t n);
  void decode_tail(const int32_t* indexes, int32_t* out, size_t n);
  void merge_lanes();
  const TableSet& tables_;
  const uint8_t* ptr_;
  const uint8_t* end_;
  uint64_t seed_;
  size_t count_;
  size_t split_ = 0;  // symbols [0, split_) are interleaved, [split_, count_) lane 0 only
  size_t pos_ = 0;
  bool merged_ = true;  // lanes 1..3 were pushed back into lane 0 (or never existed)
  int pushed_ = 0;      // words in pushback_, the next one to read last
  uint64_t state_[4] = {0, 0, 0, 0};
  uint32_t pushback_[12];  // words emitted by merge_lanes(), read by the tail first
  PairHasher hasher_;
};

// Throws ArgumentError if an index is outside [0, num_tables); `base` offsets the
// position reported in the message.
void check_indexes(const TableSet& tables, const int32_t* indexes, size_t n, size_t base);

// Streaming decoder over a whole stream: symbols come out in encode order, in blocks
// of any size. The stream bytes must outlive the decoder.
class StreamDecoder {
 public:
  StreamDecoder(const TableSet& tables, const uint8_t* data, size_t size);
  void decode(const int32_t* indexes, int32_t* out, size_t n);
  void finish();
  uint64_t num_symbols() const { return layout_.num_symbols; }
  bool finished() const { return finished_; }
  uint64_t position() const { return pos_; }

 private:
  const TableSet& tables_;
  const uint8_t* data_;
  StreamLayout layout_;
  size_t chunk_ = 0;
  uint64_t pos_ = 0;
  std::vector<ChunkDecoder> current_;  // 0 or 1 element: the chunk being decoded
  bool failed_ = false;                // an error left the state undefined
  bool finished_ = false;
};

// One-shot decode of the whole stream into out[0..n), chunks in parallel.
void decode(const TableSet& tables, const uint8_t* data, size_t size,
            const int32_t* indexes, int32_t* out, size_t n, int threads);

}  // namespace gwn
