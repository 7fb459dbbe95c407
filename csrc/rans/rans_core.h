// Interleaved rANS coder over validated CDF tables. Pure C++17, no Python.
//
// Coder: 64-bit state x in [2^31, 2^63), 32-bit little-endian renormalisation words
// (one word at most per coding step), precision P <= 24 bits per table.
//
// Stream format, version 1 (all integers little-endian; "varint" = unsigned LEB128):
//   u8      magic 0xC7
//   u8      (version << 5) | (precision - 1)
//   varint  n, the number of symbols
//   u8      chunk_log2: the stream is cut into chunks of 1 << chunk_log2 symbols
//   varint  byte length of each chunk except the last (the last runs to the end)
//   chunks, each independent (so they are coded in parallel; the bytes do not depend
//   on the number of threads):
//     lanes = 4 when the chunk holds >= kMultiLaneMinSymbols symbols, else 1; symbol j
//     of the chunk is coded by lane j % lanes.
//     lanes == 4: four u64 final states, then the u32 words in decode order.
//     lanes == 1: the final state in k = 4 + (chunk bytes % 4) bytes (4..7), then the
//                 u32 words; a state that needs 8 bytes is split, its low word first
//                 among the words, so the decoder reads k bytes and, if the value is
//                 below 2^31, one more word.
// Escape: a value v outside [offset, offset + escape) is coded as the escape symbol,
// then raw = (v < offset ? 2(offset - v) - 1 : 2(v - offset - escape)) as a 4-bit count
// of nibbles (0..9) and the nibbles, least significant first, each with 4 raw bits.
// Checksum: lane 0 starts from state 2^32 + h, h the 32-bit checksum of the chunk's
// (symbol, index) pairs seeded by the table-set fingerprint and the chunk number, and
// the other lanes from 2^31. The decoder ends each chunk by checking it returned to
// exactly those states and consumed exactly the chunk's bytes: a corrupt stream, or a
// decoder whose indexes or tables differ, fails that check with probability ~1-2^-32.
// The checksum costs its own 32 bits, not 32 more: it replaces the initial state.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rans/cdf_table.h"
#include "rans/checksum.h"

namespace gwn {

constexpr uint8_t kMagic = 0xC7;
constexpr int kFormatVersion = 1;
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

 private:
  template <int kLanes>
  void decode_lanes(const int32_t* indexes, int32_t* out, size_t n);
  const TableSet& tables_;
  const uint8_t* ptr_;
  const uint8_t* end_;
  uint64_t seed_;
  size_t count_;
  size_t pos_ = 0;
  int lanes_;
  uint64_t state_[4] = {0, 0, 0, 0};
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
