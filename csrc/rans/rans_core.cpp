#include "rans/rans_core.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <thread>

#include "rans/errors.h"

namespace gwn {
namespace {

constexpr uint64_t kLow = uint64_t{1} << 31;  // lower bound of the normalised state
constexpr uint64_t kChecksumTop = uint64_t{1} << 32;
constexpr int kNibbleBits = 4;
constexpr uint32_t kMaxNibbles = 9;  // raw escape payloads are < 2^34
const char* const kMismatchHint =
    " (the stream is corrupt, or the decoder's indexes or tables differ from the "
    "encoder's)";

#if defined(__GNUC__)
#define GWN_LIKELY(x) __builtin_expect(!!(x), 1)
#define GWN_NOINLINE __attribute__((noinline))
#else
#define GWN_LIKELY(x) (x)
#define GWN_NOINLINE
#endif

inline uint32_t load_le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

inline void store_le(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

inline uint64_t load_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

uint64_t chunk_seed(uint64_t fingerprint, uint64_t chunk_index) {
  return fingerprint ^ (chunk_index * 0x9E3779B97F4A7C15ull);
}

size_t lanes_for(size_t symbols) { return symbols >= kMultiLaneMinSymbols ? 4 : 1; }

// Zig-zag escape payload of the in-table value v = symbol - offset (outside [0, escape)).
inline uint64_t escape_payload(int64_t v, int32_t escape) {
  return v < 0 ? static_cast<uint64_t>(-2 * v - 1) : static_cast<uint64_t>(2 * (v - escape));
}

inline uint32_t nibble_count(uint64_t raw) {
  uint32_t n = 0;
  while (raw != 0) {
    raw >>= kNibbleBits;
    ++n;
  }
  return n;
}

// ---- encoder ------------------------------------------------------------------

struct Encoder {
  uint32_t* ptr;       // words are written backwards from the buffer's end
  uint64_t unit_max;   // (kLow >> precision) << 32
  int precision;

  inline void put(uint64_t& x, uint32_t start, uint32_t freq) {
    if (x >= unit_max * freq) {
      *--ptr = static_cast<uint32_t>(x);
      x >>= 32;
    }
    x = ((x / freq) << precision) + (x % freq) + start;
  }

  inline void put_bits(uint64_t& x, uint32_t value, int bits) {
    if (x >= ((kLow >> bits) << 32)) {
      *--ptr = static_cast<uint32_t>(x);
      x >>= 32;
    }
    x = (x << bits) | value;
  }

  GWN_NOINLINE void put_escape(uint64_t& x, const uint32_t* c, int64_t v, int32_t escape) {
    const uint64_t raw = escape_payload(v, escape);
    const uint32_t n = nibble_count(raw);
    for (uint32_t j = n; j-- > 0;) {
      put_bits(x, static_cast<uint32_t>(raw >> (kNibbleBits * j)) & 15u, kNibbleBits);
    }
    put_bits(x, n, kNibbleBits);
    put(x, c[escape], c[escape + 1] - c[escape]);
  }

  inline void symbol(uint64_t& x, const TableSet& tables, int32_t value, int32_t index) {
    const TableSet::Info& in = tables.info(index);
    const uint32_t* c = tables.cdf(in);
    const int64_t v = static_cast<int64_t>(value) - in.offset;
    if (GWN_LIKELY(static_cast<uint64_t>(v) < static_cast<uint64_t>(in.escape))) {
      put(x, c[v], c[v + 1] - c[v]);
    } else {
      put_escape(x, c, v, in.escape);
    }
  }
};

std::vector<uint8_t> encode_chunk(const TableSet& tables, const int32_t* symbols,
                                  const int32_t* indexes, size_t m, uint64_t chunk_index,
                                  size_t base) {
  check_indexes(tables, indexes, m, base);
  size_t extra_steps = 0;  // escape steps beyond one per symbol, to size the buffer
  for (size_t i = 0; i < m; ++i) {
    const TableSet::Info& in = tables.info(indexes[i]);
    const int64_t v = static_cast<int64_t>(symbols[i]) - in.offset;
    if (static_cast<uint64_t>(v) >= static_cast<uint64_t>(in.escape)) {
      extra_steps += 1 + nibble_count(escape_payload(v, in.escape));
    }
  }
  PairHasher hasher(chunk_seed(tables.fingerprint(), chunk_index));
  hasher.update(symbols, indexes, m);

  const size_t lanes = lanes_for(m);
  std::vector<uint32_t> words(m + extra_steps + 1);  // each step emits <= 1 word
  uint32_t* const words_end = words.data() + words.size();
  Encoder enc{words_end, (kLow >> tables.precision()) << 32, tables.precision()};
  uint64_t x0 = kChecksumTop | hasher.digest();
  uint64_t x1 = kLow, x2 = kLow, x3 = kLow;
  if (lanes == 1) {
    for (size_t i = m; i-- > 0;) enc.symbol(x0, tables, symbols[i], indexes[i]);
  } else {
    // Symbols are coded in reverse; lane = position % 4.
    size_t i = m;
    for (; i % 4 != 0; --i) {
      uint64_t* lane[4] = {&x0, &x1, &x2, &x3};
      enc.symbol(*lane[(i - 1) & 3], tables, symbols[i - 1], indexes[i - 1]);
    }
    for (; i > 0; i -= 4) {
      enc.symbol(x3, tables, symbols[i - 1], indexes[i - 1]);
      enc.symbol(x2, tables, symbols[i - 2], indexes[i - 2]);
      enc.symbol(x1, tables, symbols[i - 3], indexes[i - 3]);
      enc.symbol(x0, tables, symbols[i - 4], indexes[i - 4]);
    }
  }

  std::vector<uint8_t> out;
  if (lanes == 1) {
    if (x0 >> 56) {  // needs 8 bytes: split so the head stays 4..7 bytes long
      *--enc.ptr = static_cast<uint32_t>(x0);
      x0 >>= 32;
    }
    int k = 4;
    while (k < 8 && (x0 >> (8 * k)) != 0) ++k;
    const size_t nwords = static_cast<size_t>(words_end - enc.ptr);
    out.resize(static_cast<size_t>(k) + 4 * nwords);
    store_le(out.data(), x0, k);
    for (size_t w = 0; w < nwords; ++w) store_le(out.data() + k + 4 * w, enc.ptr[w], 4);
  } else {
    const size_t nwords = static_cast<size_t>(words_end - enc.ptr);
    out.resize(32 + 4 * nwords);
    const uint64_t states[4] = {x0, x1, x2, x3};
    for (int l = 0; l < 4; ++l) store_le(out.data() + 8 * l, states[l], 8);
    for (size_t w = 0; w < nwords; ++w) store_le(out.data() + 32 + 4 * w, enc.ptr[w], 4);
  }
  return out;
}

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

uint64_t get_varint(const uint8_t* data, size_t size, size_t& pos, const char* what) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos >= size) throw BitstreamError(std::string("truncated stream header (") + what + ")");
    const uint8_t b = data[pos++];
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      if (shift == 63 && b > 1) break;
      return v;
    }
  }
  throw BitstreamError(std::string("corrupt stream header: ") + what + " overflows 64 bits");
}

// Run f(0..count) on up to `threads` threads; rethrows the error of the lowest index.
template <class F>
void parallel_for(size_t count, int threads, F&& f) {
  const size_t workers = std::min(count, static_cast<size_t>(std::max(threads, 1)));
  if (workers <= 1) {
    for (size_t i = 0; i < count; ++i) f(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::exception_ptr> errors(count);
  std::atomic<bool> failed{false};
  auto work = [&]() {
    for (size_t i = next++; i < count && !failed.load(); i = next++) {
      try {
        f(i);
      } catch (...) {
        errors[i] = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

size_t chunk_symbols(const StreamLayout& layout, size_t chunk) {
  const uint64_t size = uint64_t{1} << layout.chunk_log2;
  const uint64_t begin = static_cast<uint64_t>(chunk) << layout.chunk_log2;
  return static_cast<size_t>(std::min(size, layout.num_symbols - begin));
}

[[noreturn]] GWN_NOINLINE void throw_truncated() {
  throw BitstreamError(std::string("corrupt stream: a chunk ended before its last symbol") +
                       kMismatchHint);
}

}  // namespace

void check_indexes(const TableSet& tables, const int32_t* indexes, size_t n, size_t base) {
  const uint32_t limit = static_cast<uint32_t>(tables.num_tables());
  for (size_t i = 0; i < n; ++i) {
    if (static_cast<uint32_t>(indexes[i]) >= limit) {
      throw ArgumentError("indexes[" + std::to_string(base + i) + "] = " +
                          std::to_string(indexes[i]) + " is out of range [0, " +
                          std::to_string(limit) + ") of the tables");
    }
  }
}

std::vector<uint8_t> encode(const TableSet& tables, const int32_t* symbols,
                            const int32_t* indexes, size_t n, int threads, int chunk_log2) {
  if (chunk_log2 < kMinChunkLog2 || chunk_log2 > kMaxChunkLog2) {
    throw ArgumentError("chunk size must be 2**k with k in [" + std::to_string(kMinChunkLog2) +
                        ", " + std::to_string(kMaxChunkLog2) + "], got k = " +
                        std::to_string(chunk_log2));
  }
  const size_t chunk = size_t{1} << chunk_log2;
  const size_t num_chunks = (n + chunk - 1) / chunk;
  std::vector<std::vector<uint8_t>> chunks(num_chunks);
  parallel_for(num_chunks, threads, [&](size_t c) {
    const size_t begin = c * chunk;
    const size_t m = std::min(chunk, n - begin);
    chunks[c] = encode_chunk(tables, symbols + begin, indexes + begin, m, c, begin);
  });

  std::vector<uint8_t> out;
  out.push_back(kMagic);
  out.push_back(static_cast<uint8_t>((kFormatVersion << 5) | (tables.precision() - 1)));
  put_varint(out, n);
  out.push_back(static_cast<uint8_t>(chunk_log2));
  size_t payload = 0;
  for (size_t c = 0; c < num_chunks; ++c) {
    if (c + 1 < num_chunks) put_varint(out, chunks[c].size());
    payload += chunks[c].size();
  }
  const size_t header = out.size();
  out.resize(header + payload);
  size_t pos = header;
  for (const auto& ch : chunks) {
    if (!ch.empty()) std::memcpy(out.data() + pos, ch.data(), ch.size());
    pos += ch.size();
  }
  return out;
}

StreamLayout parse_stream(const uint8_t* data, size_t size) {
  if (size < 4) {
    throw BitstreamError("stream too short (" + std::to_string(size) +
                         " bytes): not a gwn_fast rANS stream");
  }
  if (data[0] != kMagic) {
    throw BitstreamError("bad magic byte " + std::to_string(data[0]) +
                         ": not a gwn_fast rANS stream");
  }
  const int version = data[1] >> 5;
  if (version != kFormatVersion) {
    throw BitstreamError("unsupported stream format version " + std::to_string(version) +
                         " (this build reads version " + std::to_string(kFormatVersion) + ")");
  }
  StreamLayout layout;
  layout.precision = (data[1] & 31) + 1;
  if (layout.precision > kMaxPrecision) {
    throw BitstreamError("corrupt stream header: precision " +
                         std::to_string(layout.precision) + " > " +
                         std::to_string(kMaxPrecision));
  }
  size_t pos = 2;
  layout.num_symbols = get_varint(data, size, pos, "symbol count");
  if (pos >= size) throw BitstreamError("truncated stream header (chunk size)");
  layout.chunk_log2 = data[pos++];
  if (layout.chunk_log2 < kMinChunkLog2 || layout.chunk_log2 > kMaxChunkLog2) {
    throw BitstreamError("corrupt stream header: chunk size 2**" +
                         std::to_string(layout.chunk_log2) + " out of range");
  }
  const uint64_t n = layout.num_symbols;
  const uint64_t num_chunks = (n >> layout.chunk_log2) +
                              ((n & ((uint64_t{1} << layout.chunk_log2) - 1)) != 0);
  // Every chunk takes at least 4 bytes: reject impossible counts before allocating.
  if (num_chunks > (size - pos) / 4) {
    throw BitstreamError("corrupt or truncated stream: " + std::to_string(n) +
                         " symbols cannot fit in " + std::to_string(size) + " bytes");
  }
  layout.chunk_begin.resize(num_chunks);
  layout.chunk_end.resize(num_chunks);
  std::vector<uint64_t> lengths(num_chunks);
  for (uint64_t c = 0; c + 1 < num_chunks; ++c) lengths[c] = get_varint(data, size, pos, "chunk length");
  uint64_t at = pos;
  for (uint64_t c = 0; c < num_chunks; ++c) {
    const uint64_t left = size - at;
    const uint64_t len = (c + 1 < num_chunks) ? lengths[c] : left;
    if (len < 4 || len > left) {
      throw BitstreamError("corrupt or truncated stream: chunk " + std::to_string(c) +
                           " claims " + std::to_string(len) + " bytes, " +
                           std::to_string(left) + " remain");
    }
    layout.chunk_begin[c] = static_cast<size_t>(at);
    layout.chunk_end[c] = static_cast<size_t>(at + len);
    at += len;
  }
  if (num_chunks == 0 && pos != size) {
    throw BitstreamError("corrupt stream: " + std::to_string(size - pos) +
                         " trailing bytes after an empty stream");
  }
  return layout;
}

// ---- decoder ------------------------------------------------------------------

ChunkDecoder::ChunkDecoder(const TableSet& tables, const uint8_t* begin, const uint8_t* end,
                           uint64_t chunk_index, size_t num_symbols)
    : tables_(tables),
      ptr_(begin),
      end_(end),
      seed_(chunk_seed(tables.fingerprint(), chunk_index)),
      count_(num_symbols),
      lanes_(static_cast<int>(lanes_for(num_symbols))),
      hasher_(seed_) {
  const size_t size = static_cast<size_t>(end - begin);
  if (lanes_ == 4) {
    if (size < 32) throw_truncated();
    for (int l = 0; l < 4; ++l) state_[l] = load_le(ptr_ + 8 * l, 8);
    ptr_ += 32;
  } else {
    const int k = 4 + static_cast<int>(size % 4);
    if (size < static_cast<size_t>(k)) throw_truncated();
    uint64_t x = load_le(ptr_, k);
    ptr_ += k;
    if (x < kLow) {
      if (end_ - ptr_ < 4) throw_truncated();
      x = (x << 32) | load_le32(ptr_);
      ptr_ += 4;
    }
    state_[0] = x;
  }
  for (int l = 0; l < lanes_; ++l) {
    if (state_[l] < kLow || (state_[l] >> 63) != 0) {
      throw BitstreamError(std::string("corrupt stream: invalid coder state at a chunk start") +
                           kMismatchHint);
    }
  }
}

namespace {

struct Reader {
  const uint8_t* ptr;
  const uint8_t* end;
  inline void renorm(uint64_t& x) {
    if (x < kLow) {
      if (end - ptr < 4) throw_truncated();
      x = (x << 32) | load_le32(ptr);
      ptr += 4;
    }
  }
  inline uint32_t get_bits(uint64_t& x, int bits) {
    const uint32_t v = static_cast<uint32_t>(x) & ((1u << bits) - 1);
    x >>= bits;
    renorm(x);
    return v;
  }
};

GWN_NOINLINE int32_t decode_escape(uint64_t& x, Reader& rd, const TableSet::Info& in) {
  const uint32_t n = rd.get_bits(x, kNibbleBits);
  if (n > kMaxNibbles) {
    throw BitstreamError("corrupt stream: escape with " + std::to_string(n) + " nibbles" +
                         kMismatchHint);
  }
  uint64_t raw = 0;
  for (uint32_t j = 0; j < n; ++j) raw |= static_cast<uint64_t>(rd.get_bits(x, kNibbleBits)) << (kNibbleBits * j);
  if (n > 0 && (raw >> (kNibbleBits * (n - 1))) == 0) {
    throw BitstreamError(std::string("corrupt stream: non-canonical escape") + kMismatchHint);
  }
  const int64_t v = (raw & 1) ? -static_cast<int64_t>((raw + 1) >> 1)
                              : static_cast<int64_t>(raw >> 1) + in.escape;
  const int64_t value = v + in.offset;
  if (value < std::numeric_limits<int32_t>::min() || value > std::numeric_limits<int32_t>::max()) {
    throw BitstreamError(std::string("corrupt stream: escaped value outside int32") +
                         kMismatchHint);
  }
  return static_cast<int32_t>(value);
}

inline int32_t decode_symbol(uint64_t& x, Reader& rd, const TableSet& tables, int32_t index,
                             int precision, uint32_t mask) {
  const TableSet::Info& in = tables.info(index);
  const uint32_t slot = static_cast<uint32_t>(x) & mask;
  const uint32_t s = tables.find_symbol(in, slot);
  const uint32_t* c = tables.cdf(in);
  x = static_cast<uint64_t>(c[s + 1] - c[s]) * (x >> precision) + (slot - c[s]);
  rd.renorm(x);
  if (GWN_LIKELY(static_cast<int32_t>(s) < in.escape)) {
    return static_cast<int32_t>(static_cast<int64_t>(in.offset) + s);
  }
  return decode_escape(x, rd, in);
}

}  // namespace

template <int kLanes>
void ChunkDecoder::decode_lanes(const int32_t* indexes, int32_t* out, size_t n) {
  const int precision = tables_.precision();
  const uint32_t mask = (1u << precision) - 1;
  Reader rd{ptr_, end_};
  size_t i = 0;
  if (kLanes == 1) {
    uint64_t x = state_[0];
    for (; i < n; ++i) out[i] = decode_symbol(x, rd, tables_, indexes[i], precision, mask);
    state_[0] = x;
  } else {
    // Align to a multiple of 4 positions, then run four lanes in lockstep.
    for (; i < n && (pos_ + i) % 4 != 0; ++i) {
      uint64_t& x = state_[(pos_ + i) & 3];
      out[i] = decode_symbol(x, rd, tables_, indexes[i], precision, mask);
    }
    uint64_t x0 = state_[0], x1 = state_[1], x2 = state_[2], x3 = state_[3];
    for (; i + 4 <= n; i += 4) {
      out[i] = decode_symbol(x0, rd, tables_, indexes[i], precision, mask);
      out[i + 1] = decode_symbol(x1, rd, tables_, indexes[i + 1], precision, mask);
      out[i + 2] = decode_symbol(x2, rd, tables_, indexes[i + 2], precision, mask);
      out[i + 3] = decode_symbol(x3, rd, tables_, indexes[i + 3], precision, mask);
    }
    state_[0] = x0, state_[1] = x1, state_[2] = x2, state_[3] = x3;
    for (; i < n; ++i) {
      uint64_t& x = state_[(pos_ + i) & 3];
      out[i] = decode_symbol(x, rd, tables_, indexes[i], precision, mask);
    }
  }
  ptr_ = rd.ptr;
}

void ChunkDecoder::decode(const int32_t* indexes, int32_t* out, size_t n) {
  if (lanes_ == 1) {
    decode_lanes<1>(indexes, out, n);
  } else {
    decode_lanes<4>(indexes, out, n);
  }
  hasher_.update(out, indexes, n);
  pos_ += n;
}

void ChunkDecoder::finish() const {
  bool ok = ptr_ == end_;
  ok = ok && state_[0] == (kChecksumTop | hasher_.digest());
  for (int l = 1; l < lanes_; ++l) ok = ok && state_[l] == kLow;
  if (!ok) {
    throw BitstreamError(std::string("checksum mismatch: the decoded symbols are not the "
                                     "encoded ones") + kMismatchHint);
  }
}

StreamDecoder::StreamDecoder(const TableSet& tables, const uint8_t* data, size_t size)
    : tables_(tables), data_(data), layout_(parse_stream(data, size)) {
  if (layout_.precision != tables.precision()) {
    throw BitstreamError("stream was coded at precision " + std::to_string(layout_.precision) +
                         " but the tables have precision " +
                         std::to_string(tables.precision()));
  }
}

void StreamDecoder::decode(const int32_t* indexes, int32_t* out, size_t n) {
  if (failed_) throw BitstreamError("decoder is unusable after an earlier error");
  const uint64_t left = layout_.num_symbols - pos_;
  if (n > left) {
    throw ArgumentError("indexes asks for " + std::to_string(n) + " symbols but the stream has " +
                        std::to_string(left) + " left (of " +
                        std::to_string(layout_.num_symbols) + ")");
  }
  check_indexes(tables_, indexes, n, static_cast<size_t>(pos_));
  try {
    while (n > 0) {
      if (current_.empty()) {
        current_.emplace_back(tables_, data_ + layout_.chunk_begin[chunk_],
                              data_ + layout_.chunk_end[chunk_], chunk_,
                              chunk_symbols(layout_, chunk_));
      }
      ChunkDecoder& cd = current_.back();
      const size_t take = std::min(n, cd.num_symbols() - cd.position());
      cd.decode(indexes, out, take);
      indexes += take;
      out += take;
      n -= take;
      pos_ += take;
      if (cd.position() == cd.num_symbols()) {
        cd.finish();
        current_.clear();
        ++chunk_;
      }
    }
  } catch (...) {
    failed_ = true;
    throw;
  }
}

void StreamDecoder::finish() {
  if (failed_) throw BitstreamError("decoder is unusable after an earlier error");
  if (pos_ != layout_.num_symbols) {
    throw BitstreamError("stream not used up: " + std::to_string(pos_) + " of " +
                         std::to_string(layout_.num_symbols) + " symbols decoded");
  }
  finished_ = true;
}

void decode(const TableSet& tables, const uint8_t* data, size_t size, const int32_t* indexes,
            int32_t* out, size_t n, int threads) {
  const StreamLayout layout = parse_stream(data, size);
  if (layout.precision != tables.precision()) {
    throw BitstreamError("stream was coded at precision " + std::to_string(layout.precision) +
                         " but the tables have precision " +
                         std::to_string(tables.precision()));
  }
  if (layout.num_symbols != n) {
    throw BitstreamError("stream holds " + std::to_string(layout.num_symbols) +
                         " symbols but indexes has " + std::to_string(n) + kMismatchHint);
  }
  const size_t num_chunks = layout.chunk_begin.size();
  parallel_for(num_chunks, threads, [&](size_t c) {
    const size_t begin = c << layout.chunk_log2;
    const size_t m = chunk_symbols(layout, c);
    check_indexes(tables, indexes + begin, m, begin);
    ChunkDecoder cd(tables, data + layout.chunk_begin[c], data + layout.chunk_end[c], c, m);
    cd.decode(indexes + begin, out + begin, m);
    cd.finish();
  });
}

}  // namespace gwn
