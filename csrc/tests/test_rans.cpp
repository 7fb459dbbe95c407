// Self-test and seeded fuzz loop for the C++ core, meant to run under
// AddressSanitizer + UBSan (cmake -DGWN_SANITIZE=ON -DGWN_BUILD_TESTS=ON; ctest).
// Checks round trips (escapes, int32 extremes, lanes, chunks, threads, streaming
// blocks) and that corrupt streams raise BitstreamError without touching memory they
// do not own. Usage: rans_selftest [fuzz_seconds]
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
  for (int precision : {8, 12, 16, 20, 24}) {
    const Tables t = gaussian_tables(precision);
    const gwn::TableSet set = make_set(t, precision);
    std::mt19937_64 rng(precision);
    for (size_t n : {0, 1, 2, 3, 5, 63, 511, 512, 513, 4096, 70000}) {
      std::vector<int32_t> sym, idx;
      random_data(rng, n, set.num_tables(), sym, idx);
      for (int chunk_log2 : {4, 10, 18}) {
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

// Decode must raise BitstreamError (or return the right symbols) on any mutation.
size_t fuzz(double seconds) {
  const Tables t = gaussian_tables(16);
  const gwn::TableSet set = make_set(t, 16);
  std::mt19937_64 rng(12345);
  const auto start = std::chrono::steady_clock::now();
  size_t cases = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
    std::vector<int32_t> sym, idx;
    const size_t n = std::uniform_int_distribution<size_t>(0, 1200)(rng);
    random_data(rng, n, set.num_tables(), sym, idx);
    std::vector<uint8_t> data = gwn::encode(set, sym.data(), idx.data(), n, 1, 8);
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
      gwn::decode(set, buf.get(), data.size(), idx.data(), out.data(), n, 1);
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
  test_errors();
  const size_t cases = fuzz(seconds);
  std::printf("rans_selftest: %zu fuzz cases, %d failures\n", cases, failures);
  return failures == 0 ? 0 : 1;
}
