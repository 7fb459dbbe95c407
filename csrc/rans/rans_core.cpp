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
constexpr int kLowBits = 31;       // log2(kLow)
constexpr int kStateLogBits = 5;   // code of floor(log2 y) - 31 for a lane state y moved
constexpr size_t kMovedWordsMax = 3 * 3;  // words one merge of lanes 1..3 can emit
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

inline int floor_log2(uint64_t v) {  // REQUIRES v > 0
#if defined(__GNUC__)
  return 63 - __builtin_clzll(v);
#else
  int r = 0;
  while (v >>= 1) ++r;
  return r;
#endif
}

// ---- moving a lane state through lane 0 -------------------------------------------
// A lane state y in [2^31, 2^63) is coded into lane 0's state x as raw bits: first
// (pushed last) e = floor(log2 y) - 31 in 5 bits, then the low 31 bits of y, then the e
// bits above them (the leading 1 is implied). push_* are encoder steps that hand
// renormalisation words to `emit`; pop_* are their exact inverses and take words from
// a reader `rd` (rd.word()), like any decoder step.

template <class Emit>
inline void push_bits(uint64_t& x, uint32_t value, int bits, Emit& emit) {
  if (x >= ((kLow >> bits) << 32)) {
    emit(static_cast<uint32_t>(x));
    x >>= 32;
  }
  x = (x << bits) | value;
}

template <class Emit>
inline void push_state(uint64_t& x, uint64_t y, Emit& emit) {
  const int e = floor_log2(y) - kLowBits;  // 0..31
  if (e > 0) {
    push_bits(x, static_cast<uint32_t>(y >> kLowBits) & ((1u << e) - 1), e, emit);
  }
  push_bits(x, static_cast<uint32_t>(y) & static_cast<uint32_t>(kLow - 1), kLowBits, emit);
  push_bits(x, static_cast<uint32_t>(e), kStateLogBits, emit);
}

template <class R>
inline uint32_t pop_bits(uint64_t& x, int bits, R& rd) {
  const uint32_t v = static_cast<uint32_t>(x) & ((1u << bits) - 1);
  x >>= bits;
  if (x < kLow) x = (x << 32) | rd.word();
  return v;
}

template <class R>
inline uint64_t pop_state(uint64_t& x, R& rd) {
  const int e = static_cast<int>(pop_bits(x, kStateLogBits, rd));
  uint64_t y = pop_bits(x, kLowBits, rd);
  if (e > 0) y |= static_cast<uint64_t>(pop_bits(x, e, rd)) << kLowBits;
  return y | (uint64_t{1} << (kLowBits + e));
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

// Encoder-side word output for push_state: words are written backwards.
struct WordSink {
  uint32_t* ptr;
  void operator()(uint32_t w) { *--ptr = w; }
};

// Encoder-side reader for the pops that seed lanes 1..3: takes back the words lane 0
// emitted last (they leave the stream; the decoder's pushes regenerate them). `ok`
// turns false if lane 0 has emitted too few.
struct Unemitter {
  uint32_t* ptr;
  uint32_t* end;
  bool ok = true;
  uint32_t word() {
    if (ptr == end) {
      ok = false;
      return 0;
    }
    return *ptr++;
  }
};

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v) | 0x80);
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

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

  // Each step emits <= 1 word; + the moved lane states and the split final state.
  std::vector<uint32_t> words(m + extra_steps + kMovedWordsMax + 1);
  uint32_t* const words_end = words.data() + words.size();
  Encoder enc{words_end, (kLow >> tables.precision()) << 32, tables.precision()};
  uint64_t x0 = kChecksumTop | hasher.digest();
  uint64_t x1 = 0, x2 = 0, x3 = 0;
  size_t split = 0;  // symbols [0, split) go to 4 lanes, [split, m) to lane 0 alone
  if (lanes_for(m) == 4) {
    // Code the tail into lane 0 (in reverse, as always) until lane 0 holds enough to
    // pop the initial states of lanes 3, 2, 1 out of it; those pops are undone by the
    // decoder's pushes, so the lanes' initial states cost nothing (bits-back).
    for (size_t t = 0; t < m; ++t) {
      // Three pops take at most 3 * 67 bits and leave x0 >= 2^31: no use trying before
      // lane 0 has emitted 3 words.
      if (words_end - enc.ptr >= 3) {
        Unemitter rd{enc.ptr, words_end};
        uint64_t x = x0;
        const uint64_t y3 = pop_state(x, rd);
        const uint64_t y2 = pop_state(x, rd);
        const uint64_t y1 = pop_state(x, rd);
        if (rd.ok) {
          x0 = x, x1 = y1, x2 = y2, x3 = y3;
          enc.ptr = rd.ptr;
          split = m - t;
          break;
        }
      }
      enc.symbol(x0, tables, symbols[m - 1 - t], indexes[m - 1 - t]);
    }
    // Symbols are coded in reverse; lane = position % 4.
    size_t i = split;
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
    if (split > 0) {  // the decoder pops lanes 1, 2, 3 from lane 0 first
      WordSink sink{enc.ptr};  // (a copy: taking enc's address would slow the loops above)
      push_state(x0, x3, sink);
      push_state(x0, x2, sink);
      push_state(x0, x1, sink);
      enc.ptr = sink.ptr;
    }
  } else {
    for (size_t i = m; i-- > 0;) enc.symbol(x0, tables, symbols[i], indexes[i]);
  }

  std::vector<uint8_t> out;
  if (lanes_for(m) == 4) put_varint(out, m - split);
  if (x0 >> 56) {  // needs 8 bytes: split so the head stays 4..7 bytes long
    *--enc.ptr = static_cast<uint32_t>(x0);
    x0 >>= 32;
  }
  int k = 4;
  while (k < 8 && (x0 >> (8 * k)) != 0) ++k;
  const size_t nwords = static_cast<size_t>(words_end - enc.ptr);
  const size_t head = out.size();
  out.resize(head + static_cast<size_t>(k) + 4 * nwords);
  store_le(out.data() + head, x0, k);
  for (size_t w = 0; w < nwords; ++w) store_le(out.data() + head + k + 4 * w, enc.ptr[w], 4);
  return out;
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
  // The chunk-size byte is left out when it would not change the chunking.
  const bool chunk_byte = chunk_log2 != kDefaultChunkLog2 &&
                          n > (size_t{1} << std::min(chunk_log2, kDefaultChunkLog2));
  put_varint(out, (static_cast<uint64_t>(n) << 1) | (chunk_byte ? 1u : 0u));
  if (chunk_byte) out.push_back(static_cast<uint8_t>(chunk_log2));
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
  if (size < 3) {
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
  const uint64_t count = get_varint(data, size, pos, "symbol count");
  layout.num_symbols = count >> 1;
  layout.chunk_log2 = kDefaultChunkLog2;
  if (count & 1) {
    if (pos >= size) throw BitstreamError("truncated stream header (chunk size)");
    layout.chunk_log2 = data[pos++];
  }
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

namespace {

struct Reader {
  const uint8_t* ptr;
  const uint8_t* end;
  inline uint32_t word() {
    if (end - ptr < 4) throw_truncated();
    const uint32_t w = load_le32(ptr);
    ptr += 4;
    return w;
  }
  // Branch-free while 4 bytes remain (whether a word is read is close to a coin flip,
  // so a branch would often be mispredicted); the checked path near the end.
  inline void renorm(uint64_t& x) {
    if (GWN_LIKELY(end - ptr >= 4)) {
      const uint64_t w = load_le32(ptr);
      const bool pull = x < kLow;
      x = pull ? (x << 32) | w : x;
      ptr += pull ? 4 : 0;
    } else if (x < kLow) {
      x = (x << 32) | word();
    }
  }
  inline uint32_t get_bits(uint64_t& x, int bits) { return pop_bits(x, bits, *this); }
};

// Lane 0 right after the merge of lanes 1..3: the words that merge emitted come first
// (last emitted, first read), then the chunk's bytes.
struct PushbackReader {
  const uint8_t* ptr;
  const uint8_t* end;
  const uint32_t* pushed;
  int count;
  uint32_t word() {
    if (count > 0) return pushed[--count];
    if (end - ptr < 4) throw_truncated();
    const uint32_t w = load_le32(ptr);
    ptr += 4;
    return w;
  }
  void renorm(uint64_t& x) {
    if (x < kLow) x = (x << 32) | word();
  }
  uint32_t get_bits(uint64_t& x, int bits) { return pop_bits(x, bits, *this); }
};

template <class R>
GWN_NOINLINE int32_t decode_escape(uint64_t& x, R& rd, const TableSet::Info& in) {
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

template <class R>
inline int32_t decode_symbol(uint64_t& x, R& rd, const TableSet& tables, int32_t index,
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

[[noreturn]] GWN_NOINLINE void throw_bad_state() {
  throw BitstreamError(std::string("corrupt stream: invalid coder state") + kMismatchHint);
}

}  // namespace

ChunkDecoder::ChunkDecoder(const TableSet& tables, const uint8_t* begin, const uint8_t* end,
                           uint64_t chunk_index, size_t num_symbols)
    : tables_(tables),
      ptr_(begin),
      end_(end),
      seed_(chunk_seed(tables.fingerprint(), chunk_index)),
      count_(num_symbols),
      hasher_(seed_) {
  if (lanes_for(num_symbols) == 4) {
    // varint t = the tail length, 1 <= t <= m (t = 0 never comes from the encoder but
    // decodes consistently).
    uint64_t t = 0;
    for (int shift = 0;; shift += 7) {
      if (ptr_ == end_) throw_truncated();
      if (shift > 56) throw_bad_state();  // >= 2^63: more than any chunk holds
      const uint8_t b = *ptr_++;
      t |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) break;
    }
    if (t > num_symbols) {
      throw BitstreamError("corrupt stream: tail of " + std::to_string(t) +
                           " symbols in a chunk of " + std::to_string(num_symbols) +
                           kMismatchHint);
    }
    split_ = num_symbols - static_cast<size_t>(t);
  }
  const size_t size = static_cast<size_t>(end_ - ptr_);
  const int k = 4 + static_cast<int>(size % 4);
  if (size < static_cast<size_t>(k)) throw_truncated();
  uint64_t x = load_le(ptr_, k);
  ptr_ += k;
  Reader rd{ptr_, end_};
  if (x < kLow) x = (x << 32) | rd.word();
  if (x < kLow || (x >> 63) != 0) throw_bad_state();
  state_[0] = x;
  if (split_ > 0) {  // lanes 1..3 start from states stored in lane 0
    for (int l = 1; l < 4; ++l) state_[l] = pop_state(state_[0], rd);
    merged_ = false;
  }
  ptr_ = rd.ptr;
}

void ChunkDecoder::decode_interleaved(const int32_t* indexes, int32_t* out, size_t n) {
  const int precision = tables_.precision();
  const uint32_t mask = (1u << precision) - 1;
  Reader rd{ptr_, end_};
  size_t i = 0;
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
  ptr_ = rd.ptr;
}

void ChunkDecoder::decode_pair(ChunkDecoder& a, const int32_t* ia, int32_t* oa,
                               ChunkDecoder& b, const int32_t* ib, int32_t* ob, size_t n) {
  const TableSet& tables = a.tables_;
  const int precision = tables.precision();
  const uint32_t mask = (1u << precision) - 1;
  Reader ra{a.ptr_, a.end_};
  Reader rb{b.ptr_, b.end_};
  uint64_t x0 = a.state_[0], x1 = a.state_[1], x2 = a.state_[2], x3 = a.state_[3];
  uint64_t y0 = b.state_[0], y1 = b.state_[1], y2 = b.state_[2], y3 = b.state_[3];
  for (size_t i = 0; i < n; i += 4) {
    oa[i] = decode_symbol(x0, ra, tables, ia[i], precision, mask);
    ob[i] = decode_symbol(y0, rb, tables, ib[i], precision, mask);
    oa[i + 1] = decode_symbol(x1, ra, tables, ia[i + 1], precision, mask);
    ob[i + 1] = decode_symbol(y1, rb, tables, ib[i + 1], precision, mask);
    oa[i + 2] = decode_symbol(x2, ra, tables, ia[i + 2], precision, mask);
    ob[i + 2] = decode_symbol(y2, rb, tables, ib[i + 2], precision, mask);
    oa[i + 3] = decode_symbol(x3, ra, tables, ia[i + 3], precision, mask);
    ob[i + 3] = decode_symbol(y3, rb, tables, ib[i + 3], precision, mask);
  }
  a.state_[0] = x0, a.state_[1] = x1, a.state_[2] = x2, a.state_[3] = x3;
  b.state_[0] = y0, b.state_[1] = y1, b.state_[2] = y2, b.state_[3] = y3;
  a.ptr_ = ra.ptr;
  b.ptr_ = rb.ptr;
  a.hasher_.update(oa, ia, n);
  b.hasher_.update(ob, ib, n);
  a.pos_ = n;
  b.pos_ = n;
}

// After the interleaved part: push the end states of lanes 1..3 (their initial states,
// if the stream is intact) back into lane 0, which then holds the tail.
void ChunkDecoder::merge_lanes() {
  auto emit = [this](uint32_t w) { pushback_[pushed_++] = w; };
  for (int l = 1; l < 4; ++l) {
    if (state_[l] < kLow || (state_[l] >> 63) != 0) throw_bad_state();
    push_state(state_[0], state_[l], emit);
  }
  merged_ = true;
}

void ChunkDecoder::decode_tail(const int32_t* indexes, int32_t* out, size_t n) {
  const int precision = tables_.precision();
  const uint32_t mask = (1u << precision) - 1;
  uint64_t x = state_[0];
  size_t i = 0;
  if (pushed_ > 0) {
    PushbackReader prd{ptr_, end_, pushback_, pushed_};
    for (; i < n && prd.count > 0; ++i) {
      out[i] = decode_symbol(x, prd, tables_, indexes[i], precision, mask);
    }
    ptr_ = prd.ptr;
    pushed_ = prd.count;
  }
  Reader rd{ptr_, end_};
  for (; i < n; ++i) out[i] = decode_symbol(x, rd, tables_, indexes[i], precision, mask);
  ptr_ = rd.ptr;
  state_[0] = x;
}

void ChunkDecoder::decode(const int32_t* indexes, int32_t* out, size_t n) {
  size_t i = 0;
  if (pos_ < split_) {
    i = std::min(n, split_ - pos_);
    decode_interleaved(indexes, out, i);
  }
  if (!merged_ && pos_ + i == split_) merge_lanes();
  if (i < n) decode_tail(indexes + i, out + i, n - i);
  hasher_.update(out, indexes, n);
  pos_ += n;
}

void ChunkDecoder::finish() const {
  const bool ok = merged_ && pushed_ == 0 && ptr_ == end_ &&
                  state_[0] == (kChecksumTop | hasher_.digest());
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
  auto one = [&](size_t c) {
    const size_t begin = c << layout.chunk_log2;
    const size_t m = chunk_symbols(layout, c);
    ChunkDecoder cd(tables, data + layout.chunk_begin[c], data + layout.chunk_end[c], c, m);
    cd.decode(indexes + begin, out + begin, m);
    cd.finish();
  };
  // Chunks go in pairs (c, c + 1) decoded in one loop (ChunkDecoder::decode_pair). If
  // the pair fails, each chunk is decoded again on its own, so the error reported is
  // exactly the one a chunk-by-chunk decode gives.
  parallel_for((num_chunks + 1) / 2, threads, [&](size_t p) {
    const size_t c = 2 * p;
    const size_t begin = c << layout.chunk_log2;
    const size_t m = chunk_symbols(layout, c);
    check_indexes(tables, indexes + begin, m, begin);
    if (c + 1 == num_chunks) {
      one(c);
      return;
    }
    const size_t begin2 = (c + 1) << layout.chunk_log2;
    const size_t m2 = chunk_symbols(layout, c + 1);
    check_indexes(tables, indexes + begin2, m2, begin2);
    try {
      ChunkDecoder a(tables, data + layout.chunk_begin[c], data + layout.chunk_end[c], c, m);
      ChunkDecoder b(tables, data + layout.chunk_begin[c + 1], data + layout.chunk_end[c + 1],
                     c + 1, m2);
      const size_t n = std::min(a.pairable(), b.pairable());
      ChunkDecoder::decode_pair(a, indexes + begin, out + begin, b, indexes + begin2,
                                out + begin2, n);
      a.decode(indexes + begin + n, out + begin + n, m - n);
      a.finish();
      b.decode(indexes + begin2 + n, out + begin2 + n, m2 - n);
      b.finish();
    } catch (const BitstreamError&) {
      one(c);
      one(c + 1);
    }
  });
}

}  // namespace gwn
