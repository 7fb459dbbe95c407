// Self-test and seeded fuzz loop for the C++ core, meant to run under
// AddressSanitizer + UBSan (cmake -DGWN_SANITIZE=ON -DGWN_BUILD_TESTS=ON; ctest).
// Checks round trips (escapes, int32 extremes, lanes, chunks, threads, streaming
// blocks, the 4-lane chunk's lane-0 tail and moved lane states), that corrupt
// streams raise BitstreamError without touching memory they do not own, and that
// build_indexes follows the count rule.
// Usage: rans_selftest [fuzz_seconds]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "rans/cdf_table.h"
#include "rans/errors.h"
#include "rans/indexes.h"
#include "rans/rans_core.h"

namespace {

int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

struct Tables {
  std::vector<int32_t> cdfs, lengths, offsets;
  int row = 0;
};

Tables gaussian_tables(int precision) {
  std::vector<double> scales;
  for (int i = 0; i < 16; ++i) {
    const double scale = 0.11 * std::pow(2.0, i * 0.75);
    if (2.0 * std::ceil(6.2 * scale) + 2.0 <= std::ldexp(1.0, precision)) scales.push_back(scale);
  }
  Tables t;
  gwn::build_gaussian_tables(scales.data(), static_cast<int>(scales.size()), precision, 1e-9,
                             t.cdfs, t.lengths, t.offsets, t.row);
  return t;
}

gwn::TableSet make_set(const Tables& t, int precision) {
  return gwn::TableSet(t.cdfs.data(), static_cast<int>(t.lengths.size()), t.row, t.lengths.data(),
                       t.offsets.data(), precision);
}

void random_data(std::mt19937_64& rng, size_t n, int num_tables, std::vector<int32_t>& sym,
                 std::vector<int32_t>& idx) {
  sym.resize(n);
  idx.resize(n);
  std::uniform_int_distribution<int> table(0, num_tables - 1);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> pick(0, 99);
  for (size_t i = 0; i < n; ++i) {
    idx[i] = table(rng);
    const double scale = 0.11 * std::pow(2.0, idx[i] * 0.75);
    const int r = pick(rng);
    if (r == 0) {
      sym[i] = std::numeric_limits<int32_t>::min();
    } else if (r == 1) {
      sym[i] = std::numeric_limits<int32_t>::max();
    } else if (r < 4) {
      sym[i] = static_cast<int32_t>(rng());
    } else {
      sym[i] = static_cast<int32_t>(std::lround(normal(rng) * scale));
    }
  }
}

void test_round_trips() {
  for (int precision : {8, 12, 16, 17, 20, 22, 24}) {
    const Tables t = gaussian_tables(precision);
    const gwn::TableSet set = make_set(t, precision);
    std::mt19937_64 rng(precision);
    for (size_t n : {0, 1, 2, 3, 5, 63, 511, 512, 513, 514, 515, 1027, 4096, 70000}) {
      std::vector<int32_t> sym, idx;
      random_data(rng, n, set.num_tables(), sym, idx);
      for (int chunk_log2 : {4, 9, 10, 18}) {
        const std::vector<uint8_t> a = gwn::encode(set, sym.data(), idx.data(), n, 1, chunk_log2);
        const std::vector<uint8_t> b = gwn::encode(set, sym.data(), idx.data(), n, 3, chunk_log2);
        CHECK(a == b);  // bytes independent of threads
        std::vector<int32_t> out(n);
        gwn::decode(set, a.data(), a.size(), idx.data(), out.data(), n, 2);
        CHECK(out == sym);
        // streaming in uneven blocks
        gwn::StreamDecoder dec(set, a.data(), a.size());
        std::vector<int32_t> out2(n);
        size_t pos = 0, step = 1;
        while (pos < n) {
          const size_t take = std::min(step, n - pos);
          dec.decode(idx.data() + pos, out2.data() + pos, take);
          pos += take;
          step = step * 3 + 1;
        }
        dec.finish();
        CHECK(out2 == sym);
      }
    }
  }
}

// Decodes `data` in one call and streaming in blocks cut at `cuts`; true if both give sym.
bool round_trips(const gwn::TableSet& set, const std::vector<uint8_t>& data,
                 const std::vector<int32_t>& sym, const std::vector<int32_t>& idx,
                 std::vector<size_t> cuts) {
  const size_t n = sym.size();
  std::vector<int32_t> out(n);
  gwn::decode(set, data.data(), data.size(), idx.data(), out.data(), n, 1);
  if (out != sym) return false;
  cuts.push_back(n);
  std::vector<int32_t> out2(n);
  gwn::StreamDecoder dec(set, data.data(), data.size());
  size_t pos = 0;
  for (size_t cut : cuts) {
    cut = std::min(std::max(cut, pos), n);
    dec.decode(idx.data() + pos, out2.data() + pos, cut - pos);
    pos = cut;
  }
  dec.finish();
  return out2 == sym;
}

// The tail length t of the stream's first chunk (a 4-lane chunk) and where it is stored.
size_t first_tail(const std::vector<uint8_t>& data, size_t* at = nullptr) {
  const gwn::StreamLayout layout = gwn::parse_stream(data.data(), data.size());
  size_t p = layout.chunk_begin[0], t = 0;
  if (at) *at = p;
  for (int shift = 0;; shift += 7) {
    t |= static_cast<size_t>(data[p] & 0x7F) << shift;
    if (!(data[p++] & 0x80)) return t;
  }
}

// 4-lane chunks whose interleaved part is 0..3 symbols long (lanes without symbols),
// long runs of the most probable symbol (lane 0 never holds enough: t == m), escapes
// on both sides of the split, blocks cut at the split.
void test_tail_and_split() {
  const Tables t = gaussian_tables(16);
  const gwn::TableSet set = make_set(t, 16);
  const int32_t kMin = std::numeric_limits<int32_t>::min();
  const int32_t kMax = std::numeric_limits<int32_t>::max();
  bool seen[5] = {false, false, false, false, false};  // split 0, 1, 2, 3, >= 4
  for (size_t m : {512, 515, 2048}) {
    for (size_t k = 0; k <= 16; ++k) {
      // k int32 extremes (~50 bits each, on the narrowest table) then zeros (most probable)
      std::vector<int32_t> sym(m, 0), idx(m, 0);
      for (size_t i = 0; i < k; ++i) sym[i] = (i % 2) ? kMin : kMax;
      if (k > 8) sym[m - 1] = kMin, sym[m - 2] = 12345;  // escapes at the very end too
      const std::vector<uint8_t> data = gwn::encode(set, sym.data(), idx.data(), m, 1);
      const size_t tail = first_tail(data);
      CHECK(tail >= 1 && tail <= m);
      const size_t split = m - tail;
      seen[std::min<size_t>(split, 4)] = true;
      CHECK(round_trips(set, data, sym, idx, {}));
      for (size_t c : {split - (split > 0), split, split + 1}) {
        CHECK(round_trips(set, data, sym, idx, {c}));
        CHECK(round_trips(set, data, sym, idx, {c, c, c + 1, c + 5}));
      }
    }
  }
  for (bool s : seen) CHECK(s);
  // A latent whose end is all most-probable symbols: a long tail, still exact.
  std::mt19937_64 rng(7);
  std::vector<int32_t> sym, idx;
  random_data(rng, 5000, set.num_tables(), sym, idx);
  for (size_t i = 3000; i < 5000; ++i) sym[i] = 0, idx[i] = 0;
  const std::vector<uint8_t> data = gwn::encode(set, sym.data(), idx.data(), sym.size(), 1, 12);
  CHECK(first_tail(data) > 1096);  // chunk 0 ends with 1096 most probable symbols
  CHECK(round_trips(set, data, sym, idx, {1, 2000, 2095, 3000, 4095, 4096, 4097}));
}

// Every value of the tail length and every truncation of a 4-lane chunk: decode raises
// BitstreamError or returns the right symbols, never crashes.
void test_corrupt_tail_and_states() {
  const Tables t = gaussian_tables(16);
  const gwn::TableSet set = make_set(t, 16);
  std::mt19937_64 rng(11);
  std::vector<int32_t> sym, idx;
  random_data(rng, 600, set.num_tables(), sym, idx);
  const std::vector<uint8_t> data = gwn::encode(set, sym.data(), idx.data(), sym.size(), 1);
  size_t at = 0;
  const size_t tail = first_tail(data, &at);
  CHECK(data[at] < 0x80);  // one varint byte
  size_t raised = 0, tried = 0;
  auto attempt = [&](const std::vector<uint8_t>& bytes) {
    std::unique_ptr<uint8_t[]> buf(new uint8_t[bytes.size() + 1]);
    if (!bytes.empty()) std::memcpy(buf.get(), bytes.data(), bytes.size());
    std::vector<int32_t> out(sym.size());
    ++tried;
    try {
      gwn::decode(set, buf.get(), bytes.size(), idx.data(), out.data(), out.size(), 1);
      CHECK(out == sym);
    } catch (const gwn::BitstreamError&) {
      ++raised;
    }
  };
  for (int v = 0; v < 256; ++v) {  // one-byte tail lengths, and 0x80.. continuing into the state
    if (static_cast<size_t>(v) == tail) continue;
    std::vector<uint8_t> bad = data;
    bad[at] = static_cast<uint8_t>(v);
    attempt(bad);
  }
  for (size_t v : {599u, 600u, 601u, 1000u, 16384u, 1u << 30}) {  // multi-byte varints
    std::vector<uint8_t> bad(data.begin(), data.begin() + static_cast<long>(at));
    for (size_t w = v; ; w >>= 7) {
      bad.push_back(static_cast<uint8_t>((w & 0x7F) | (w >= 0x80 ? 0x80 : 0)));
      if (w < 0x80) break;
    }
    bad.insert(bad.end(), data.begin() + static_cast<long>(at) + 1, data.end());
    attempt(bad);
  }
  std::vector<uint8_t> overlong(data.begin(), data.begin() + static_cast<long>(at));
  overlong.insert(overlong.end(), 12, 0xFF);
  overlong.insert(overlong.end(), data.begin() + static_cast<long>(at) + 1, data.end());
  attempt(overlong);
  CHECK(raised == tried);
  for (size_t cut = 0; cut < data.size(); ++cut) {  // truncated states and words
    raised = tried = 0;
    attempt(std::vector<uint8_t>(data.begin(), data.begin() + static_cast<long>(cut)));
    CHECK(raised == 1);
  }
  // A v1 stream (same header layout up to the version) is refused by version.
  std::vector<uint8_t> v1 = data;
  v1[1] = static_cast<uint8_t>((1 << 5) | (v1[1] & 31));
  bool threw = false;
  try {
    gwn::parse_stream(v1.data(), v1.size());
  } catch (const gwn::BitstreamError& e) {
    threw = std::strstr(e.what(), "version 1") != nullptr;
  }
  CHECK(threw);
}

void test_errors() {
  const Tables t = gaussian_tables(16);
  const gwn::TableSet set = make_set(t, 16);
  // a non-monotone table is rejected
  Tables bad = t;
  bad.cdfs[3] = bad.cdfs[2];
  bool threw = false;
  try {
    make_set(bad, 16);
  } catch (const gwn::ArgumentError&) {
    threw = true;
  }
  CHECK(threw);
  // index out of range
  std::vector<int32_t> sym = {1, 2}, idx = {0, 99};
  threw = false;
  try {
    gwn::encode(set, sym.data(), idx.data(), 2, 1);
  } catch (const gwn::ArgumentError&) {
    threw = true;
  }
  CHECK(threw);
}

// build_indexes against the count rule (T - 1) - #{i < T - 1 : s <= t[i]}, on tables
// of every kind (unsorted, duplicates, +-0, infinities, NaN entries) and special scales.
template <class F>
void test_indexes_for(std::mt19937_64& rng) {
  const F inf = std::numeric_limits<F>::infinity();
  const F nan = std::numeric_limits<F>::quiet_NaN();
  const F specials[] = {F(0), -F(0), inf, -inf, nan, -nan, std::numeric_limits<F>::denorm_min(),
                        std::numeric_limits<F>::min(), std::numeric_limits<F>::max(),
                        std::numeric_limits<F>::lowest(), F(1), F(-1)};
  std::uniform_real_distribution<double> log_scale(std::log(0.01), std::log(1000.0));
  for (int round = 0; round < 60; ++round) {
    const size_t size = 1 + rng() % (round % 3 == 0 ? 400 : 70);
    std::vector<F> table(size);
    for (auto& t : table) t = static_cast<F>(std::exp(log_scale(rng)));
    if (round % 2 == 0) std::sort(table.begin(), table.end());
    if (round % 5 == 1) table[rng() % size] = specials[rng() % 12];  // maybe NaN, +-0, inf
    if (round % 7 == 2 && size > 1) table[rng() % size] = table[rng() % size];  // duplicate
    size_t n = (round % 4 == 0) ? 40 : 1000 + rng() % 140000 / (size + 1);
    if (round % 10 == 9) n = std::min<size_t>(300000, 4000000 / size);  // several threads
    std::vector<F> scales(n);
    for (auto& s : scales) {
      const uint64_t pick = rng() % 10;
      if (pick == 0) {
        s = specials[rng() % 12];
      } else if (pick <= 2) {  // on, or next to, a table entry
        s = table[rng() % size];
        const F dir = (rng() % 2) ? inf : -inf;
        for (uint64_t k = rng() % 3; k > 0; --k) s = std::nextafter(s, dir);
      } else {
        s = static_cast<F>(std::exp(log_scale(rng)));
      }
    }
    const int threads = 1 + static_cast<int>(rng() % 3);
    std::vector<int32_t> out(n, -1);
    gwn::build_indexes(scales.data(), n, table.data(), size, out.data(), threads);
    size_t bad = 0;
    for (size_t k = 0; k < n; ++k) {
      int32_t expected = static_cast<int32_t>(size - 1);
      for (size_t i = 0; i + 1 < size; ++i) expected -= scales[k] <= table[i];
      bad += out[k] != expected;
    }
    CHECK(bad == 0);
  }
  bool threw = false;
  try {
    F one = 1;
    int32_t out = 0;
    gwn::build_indexes(&one, 1, &one, 0, &out, 1);
  } catch (const gwn::ArgumentError&) {
    threw = true;
  }
  CHECK(threw);
}

void test_indexes() {
  std::mt19937_64 rng(777);
  test_indexes_for<float>(rng);
  test_indexes_for<double>(rng);
}

// Decode must raise BitstreamError (or return the right symbols) on any mutation.
// Tables at 16, 20, 22 and 24 bits, zero-mean (padded layout) and with 4 mean steps
// (compact layout), so the campaign covers every supported high precision.
std::vector<std::unique_ptr<gwn::TableSet>> fuzz_sets() {
  std::vector<std::unique_ptr<gwn::TableSet>> sets;
  for (int precision : {16, 20, 22, 24}) {
    const Tables t = gaussian_tables(precision);
    sets.push_back(std::make_unique<gwn::TableSet>(make_set(t, precision)));
    std::vector<double> scales;
    for (int i = 0; i < 4; ++i) scales.push_back(0.11 * std::pow(2.0, i * 3.0));
    gwn::FlatTables flat;
    gwn::build_gaussian_tables_flat(scales.data(), 4, precision, 1e-9, 4, flat);
    sets.push_back(std::make_unique<gwn::TableSet>(flat.data.data(), flat.data.size(),
                                                   static_cast<int>(flat.lengths.size()),
                                                   flat.lengths.data(), flat.offsets.data(),
                                                   precision));
  }
  return sets;
}

size_t fuzz(double seconds) {
  const auto sets = fuzz_sets();
  std::mt19937_64 rng(12345);
  const auto start = std::chrono::steady_clock::now();
  size_t cases = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    const gwn::TableSet& set = *sets[cases % sets.size()];
    std::vector<int32_t> sym, idx;
    // up to 3 chunks of 1024: pairs of 4-lane chunks (decode_pair) and a single one
    const size_t n = std::uniform_int_distribution<size_t>(0, (rng() % 4 == 0) ? 3000 : 1200)(rng);
    random_data(rng, n, set.num_tables(), sym, idx);
    if (rng() % 3 == 0) {  // a run of most probable symbols: long lane-0 tails
      const size_t from = n ? rng() % n : 0;
      for (size_t i = from; i < n; ++i) sym[i] = 0, idx[i] = 0;
    }
    const int chunk_log2 = (rng() % 2) ? 8 : 10;  // 1- and 4-lane chunks
    std::vector<uint8_t> data = gwn::encode(set, sym.data(), idx.data(), n, 1, chunk_log2);
    const int kind = static_cast<int>(rng() % 4);
    if (kind == 0 && !data.empty()) {
      data.resize(rng() % data.size());  // truncate
    } else if (kind == 1 && !data.empty()) {
      data[rng() % data.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));  // bit flip
    } else if (kind == 2) {
      for (auto& byte : data) byte = static_cast<uint8_t>(rng());  // random bytes
    } else if (!idx.empty()) {
      idx[rng() % idx.size()] = static_cast<int32_t>(rng() % set.num_tables());  // wrong index
    }
    // Copy into an exactly sized heap buffer so ASan sees any overread.
    std::unique_ptr<uint8_t[]> buf(new uint8_t[data.size() + 1]);
    if (!data.empty()) std::memcpy(buf.get(), data.data(), data.size());
    std::vector<int32_t> out(n);
    try {
      gwn::decode(set, buf.get(), data.size(), idx.data(), out.data(), n, 1 + (cases & 1));
      CHECK(out == sym);  // a mutation that still decodes must decode correctly
    } catch (const gwn::BitstreamError&) {
    }
    try {
      gwn::StreamDecoder dec(set, buf.get(), data.size());
      if (dec.num_symbols() == n) {
        dec.decode(idx.data(), out.data(), n);
        dec.finish();
        CHECK(out == sym);
      }
    } catch (const gwn::BitstreamError&) {
    }
    ++cases;
  }
  return cases;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
  test_round_trips();
  test_tail_and_split();
  test_corrupt_tail_and_states();
  test_errors();
  test_indexes();
  const size_t cases = fuzz(seconds);
  std::printf("rans_selftest: %zu fuzz cases, %d failures\n", cases, failures);
  return failures == 0 ? 0 : 1;
}
