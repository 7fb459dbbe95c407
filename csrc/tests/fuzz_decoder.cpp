// libFuzzer target for the rANS stream decoder (issue 13): coverage-guided fuzzing of
// parse_stream, StreamDecoder (streaming, any block size) and the one-shot decode, under
// AddressSanitizer + UBSan. Build and run (needs clang):
//
//   cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DGWN_BUILD_FUZZER=ON
//   cmake --build build-fuzz --target fuzz_decoder
//   python csrc/tests/fuzz_corpus.py build-fuzz/corpus      # valid streams to start from
//   build-fuzz/fuzz_decoder -max_total_time=600 build-fuzz/corpus
//
// Input: byte 0 picks the table-index pattern and the decode block size; the rest is the
// stream. The decoder must decode or throw BitstreamError / ArgumentError; a stream that
// decodes must decode to the same symbols streaming and one-shot, and re-encode to a
// stream that decodes to them again. Anything else (a crash, a sanitizer report, another
// exception, a disagreement) is a finding.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "rans/cdf_table.h"
#include "rans/errors.h"
#include "rans/rans_core.h"

namespace {

constexpr uint64_t kMaxSymbols = 1 << 16;  // bounded work per input

// Tables at 16, 20 and 24 bits (fuzz_corpus.py writes streams for each); a stream is
// decoded with the set of its header's precision (16 bits for any other, which then
// fails the precision check).
const gwn::TableSet& tables(int precision) {
  static const gwn::TableSet* sets[3] = {nullptr, nullptr, nullptr};
  const int which = precision == 20 ? 1 : precision == 24 ? 2 : 0;
  if (sets[which] == nullptr) {
    const int p = which == 0 ? 16 : which == 1 ? 20 : 24;
    std::vector<double> scales;  // as fuzz_corpus.py: 0.11 * 2**(0.75 i), i < 16
    for (int i = 0; i < 16; ++i) scales.push_back(0.11 * std::pow(2.0, i * 0.75));
    std::vector<int32_t> cdfs, lengths, offsets;
    int row = 0;
    gwn::build_gaussian_tables(scales.data(), static_cast<int>(scales.size()), p, 1e-9, cdfs,
                               lengths, offsets, row);
    sets[which] = new gwn::TableSet(cdfs.data(), static_cast<int>(lengths.size()), row,
                                    lengths.data(), offsets.data(), p);
  }
  return *sets[which];
}

// The index of symbol i under pattern `mode` (fuzz_corpus.py has the same rule).
int32_t index_of(uint8_t mode, uint64_t i, int num_tables) {
  return static_cast<int32_t>((mode + i * (mode | 1u)) % static_cast<uint64_t>(num_tables));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  ++data;
  --size;
  const gwn::TableSet& set = tables(size >= 2 ? (data[1] & 31) + 1 : 16);
  std::vector<int32_t> idx, out;
  try {
    gwn::StreamDecoder dec(set, data, size);
    const uint64_t n = dec.num_symbols();
    if (n > kMaxSymbols) return 0;
    idx.resize(n);
    out.assign(n, 0);
    for (uint64_t i = 0; i < n; ++i) idx[i] = index_of(mode, i, set.num_tables());
    const size_t block = 1 + mode % 97;
    for (size_t pos = 0; pos < n;) {
      const size_t take = std::min<size_t>(block, n - pos);
      dec.decode(idx.data() + pos, out.data() + pos, take);
      pos += take;
    }
    dec.finish();
  } catch (const gwn::BitstreamError&) {
    return 0;
  } catch (const gwn::ArgumentError&) {
    return 0;
  }
  // It decoded: the one-shot decoder must agree, and a re-encoding must decode back.
  std::vector<int32_t> again(out.size(), 0);
  gwn::decode(set, data, size, idx.data(), again.data(), again.size(), 1);
  if (again != out) std::abort();
  const std::vector<uint8_t> re = gwn::encode(set, out.data(), idx.data(), out.size(), 1);
  std::vector<int32_t> back(out.size(), 0);
  gwn::decode(set, re.data(), re.size(), idx.data(), back.data(), back.size(), 1);
  if (back != out) std::abort();
  return 0;
}
