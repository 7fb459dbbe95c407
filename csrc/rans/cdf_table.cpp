#include "rans/cdf_table.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cmath>
#include <numeric>
#include <string>

#include "rans/checksum.h"
#include "rans/errors.h"

namespace gwn {
namespace {

std::string table_prefix(int t) { return "table " + std::to_string(t) + ": "; }

// Lookup buckets: table t gets 2^k_t buckets with k_t = ceil(log2(symbols)) + extra,
// capped at kMaxBucketBits and at the precision. With a few tables, extra = kBucketExtraMax
// (about 2^extra buckets per symbol: the bucket alone finds most symbols); with many
// tables extra is lowered, down to kBucketExtraMin, until the bucket rows of all tables
// fit in kBucketBudget entries, because a slot is uniform over its table's buckets (all of
// a row is hot) while only the central part of a wide Gaussian's CDF is. The choice is a
// speed trade-off only: it changes no stream.
constexpr int kMaxBucketBits = 10;
constexpr int kBucketExtraMax = 2;
constexpr int kBucketExtraMin = -2;
// 2 MiB: measured at 2,048 tables (256 scales x 8 mean steps, 20-bit), decode ran at
// 51 Msym/s with a 128 KiB budget, 64 with 2 MiB and 65 with no limit (5.6 MB in all):
// shorter searches matter more than the extra bytes.
constexpr uint64_t kBucketBudget = uint64_t{1} << 21;  // bytes

int ceil_log2(uint64_t v) {  // v >= 1
  int k = 0;
  while ((uint64_t{1} << k) < v) ++k;
  return k;
}

int bucket_bits(int32_t len, int extra, int precision) {
  const int k = ceil_log2(static_cast<uint64_t>(len - 1)) + extra;
  return std::max(0, std::min({k, kMaxBucketBits, precision}));
}

}  // namespace

void check_precision(int precision) {
  if (precision < kMinPrecision || precision > kMaxPrecision) {
    throw ArgumentError("precision must be in [" + std::to_string(kMinPrecision) + ", " +
                        std::to_string(kMaxPrecision) + "], got " +
                        std::to_string(precision));
  }
}

TableSet::TableSet(const int32_t* cdfs, int num_tables, int row_length,
                   const int32_t* lengths, const int32_t* offsets, int precision)
    : precision_(precision) {
  check_precision(precision);
  if (num_tables < 1) throw ArgumentError("cdfs must hold at least one table, got 0 rows");
  if (row_length < 2) {
    throw ArgumentError("cdfs rows must have at least 2 entries, got " +
                        std::to_string(row_length));
  }
  for (int t = 0; t < num_tables; ++t) {
    if (lengths[t] < 2 || lengths[t] > row_length) {
      throw ArgumentError(table_prefix(t) + "cdf_lengths[" + std::to_string(t) + "] = " +
                          std::to_string(lengths[t]) + " is out of range [2, " +
                          std::to_string(row_length) + "]");
    }
  }
  init(num_tables, lengths, offsets, [&](int t) {
    return cdfs + static_cast<size_t>(t) * static_cast<size_t>(row_length);
  });
}

TableSet::TableSet(const int32_t* data, size_t data_size, int num_tables,
                   const int32_t* lengths, const int32_t* offsets, int precision)
    : precision_(precision) {
  check_precision(precision);
  if (num_tables < 1) throw ArgumentError("cdf_lengths must hold at least one table, got 0");
  // A valid row is strictly increasing from 0 to 1 << precision.
  const int64_t max_len = (int64_t{1} << precision) + 1;
  uint64_t total = 0;
  for (int t = 0; t < num_tables; ++t) {
    if (lengths[t] < 2 || lengths[t] > max_len) {
      throw ArgumentError(table_prefix(t) + "cdf_lengths[" + std::to_string(t) + "] = " +
                          std::to_string(lengths[t]) + " is out of range [2, " +
                          std::to_string(max_len) + "]");
    }
    total += static_cast<uint64_t>(lengths[t]);
  }
  if (total != data_size) {
    throw ArgumentError("cdf_data holds " + std::to_string(data_size) +
                        " entries but cdf_lengths sum to " + std::to_string(total));
  }
  std::vector<size_t> begin(static_cast<size_t>(num_tables));
  size_t at = 0;
  for (int t = 0; t < num_tables; ++t) {
    begin[static_cast<size_t>(t)] = at;
    at += static_cast<size_t>(lengths[t]);
  }
  init(num_tables, lengths, offsets, [&](int t) { return data + begin[static_cast<size_t>(t)]; });
}

template <class Row>
void TableSet::init(int num_tables, const int32_t* lengths, const int32_t* offsets, Row row_of) {
  const int precision = precision_;
  const int64_t total = int64_t{1} << precision;
  uint64_t cdf_entries = 0;
  for (int t = 0; t < num_tables; ++t) cdf_entries += static_cast<uint64_t>(lengths[t]);
  // Info stores 32-bit positions (and the bucket position in 27 bits).
  if (cdf_entries > UINT32_MAX) {
    throw ArgumentError("the tables hold " + std::to_string(cdf_entries) +
                        " CDF entries in all; at most 2^32 - 1 are supported");
  }
  for (int t = 0; t < num_tables; ++t) wide_ = wide_ || lengths[t] - 2 > UINT16_MAX;
  const uint64_t entry_bytes = wide_ ? 4 : 2;
  int extra = kBucketExtraMax;
  for (; extra > kBucketExtraMin; --extra) {
    uint64_t entries = 0;
    for (int t = 0; t < num_tables; ++t) {
      entries += (uint64_t{1} << bucket_bits(lengths[t], extra, precision)) + 1;
    }
    if (entries * entry_bytes <= kBucketBudget) break;
  }
  uint64_t bucket_entries = 0;
  for (int t = 0; t < num_tables; ++t) {
    bucket_entries += (uint64_t{1} << bucket_bits(lengths[t], extra, precision)) + 1;
  }
  if (bucket_entries >= (uint64_t{1} << 27)) {
    throw ArgumentError("too many tables: their lookup needs " + std::to_string(bucket_entries) +
                        " bucket entries, at most 2^27 - 1 are supported");
  }
  cdf_.reserve(static_cast<size_t>(cdf_entries));
  if (wide_) {
    bucket32_.reserve(static_cast<size_t>(bucket_entries));
  } else {
    bucket16_.reserve(static_cast<size_t>(bucket_entries));
  }
  auto push_bucket = [&](uint32_t s) {
    if (wide_) {
      bucket32_.push_back(s);
    } else {
      bucket16_.push_back(static_cast<uint16_t>(s));
    }
  };

  info_.resize(static_cast<size_t>(num_tables));
  fingerprint_ = 0xCBF29CE484222325ull ^ static_cast<uint64_t>(precision);
  for (int t = 0; t < num_tables; ++t) {
    const int32_t len = lengths[t];
    const int32_t* row = row_of(t);
    if (row[0] != 0) {
      throw ArgumentError(table_prefix(t) + "cdf must start at 0, got cdf[0] = " +
                          std::to_string(row[0]));
    }
    if (row[len - 1] != total) {
      throw ArgumentError(table_prefix(t) + "cdf must end at 1 << precision = " +
                          std::to_string(total) + ", got cdf[" + std::to_string(len - 1) +
                          "] = " + std::to_string(row[len - 1]));
    }
    for (int32_t s = 0; s + 1 < len; ++s) {
      if (row[s + 1] <= row[s]) {
        throw ArgumentError(table_prefix(t) + "cdf is not strictly increasing at symbol " +
                            std::to_string(s) + " (cdf[" + std::to_string(s) + "] = " +
                            std::to_string(row[s]) + ", cdf[" + std::to_string(s + 1) +
                            "] = " + std::to_string(row[s + 1]) +
                            "): zero-probability symbols cannot be coded");
      }
    }
    // Decoded in-range values offset .. offset + len - 3 must be int32.
    if (static_cast<int64_t>(offsets[t]) + len - 3 > INT32_MAX) {
      throw ArgumentError(table_prefix(t) + "offsets[" + std::to_string(t) + "] = " +
                          std::to_string(offsets[t]) + " puts values beyond int32");
    }
    const int bits = bucket_bits(len, extra, precision);
    const int shift = precision - bits;
    Info& in = info_[static_cast<size_t>(t)];
    in.cdf_begin = static_cast<uint32_t>(cdf_.size());
    in.escape = len - 2;
    in.offset = offsets[t];
    const size_t bucket_at = wide_ ? bucket32_.size() : bucket16_.size();
    in.bucket = (static_cast<uint32_t>(bucket_at) << 5) | static_cast<uint32_t>(shift);
    cdf_.insert(cdf_.end(), row, row + len);
    // bucket b -> the symbol holding slot b << shift; the final entry is the last
    // symbol, so [bucket[b], bucket[b+1]] always brackets any slot of bucket b.
    uint32_t s = 0;
    for (uint32_t b = 0; b < (1u << bits); ++b) {
      const uint32_t slot = b << shift;
      while (static_cast<uint32_t>(row[s + 1]) <= slot) ++s;
      push_bucket(s);
    }
    push_bucket(static_cast<uint32_t>(len - 2));

    const uint32_t head[2] = {static_cast<uint32_t>(len), static_cast<uint32_t>(offsets[t])};
    fingerprint_ = fingerprint_words(head, 2, fingerprint_);
    fingerprint_ = fingerprint_words(cdf_.data() + in.cdf_begin, static_cast<size_t>(len),
                                     fingerprint_);
  }
}

std::vector<uint32_t> quantize_pmf(const double* pmf, size_t k, int precision,
                                   const char* what) {
  const uint64_t total = uint64_t{1} << precision;
  if (k == 0) throw ArgumentError(std::string(what) + ": empty pmf");
  if (k > total) {
    throw ArgumentError(std::string(what) + ": " + std::to_string(k) +
                        " symbols do not fit in 1 << precision = " + std::to_string(total) +
                        " slots; raise precision");
  }
  double mass = 0.0;
  for (size_t i = 0; i < k; ++i) {
    if (!(pmf[i] >= 0.0) || !std::isfinite(pmf[i])) {
      throw ArgumentError(std::string(what) + ": probability " + std::to_string(i) +
                          " is negative or not finite");
    }
    mass += pmf[i];
  }
  if (!(mass > 0.0)) throw ArgumentError(std::string(what) + ": pmf sums to 0");

  std::vector<uint32_t> freq(k);
  uint64_t sum = 0;
  const double scale = static_cast<double>(total) / mass;
  for (size_t i = 0; i < k; ++i) {
    const double f = std::floor(pmf[i] * scale + 0.5);
    freq[i] = f < 1.0 ? 1u : static_cast<uint32_t>(std::min(f, static_cast<double>(total)));
    sum += freq[i];
  }
  // Fix the sum in integers: first proportionally to each symbol's removable / own
  // mass, then one unit at a time from the largest symbols (cheapest in bits).
  std::vector<uint32_t> order(k);
  std::iota(order.begin(), order.end(), 0u);
  if (sum > total) {
    uint64_t excess = sum - total;
    uint64_t removable = sum - k;  // >= excess because k <= total
    for (size_t i = 0; i < k && excess > 0; ++i) {
      const uint64_t cut = (excess * (freq[i] - 1)) / removable;
      freq[i] -= static_cast<uint32_t>(cut);
      sum -= cut;
    }
  } else if (sum < total) {
    const uint64_t deficit = total - sum;
    const uint64_t base = sum;
    for (size_t i = 0; i < k; ++i) {
      const uint64_t add = (deficit * freq[i]) / base;
      freq[i] += static_cast<uint32_t>(add);
      sum += add;
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return freq[a] > freq[b]; });
  while (sum != total) {
    bool changed = false;
    for (size_t j = 0; j < k && sum != total; ++j) {
      uint32_t& f = freq[order[j]];
      if (sum > total) {
        if (f > 1) {
          --f;
          --sum;
          changed = true;
        }
      } else {
        ++f;
        ++sum;
        changed = true;
      }
    }
    if (!changed) throw ArgumentError(std::string(what) + ": cannot quantize pmf");
  }
  return freq;
}

void build_pmf_tables_flat(const double* pmfs, int num_tables, int row_length,
                           const int32_t* pmf_lengths, int precision, std::vector<int32_t>& data,
                           std::vector<int32_t>& cdf_lengths) {
  if (num_tables < 1) throw ArgumentError("pmfs must hold at least one row");
  uint64_t entries = 0;
  for (int t = 0; t < num_tables; ++t) {
    if (pmf_lengths[t] < 1 || pmf_lengths[t] > row_length) {
      throw ArgumentError("pmf_lengths[" + std::to_string(t) + "] = " +
                          std::to_string(pmf_lengths[t]) + " is out of range [1, " +
                          std::to_string(row_length) + "]");
    }
    entries += static_cast<uint64_t>(pmf_lengths[t]) + 2;
  }
  data.clear();
  data.reserve(static_cast<size_t>(entries));
  cdf_lengths.assign(static_cast<size_t>(num_tables), 0);
  std::vector<double> row;
  for (int t = 0; t < num_tables; ++t) {
    const int n = pmf_lengths[t];
    const double* p = pmfs + static_cast<size_t>(t) * static_cast<size_t>(row_length);
    row.assign(p, p + n);
    double mass = 0.0;
    for (double v : row) mass += v;
    row.push_back(mass < 1.0 ? 1.0 - mass : 0.0);  // escape: the missing tail mass
    const std::string what = "pmfs row " + std::to_string(t);
    const std::vector<uint32_t> freq = quantize_pmf(row.data(), row.size(), precision,
                                                    what.c_str());
    uint32_t acc = 0;
    data.push_back(0);
    for (size_t s = 0; s < freq.size(); ++s) {
      acc += freq[s];
      data.push_back(static_cast<int32_t>(acc));
    }
    cdf_lengths[static_cast<size_t>(t)] = n + 2;
  }
}

void build_pmf_tables(const double* pmfs, int num_tables, int row_length,
                      const int32_t* pmf_lengths, int precision, std::vector<int32_t>& cdfs,
                      std::vector<int32_t>& cdf_lengths, int& out_row_length) {
  std::vector<int32_t> data;
  build_pmf_tables_flat(pmfs, num_tables, row_length, pmf_lengths, precision, data, cdf_lengths);
  int max_len = 0;
  for (int32_t len : cdf_lengths) max_len = std::max(max_len, len);
  out_row_length = max_len;
  cdfs.assign(static_cast<size_t>(num_tables) * static_cast<size_t>(max_len), 0);
  size_t at = 0;
  for (int t = 0; t < num_tables; ++t) {
    const size_t len = static_cast<size_t>(cdf_lengths[static_cast<size_t>(t)]);
    std::copy(data.begin() + static_cast<std::ptrdiff_t>(at),
              data.begin() + static_cast<std::ptrdiff_t>(at + len),
              cdfs.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(t) * static_cast<size_t>(max_len)));
    at += len;
  }
}

}  // namespace gwn
