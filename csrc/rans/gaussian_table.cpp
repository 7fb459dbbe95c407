// Deterministic Gaussian tables. Everything here uses only IEEE-754 basic
// operations (+ - * /, floor, ceil, ldexp, nearbyint), which are correctly rounded on
// every conforming machine, and this file is compiled with -ffp-contract=off so no
// FMA changes a result. libm's exp/erfc are not used: they are not correctly rounded
// and differ between platforms, which is what makes CompressAI's tables differ.
#include <algorithm>
#include <cmath>
#include <string>

#include "rans/cdf_table.h"
#include "rans/errors.h"

namespace gwn {
namespace {

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2Hi = 6.93147180369123816490e-01;  // high bits of ln 2
constexpr double kLn2Lo = 1.90821492927058770002e-10;  // ln 2 - kLn2Hi
constexpr double kInvSqrtPi = 0.56418958354775628695;  // 1 / sqrt(pi)
constexpr double kInvSqrt2 = 0.70710678118654752440;

// exp(x) for x <= 0: x = n ln2 + r with |r| <= ln2 / 2, then a degree-14 Taylor
// polynomial in Horner form (truncation error < 1e-18 relative).
double det_exp_nonpositive(double x) {
  if (x < -745.0) return 0.0;
  const double n = std::nearbyint(x * kLog2e);
  const double r = (x - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0 / 87178291200.0;  // 1/14!
  static const double kInvFact[] = {1.0 / 6227020800.0, 1.0 / 479001600.0,
                                    1.0 / 39916800.0,   1.0 / 3628800.0,
                                    1.0 / 362880.0,     1.0 / 40320.0,
                                    1.0 / 5040.0,       1.0 / 720.0,
                                    1.0 / 120.0,        1.0 / 24.0,
                                    1.0 / 6.0,          1.0 / 2.0,
                                    1.0,                1.0};
  for (double c : kInvFact) p = p * r + c;
  return std::ldexp(p, static_cast<int>(n));
}

// erfc(z) for z >= 0.
double det_erfc(double z) {
  if (z < 2.5) {
    // erf(z) = 2/sqrt(pi) exp(-z^2) sum_n (2 z^2)^n z / (1*3*...*(2n+1)): all terms
    // positive, so no cancellation inside the sum; erfc = 1 - erf keeps ~1e-13
    // relative accuracy down to erfc(2.5) = 4e-4.
    const double z2 = z * z;
    double term = z;
    double sum = z;
    for (int n = 1; n < 80; ++n) {
      term = term * (2.0 * z2) / (2.0 * n + 1.0);
      sum += term;
    }
    return 1.0 - 2.0 * kInvSqrtPi * det_exp_nonpositive(-z2) * sum;
  }
  // Continued fraction erfc(z) = exp(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/...))),
  // evaluated bottom-up with a fixed depth (converged to double precision for z >= 2.5).
  double t = z;
  for (int n = 160; n >= 1; --n) t = z + (0.5 * n) / t;
  return det_exp_nonpositive(-(z * z)) * kInvSqrtPi / t;
}

}  // namespace

double normal_upper_tail(double x) { return 0.5 * det_erfc(x * kInvSqrt2); }

void build_gaussian_tables(const double* scales, int num_scales, int precision,
                           double tail_mass, std::vector<int32_t>& cdfs,
                           std::vector<int32_t>& cdf_lengths, std::vector<int32_t>& offsets,
                           int& out_row_length) {
  if (precision < kMinPrecision || precision > kMaxPrecision) {
    throw ArgumentError("precision must be in [" + std::to_string(kMinPrecision) + ", " +
                        std::to_string(kMaxPrecision) + "], got " +
                        std::to_string(precision));
  }
  if (num_scales < 1) throw ArgumentError("scale_table must hold at least one scale");
  if (!(tail_mass > 0.0 && tail_mass < 0.5)) {
    throw ArgumentError("tail_mass must be in (0, 0.5), got " + std::to_string(tail_mass));
  }
  // q with Q(q) = tail_mass / 2, by bisection on the deterministic Q.
  double lo = 0.0, hi = 40.0;
  for (int it = 0; it < 200; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (normal_upper_tail(mid) > 0.5 * tail_mass) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const double quantile = hi;
  const int64_t total = int64_t{1} << precision;

  std::vector<int64_t> centers(static_cast<size_t>(num_scales));
  int64_t max_len = 0;
  for (int t = 0; t < num_scales; ++t) {
    const double s = scales[t];
    if (!(s > 0.0) || !std::isfinite(s)) {
      throw ArgumentError("scale_table[" + std::to_string(t) + "] = " + std::to_string(s) +
                          " must be positive and finite");
    }
    const double m = std::ceil(s * quantile);
    // 2m+1 values plus the escape must fit in the 1 << precision slots.
    if (2.0 * m + 2.0 > static_cast<double>(total)) {
      throw ArgumentError("scale_table[" + std::to_string(t) + "] = " + std::to_string(s) +
                          " needs more symbols than 1 << precision = " +
                          std::to_string(total) + " slots; raise precision");
    }
    centers[static_cast<size_t>(t)] = static_cast<int64_t>(m);
    max_len = std::max(max_len, 2 * static_cast<int64_t>(m) + 1);
  }
  out_row_length = static_cast<int>(max_len + 2);
  cdfs.assign(static_cast<size_t>(num_scales) * static_cast<size_t>(out_row_length), 0);
  cdf_lengths.assign(static_cast<size_t>(num_scales), 0);
  offsets.assign(static_cast<size_t>(num_scales), 0);

  std::vector<double> pmf;
  for (int t = 0; t < num_scales; ++t) {
    const double s = scales[t];
    const int64_t m = centers[static_cast<size_t>(t)];
    const double inv_s = 1.0 / s;
    pmf.assign(static_cast<size_t>(2 * m + 2), 0.0);
    // Mass of k in [-m, m] from upper tails: Q((|k|-1/2)/s) - Q((|k|+1/2)/s), which is
    // accurate far into the tails where Phi differences would cancel.
    std::vector<double> upper(static_cast<size_t>(m + 2));
    for (int64_t j = 0; j <= m + 1; ++j) {
      upper[static_cast<size_t>(j)] = normal_upper_tail((static_cast<double>(j) - 0.5) * inv_s);
    }
    for (int64_t k = -m; k <= m; ++k) {
      const int64_t a = k < 0 ? -k : k;
      double p;
      if (a == 0) {
        p = 1.0 - 2.0 * normal_upper_tail(0.5 * inv_s);
      } else {
        p = upper[static_cast<size_t>(a)] - upper[static_cast<size_t>(a + 1)];
      }
      pmf[static_cast<size_t>(k + m)] = p;
    }
    pmf[static_cast<size_t>(2 * m + 1)] = 2.0 * upper[static_cast<size_t>(m + 1)];  // escape
    const std::string what = "scale_table[" + std::to_string(t) + "]";
    const std::vector<uint32_t> freq = quantize_pmf(pmf.data(), pmf.size(), precision,
                                                    what.c_str());
    int32_t* c = cdfs.data() + static_cast<size_t>(t) * static_cast<size_t>(out_row_length);
    uint32_t acc = 0;
    for (size_t i = 0; i < freq.size(); ++i) {
      acc += freq[i];
      c[i + 1] = static_cast<int32_t>(acc);
    }
    cdf_lengths[static_cast<size_t>(t)] = static_cast<int32_t>(2 * m + 3);
    offsets[static_cast<size_t>(t)] = static_cast<int32_t>(-m);
  }
}

}  // namespace gwn
