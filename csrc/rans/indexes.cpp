// Scale -> table index (see indexes.h for the rule).
//
// Locating a scale s, with b[0..m) the sorted non-NaN compared entries and c the number
// of NaN entries (each counts for every scale: s <= NaN is false):
//   !(s <= b[m-1])  (s above the table, or NaN)  -> T - 1
//   s <= b[0]                                    -> c
//   otherwise key(s) lies in (key(b[0]), key(b[m-1])], where key() maps a float's bits to
//   an unsigned integer in the same order (+-0 adjacent). A lookup over that key range,
//   in 2^shift-wide buckets, holds for each bucket the answer at its lowest key (lut[j])
//   and, as lut[j + 1], an upper bound for the whole bucket; the answer
//   c + (first i in [lut[j], lut[j+1]) with s <= b[i], else lut[j+1])
//   is then found by one comparison (buckets are sized so that most hold at most one
//   entry) or a binary search. Only the comparisons s <= b[i] decide, so the lookup is
//   a guess that cannot change the result.
#include "rans/indexes.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "rans/errors.h"

namespace gwn {
namespace {

template <class F>
using KeyOf = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;

// Order-preserving map of a float's bits to an unsigned integer (for non-NaN x, y:
// x < y implies key(x) < key(y); -0 and +0 get adjacent keys).
template <class F, class U = KeyOf<F>>
inline U order_key(F x) {
  static_assert(sizeof(F) == sizeof(U), "key width");
  constexpr U sign = U{1} << (8 * sizeof(U) - 1);
  U u;
  std::memcpy(&u, &x, sizeof u);
  const U neg = U{0} - (u >> (8 * sizeof(U) - 1));  // all ones if negative
  return u ^ (neg | sign);
}

template <class F, class U = KeyOf<F>>
inline F from_key(U k) {
  constexpr U sign = U{1} << (8 * sizeof(U) - 1);
  const U u = (k & sign) ? (k ^ sign) : ~k;
  F x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// Target number of lookup buckets: several per table entry, so that most buckets hold
// at most one entry even for unevenly spaced tables, within cache-friendly bounds, and
// no more than the input justifies (the lookup costs a binary search per bucket).
size_t lookup_buckets(size_t entries, size_t n) {
  size_t target = std::clamp<size_t>(16 * entries, 1024, size_t{1} << 16);
  return std::min(target, std::max<size_t>(64, n / 4));
}

template <class F>
class Locator {
  using U = KeyOf<F>;

 public:
  Locator(const F* table, size_t table_size, size_t n) {
    if (table_size == 0) throw ArgumentError("table must not be empty");
    if (table_size > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
      throw ArgumentError("table has more than 2**31 - 1 entries");
    }
    last_ = static_cast<int32_t>(table_size - 1);
    b_.reserve(table_size - 1);
    for (size_t i = 0; i + 1 < table_size; ++i) {
      F x = table[i];
      if (std::isnan(x)) continue;
      if (x == F(0)) x = F(0);  // -0 -> +0: equal under <=, and one key for the bounds
      b_.push_back(x);
    }
    base_ = last_ - static_cast<int32_t>(b_.size());  // NaN entries
    if (b_.empty()) return;
    std::sort(b_.begin(), b_.end());
    lo_ = b_.front();
    hi_ = b_.back();
    k0_ = order_key(lo_);
    const U range = order_key(hi_) - k0_;
    if (range == 0 || n < 64) return;  // no lookup: binary search (or nothing in range)
    const size_t target = lookup_buckets(b_.size(), n);
    shift_ = 0;
    while ((range >> shift_) + 1 > target) ++shift_;
    const U top = range >> shift_;  // highest bucket index
    lut_.resize(static_cast<size_t>(top) + 2);
    const int32_t m = static_cast<int32_t>(b_.size());
    for (size_t j = 0; j < lut_.size(); ++j) {
      // The lowest key of bucket j (clamped to hi_: no later bucket is ever used).
      const F x = j > top ? hi_ : from_key<F>(k0_ + (static_cast<U>(j) << shift_));
      lut_[j] = search(x, 0, m);
    }
  }

  void run(const F* scales, size_t n, int32_t* out) const {
    if (b_.empty()) {
      std::fill(out, out + n, last_);
      return;
    }
    const F lo = lo_, hi = hi_;
    const int32_t last = last_, base = base_;
    const F* b = b_.data();
    if (lut_.empty()) {
      const int32_t m = static_cast<int32_t>(b_.size());
      for (size_t k = 0; k < n; ++k) {
        const F s = scales[k];
        out[k] = !(s <= hi) ? last : base + search(s, 0, m);
      }
      return;
    }
    const int32_t* lut = lut_.data();
    const U k0 = k0_;
    const int shift = shift_;
    for (size_t k = 0; k < n; ++k) {
      const F s = scales[k];
      int32_t r;
      if (!(s <= hi)) {
        r = last;  // above every entry, or NaN
      } else if (s <= lo) {
        r = base;
      } else {
        const size_t j = static_cast<size_t>((order_key(s) - k0) >> shift);
        int32_t a = lut[j];
        const int32_t z = lut[j + 1];
        // The answer lies in [a, z] and is <= m - 1 (s <= hi), so b[a] is in range and,
        // for z <= a + 1, one comparison decides.
        if (z - a <= 1) {
          a += !(s <= b[a]);
        } else {
          a = search(s, a, z);
        }
        r = base + a;
      }
      out[k] = r;
    }
  }

 private:
  // First i in [a, z) with s <= b[i], else z (b ascending, s not NaN).
  int32_t search(F s, int32_t a, int32_t z) const {
    const F* b = b_.data();
    while (a < z) {
      const int32_t mid = a + (z - a) / 2;
      if (s <= b[mid]) {
        z = mid;
      } else {
        a = mid + 1;
      }
    }
    return a;
  }

  std::vector<F> b_;
  std::vector<int32_t> lut_;
  int32_t last_ = 0;
  int32_t base_ = 0;
  F lo_ = 0, hi_ = 0;
  U k0_ = 0;
  int shift_ = 0;
};

// fn(begin, end) over [0, n) split into up to `threads` contiguous ranges of at least
// kMinRange elements (fn must not throw).
template <class Fn>
void parallel_ranges(size_t n, int threads, Fn&& fn) {
  constexpr size_t kMinRange = size_t{1} << 16;
  const size_t workers =
      std::min(static_cast<size_t>(std::max(threads, 1)), std::max<size_t>(1, n / kMinRange));
  if (workers <= 1) {
    fn(size_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  try {
    for (size_t w = 1; w < workers; ++w) {
      pool.emplace_back([&fn, n, w, workers] { fn(n * w / workers, n * (w + 1) / workers); });
    }
  } catch (...) {
    for (auto& t : pool) t.join();
    throw;
  }
  fn(size_t{0}, n / workers);
  for (auto& t : pool) t.join();
}

template <class F>
void build_indexes_impl(const F* scales, size_t n, const F* table, size_t table_size,
                        int32_t* out, int threads) {
  const Locator<F> locate(table, table_size, n);
  parallel_ranges(n, threads, [&](size_t begin, size_t end) {
    locate.run(scales + begin, end - begin, out + begin);
  });
}

}  // namespace

void build_indexes(const float* scales, size_t n, const float* table, size_t table_size,
                   int32_t* out, int threads) {
  build_indexes_impl(scales, n, table, table_size, out, threads);
}

void build_indexes(const double* scales, size_t n, const double* table, size_t table_size,
                   int32_t* out, int threads) {
  build_indexes_impl(scales, n, table, table_size, out, threads);
}

}  // namespace gwn
