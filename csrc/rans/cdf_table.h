// Validated, immutable CDF table sets for the rANS coder.
//
// Table semantics are exactly CompressAI's `_quantized_cdf` / `_cdf_length` /
// `_offset` buffers: row t holds cdf_lengths[t] entries c[0..len-1] with c[0] = 0,
// c[len-1] = 1 << precision, strictly increasing (every symbol has a nonzero
// frequency). Symbols 0 .. len-3 code the values offset + s; symbol len-2 (the last
// one) is the escape: a value outside [offset, offset + len - 2) is coded as the
// escape followed by bypass bits, so every int32 value round-trips.
//
// REQUIRES: 1 <= precision <= kMaxPrecision; 2 <= cdf_lengths[t] <= row length.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace gwn {

constexpr int kMinPrecision = 1;
constexpr int kMaxPrecision = 24;

// Throws ArgumentError unless kMinPrecision <= precision <= kMaxPrecision.
void check_precision(int precision);

class TableSet {
 public:
  // cdfs: row-major [num_tables, row_length]; lengths, offsets: [num_tables].
  // Throws ArgumentError naming the table and the fault.
  TableSet(const int32_t* cdfs, int num_tables, int row_length, const int32_t* lengths,
           const int32_t* offsets, int precision);
  // The compact (ragged) form: row t is the lengths[t] entries that follow row t - 1 in
  // `data` (data_size = sum of lengths, checked).
  TableSet(const int32_t* data, size_t data_size, int num_tables, const int32_t* lengths,
           const int32_t* offsets, int precision);

  int precision() const { return precision_; }
  int num_tables() const { return static_cast<int>(info_.size()); }
  uint64_t fingerprint() const { return fingerprint_; }
  // All rows' c[0..len-1], concatenated (the compact form); size() = sum of lengths.
  const std::vector<uint32_t>& cdf_data() const { return cdf_; }
  // Bytes held for coding (CDFs, lookup buckets, per-table info).
  size_t nbytes() const {
    return cdf_.size() * sizeof(uint32_t) + bucket16_.size() * sizeof(uint16_t) +
           bucket32_.size() * sizeof(uint32_t) + info_.size() * sizeof(Info);
  }

  // Hot-path view of one table; 16 bytes so one load brings all of it.
  struct Info {
    uint32_t cdf_begin;  // index of c[0] in cdf_
    int32_t escape;      // = length - 2: the escape symbol, also the in-range count
    int32_t offset;      // value of symbol 0
    uint32_t bucket;     // (index of this table's bucket row) << 5 | shift
  };
  const Info& info(int t) const { return info_[static_cast<size_t>(t)]; }
  const uint32_t* cdf(const Info& in) const { return cdf_.data() + in.cdf_begin; }

  // The symbol s with c[s] <= slot < c[s+1]. Each table has 2^k buckets (k per table,
  // about log2 of its alphabet, see the constructor): bucket b holds the symbol at slot
  // b << shift, so [bucket[b], bucket[b+1]] brackets the answer and a short binary search
  // over c finishes it. The bucket rows stay small (a few bytes per symbol in all), so
  // thousands of tables keep their hot parts in cache.
  uint32_t find_symbol(const Info& in, uint32_t slot) const {
    const size_t at = (in.bucket >> 5) + (slot >> (in.bucket & 31));
    uint32_t lo, hi;
    if (wide_) {  // the same for every call: always predicted
      lo = bucket32_[at], hi = bucket32_[at + 1];
    } else {
      lo = bucket16_[at], hi = bucket16_[at + 1];
    }
    const uint32_t* c = cdf(in);
    // Narrow to at most two candidates (rarely needed: most buckets hold 1-2 symbols),
    // then pick between lo and lo + 1 without a branch. c[lo + 1] exists (lo <= len - 2)
    // and exceeds the slot whenever hi == lo.
    while (hi - lo > 1) {
      const uint32_t mid = (lo + hi + 1) >> 1;
      if (c[mid] <= slot) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    return lo + static_cast<uint32_t>(c[lo + 1] <= slot);
  }

 private:
  template <class Row>
  void init(int num_tables, const int32_t* lengths, const int32_t* offsets, Row row);
  int precision_;
  bool wide_ = false;  // some table has more than 2^16 symbols: 32-bit buckets
  std::vector<Info> info_;
  std::vector<uint32_t> cdf_;       // all tables' c[0..len-1], concatenated
  std::vector<uint16_t> bucket16_;  // per table: 2^k + 1 symbol bounds (if !wide_)
  std::vector<uint32_t> bucket32_;  // the same, if wide_
  uint64_t fingerprint_;
};

// Quantize a pmf of k >= 1 nonnegative finite weights (normalised here) to integer
// frequencies >= 1 that sum to exactly 1 << precision. Pure integer arithmetic after
// one IEEE multiply-and-round per symbol, so the result is the same on every machine.
// Throws ArgumentError (message prefixed with `what`) for bad input.
std::vector<uint32_t> quantize_pmf(const double* pmf, size_t k, int precision,
                                   const char* what);

// Tables in CompressAI's layout built from rows of pmfs: row t has pmf_lengths[t]
// probabilities (row-major [num_tables, row_length]); the escape symbol gets the
// missing mass max(0, 1 - sum). Output cdfs: [num_tables, max_len + 2],
// cdf_lengths[t] = pmf_lengths[t] + 2.
void build_pmf_tables(const double* pmfs, int num_tables, int row_length,
                      const int32_t* pmf_lengths, int precision, std::vector<int32_t>& cdfs,
                      std::vector<int32_t>& cdf_lengths, int& out_row_length);

// The same in the compact layout: data holds the rows back to back.
void build_pmf_tables_flat(const double* pmfs, int num_tables, int row_length,
                           const int32_t* pmf_lengths, int precision, std::vector<int32_t>& data,
                           std::vector<int32_t>& cdf_lengths);

// Zero-mean discretized Gaussian tables, one per scale, as CompressAI's
// GaussianConditional builds them (support [-m, m] with m = ceil(scale * q), q the
// standard normal quantile for tail_mass / 2, plus the escape for the tails), but
// computed with a deterministic erfc (basic IEEE operations only, no libm), so the
// tables are bit-identical on every machine. offsets[t] = -m.
void build_gaussian_tables(const double* scales, int num_scales, int precision,
                           double tail_mass, std::vector<int32_t>& cdfs,
                           std::vector<int32_t>& cdf_lengths, std::vector<int32_t>& offsets,
                           int& out_row_length);

constexpr int kMaxMeanSteps = 64;

// Tables in the compact layout: row t is lengths[t] entries of `data`, after row t - 1.
struct FlatTables {
  std::vector<int32_t> data;
  std::vector<int32_t> lengths;
  std::vector<int32_t> offsets;
};

// Gaussian tables with mean_steps = J in [1, kMaxMeanSteps] means per scale, in the
// compact layout. J = 1: exactly build_gaussian_tables' rows. J > 1: J tables per scale,
// table i J + j being N(j / J, scale_i) on the unit bins of the integers -m .. m + 1
// (m as above), offset -m, the two tails in the escape symbol; each bin's mass is taken
// from the tail on the side away from the mean. Deterministic like build_gaussian_tables.
void build_gaussian_tables_flat(const double* scales, int num_scales, int precision,
                                double tail_mass, int mean_steps, FlatTables& out);

// Deterministic standard-normal upper tail Q(x) = P(N(0,1) > x), x >= 0 (exposed for
// tests: relative error below 1e-12 where Q > 1e-300).
double normal_upper_tail(double x);

}  // namespace gwn
