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

class TableSet {
 public:
  // cdfs: row-major [num_tables, row_length]; lengths, offsets: [num_tables].
  // Throws ArgumentError naming the table and the fault.
  TableSet(const int32_t* cdfs, int num_tables, int row_length, const int32_t* lengths,
           const int32_t* offsets, int precision);

  int precision() const { return precision_; }
  int num_tables() const { return static_cast<int>(info_.size()); }
  uint64_t fingerprint() const { return fingerprint_; }

  // Hot-path view of one table; 16 bytes so one load brings all of it.
  struct Info {
    uint32_t cdf_begin;     // index of c[0] in cdf_
    int32_t escape;         // = length - 2: the escape symbol, also the in-range count
    int32_t offset;         // value of symbol 0
    uint32_t bucket_begin;  // index of this table's bucket row in bucket_
  };
  const Info& info(int t) const { return info_[static_cast<size_t>(t)]; }
  const uint32_t* cdf(const Info& in) const { return cdf_.data() + in.cdf_begin; }

  // The symbol s with c[s] <= slot < c[s+1]. A bucket lookup narrows the range, then a
  // binary search: cost grows with log(symbols per bucket), not with the alphabet.
  uint32_t find_symbol(const Info& in, uint32_t slot) const {
    const uint32_t* b = bucket_.data() + in.bucket_begin + (slot >> bucket_shift_);
    uint32_t lo = b[0];
    uint32_t hi = b[1];
    const uint32_t* c = cdf(in);
    while (lo < hi) {
      const uint32_t mid = (lo + hi + 1) >> 1;
      if (c[mid] <= slot) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    return lo;
  }

 private:
  int precision_;
  int bucket_shift_;
  std::vector<Info> info_;
  std::vector<uint32_t> cdf_;     // all tables' c[0..len-1], concatenated
  std::vector<uint32_t> bucket_;  // per table: num_buckets + 1 symbol bounds
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

// Zero-mean discretized Gaussian tables, one per scale, as CompressAI's
// GaussianConditional builds them (support [-m, m] with m = ceil(scale * q), q the
// standard normal quantile for tail_mass / 2, plus the escape for the tails), but
// computed with a deterministic erfc (basic IEEE operations only, no libm), so the
// tables are bit-identical on every machine. offsets[t] = -m.
void build_gaussian_tables(const double* scales, int num_scales, int precision,
                           double tail_mass, std::vector<int32_t>& cdfs,
                           std::vector<int32_t>& cdf_lengths, std::vector<int32_t>& offsets,
                           int& out_row_length);

// Deterministic standard-normal upper tail Q(x) = P(N(0,1) > x), x >= 0 (exposed for
// tests: relative error below 1e-12 where Q > 1e-300).
double normal_upper_tail(double x);

}  // namespace gwn
