// Deterministic Gaussian tables. Everything here uses only IEEE-754 basic
// operations (+ - * /, floor, ceil, ldexp, nearbyint), which are correctly rounded on
// every conforming machine, and this file is compiled with -ffp-contract=off so no
// FMA changes a result. libm's exp/erfc are not used: they are not correctly rounded
// and differ between platforms, which is what makes CompressAI's tables differ.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

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

// erfc(z) for z >= 0. The continued fraction runs cf_depth levels: kExactDepth (160) for
// the zero-mean tables, whose bits are frozen by the golden tests, or a depth that
// shrinks with z for the mean-offset ones (erfc_depth_for: 48 levels at z = 2.5, where 37
// already reach 2e-16 relative error; fewer for larger z, which converges faster).
constexpr int kExactDepth = 160;

int erfc_depth_for(double z) {  // z >= 2.5
  return 8 + static_cast<int>(std::ceil(100.0 / z));
}

double det_erfc(double z, int cf_depth) {
  if (z < 2.5) {
    // erf(z) = 2/sqrt(pi) exp(-z^2) sum_n (2 z^2)^n z / (1*3*...*(2n+1)): all terms
    // positive, so no cancellation inside the sum; erfc = 1 - erf keeps ~1e-13
    // relative accuracy down to erfc(2.5) = 4e-4.
    const double z2 = z * z;
    double term = z;
    double sum = z;
    for (int n = 1; n < 80; ++n) {
      term = term * (2.0 * z2) / (2.0 * n + 1.0);
      // Past the peak the terms shrink; once one is below 2^-54 of the sum (under half
      // an ulp of it) neither it nor any later one changes the rounded sum, so stopping
      // here gives the same bits as running all 80 terms.
      if (2.0 * z2 < 2.0 * n + 1.0 && term < sum * 0x1p-54) break;
      sum += term;
    }
    return 1.0 - 2.0 * kInvSqrtPi * det_exp_nonpositive(-z2) * sum;
  }
  // Continued fraction erfc(z) = exp(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/...))),
  // evaluated bottom-up with a fixed depth (converged to double precision for z >= 2.5).
  double t = z;
  for (int n = cf_depth; n >= 1; --n) t = z + (0.5 * n) / t;
  return det_exp_nonpositive(-(z * z)) * kInvSqrtPi / t;
}

// Q(x) = P(N(0,1) > x) for x >= 0, the mean-offset tables' variant (see det_erfc).
double upper_tail_fast(double x) {
  const double z = x * kInvSqrt2;
  return 0.5 * det_erfc(z, z < 2.5 ? kExactDepth : erfc_depth_for(z));
}

}  // namespace

double normal_upper_tail(double x) { return 0.5 * det_erfc(x * kInvSqrt2, kExactDepth); }

namespace {

double tail_quantile(double tail_mass) {
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
  return hi;
}

void append_row(const std::vector<double>& pmf, int precision, const std::string& what,
                int64_t m, FlatTables& out) {
  const std::vector<uint32_t> freq = quantize_pmf(pmf.data(), pmf.size(), precision, what.c_str());
  uint32_t acc = 0;
  out.data.push_back(0);
  for (size_t i = 0; i < freq.size(); ++i) {
    acc += freq[i];
    out.data.push_back(static_cast<int32_t>(acc));
  }
  out.lengths.push_back(static_cast<int32_t>(freq.size() + 1));
  out.offsets.push_back(static_cast<int32_t>(-m));
}

// Zero-mean table of scale s on [-m, m] (the frozen layout of mean_steps = 1).
void zero_mean_row(double s, int64_t m, std::vector<double>& pmf) {
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
}

}  // namespace

void build_gaussian_tables_flat(const double* scales, int num_scales, int precision,
                                double tail_mass, int mean_steps, FlatTables& out) {
  check_precision(precision);
  if (num_scales < 1) throw ArgumentError("scale_table must hold at least one scale");
  if (!(tail_mass > 0.0 && tail_mass < 0.5)) {
    throw ArgumentError("tail_mass must be in (0, 0.5), got " + std::to_string(tail_mass));
  }
  if (mean_steps < 1 || mean_steps > kMaxMeanSteps) {
    throw ArgumentError("mean_steps must be in [1, " + std::to_string(kMaxMeanSteps) +
                        "], got " + std::to_string(mean_steps));
  }
  const int J = mean_steps;
  const double quantile = tail_quantile(tail_mass);
  const int64_t total = int64_t{1} << precision;
  // Values per table: 2m + 1 (J = 1) or 2m + 2 (J > 1), plus the escape.
  const double extra_values = J == 1 ? 2.0 : 3.0;

  std::vector<int64_t> centers(static_cast<size_t>(num_scales));
  uint64_t entries = 0;
  for (int t = 0; t < num_scales; ++t) {
    const double s = scales[t];
    if (!(s > 0.0) || !std::isfinite(s)) {
      throw ArgumentError("scale_table[" + std::to_string(t) + "] = " + std::to_string(s) +
                          " must be positive and finite");
    }
    const double m = std::ceil(s * quantile);
    if (2.0 * m + extra_values > static_cast<double>(total)) {
      throw ArgumentError("scale_table[" + std::to_string(t) + "] = " + std::to_string(s) +
                          " needs more symbols than 1 << precision = " +
                          std::to_string(total) + " slots; raise precision");
    }
    centers[static_cast<size_t>(t)] = static_cast<int64_t>(m);
    entries += static_cast<uint64_t>(J) * static_cast<uint64_t>(2 * m + extra_values + 1);
  }
  out.data.clear();
  out.lengths.clear();
  out.offsets.clear();
  out.data.reserve(static_cast<size_t>(entries));
  out.lengths.reserve(static_cast<size_t>(num_scales) * static_cast<size_t>(J));
  out.offsets.reserve(static_cast<size_t>(num_scales) * static_cast<size_t>(J));

  std::vector<double> pmf, q;
  for (int t = 0; t < num_scales; ++t) {
    const double s = scales[t];
    const int64_t m = centers[static_cast<size_t>(t)];
    const std::string what = "scale_table[" + std::to_string(t) + "]";
    if (J == 1) {
      zero_mean_row(s, m, pmf);
      append_row(pmf, precision, what, m, out);
      continue;
    }
    // Table j: N(j / J, s) on the unit bins of k = -m .. m + 1. In units of 1 / (2J) the
    // bin edges k - j/J -/+ 1/2 are the integers a = 2Jk - 2j -/+ J, so every table of
    // this scale draws its edges from one set of tail values q[|a|] = Q(|a| / (2J s)).
    const int64_t a_max = 2 * J * (m + 1) + J;
    const double denom = (2.0 * J) * s;
    q.assign(static_cast<size_t>(a_max + 1), 0.0);
    for (int64_t a = J % 2; a <= a_max; a += 2) {
      q[static_cast<size_t>(a)] = upper_tail_fast(static_cast<double>(a) / denom);
    }
    for (int j = 0; j < J; ++j) {
      pmf.assign(static_cast<size_t>(2 * m + 3), 0.0);
      for (int64_t k = -m; k <= m + 1; ++k) {
        const int64_t lo = 2 * J * k - 2 * j - J;
        const int64_t hi = lo + 2 * J;
        double p;
        // Each bin's mass from the tail on the side away from the mean.
        if (lo >= 0) {
          p = q[static_cast<size_t>(lo)] - q[static_cast<size_t>(hi)];
        } else if (hi <= 0) {
          p = q[static_cast<size_t>(-hi)] - q[static_cast<size_t>(-lo)];
        } else {
          p = 1.0 - q[static_cast<size_t>(-lo)] - q[static_cast<size_t>(hi)];
        }
        pmf[static_cast<size_t>(k + m)] = p;
      }
      // escape: the mass beyond both ends
      const int64_t top = 2 * J * (m + 1) - 2 * j + J;
      const int64_t bottom = 2 * J * m + 2 * j + J;  // -(lower edge of k = -m)
      pmf[static_cast<size_t>(2 * m + 2)] = q[static_cast<size_t>(top)] + q[static_cast<size_t>(bottom)];
      append_row(pmf, precision, what + " (mean step " + std::to_string(j) + ")", m, out);
    }
  }
}

void build_gaussian_tables(const double* scales, int num_scales, int precision,
                           double tail_mass, std::vector<int32_t>& cdfs,
                           std::vector<int32_t>& cdf_lengths, std::vector<int32_t>& offsets,
                           int& out_row_length) {
  FlatTables flat;
  build_gaussian_tables_flat(scales, num_scales, precision, tail_mass, 1, flat);
  int32_t row = 0;
  for (int32_t len : flat.lengths) row = std::max(row, len);
  out_row_length = row;
  const size_t n = flat.lengths.size();
  cdfs.assign(n * static_cast<size_t>(row), 0);
  size_t at = 0;
  for (size_t t = 0; t < n; ++t) {
    std::copy(flat.data.begin() + static_cast<std::ptrdiff_t>(at),
              flat.data.begin() + static_cast<std::ptrdiff_t>(at + static_cast<size_t>(flat.lengths[t])),
              cdfs.begin() + static_cast<std::ptrdiff_t>(t * static_cast<size_t>(row)));
    at += static_cast<size_t>(flat.lengths[t]);
  }
  cdf_lengths = std::move(flat.lengths);
  offsets = std::move(flat.offsets);
}

}  // namespace gwn
