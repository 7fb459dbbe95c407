// Scale -> table index, with CompressAI's build_indexes semantics. Pure C++17, no Python.
//
// For a table t[0..T) (already in the scales' floating type) the index of a scale s is
//     (T - 1) - #{i < T - 1 : s <= t[i]}
// which for an ascending table is the smallest i with s <= t[i], else T - 1. A NaN scale
// gets T - 1 (it compares false with everything); t[T - 1] is never compared.
//
// The count depends only on the multiset {t[0], ..., t[T - 2]}, so every table takes the
// fast path: the compared entries are sorted once (NaN entries, which count for every
// scale, are counted instead), and each scale is located by a guess from a uniform lookup
// over the entries' order-preserving integer keys (which are roughly log-spaced for
// positive floats) followed by exact comparisons s <= t[i]. The result is bit-identical
// to the count rule for every input, +-0, +-inf, NaN and denormals included.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gwn {

// out[k] = index of scales[k], k < n. threads >= 1 ranges are processed at once (the
// result does not depend on it). Throws ArgumentError if table_size is 0 or > INT32_MAX.
void build_indexes(const float* scales, size_t n, const float* table, size_t table_size,
                   int32_t* out, int threads = 1);
void build_indexes(const double* scales, size_t n, const double* table, size_t table_size,
                   int32_t* out, int threads = 1);

}  // namespace gwn
