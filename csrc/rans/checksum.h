// A fast 32-bit checksum over (symbol, table index) pairs, seeded with the
// table-set fingerprint and the chunk number. Four independent accumulators (one per
// position mod 4) keep the dependency chains short, so hashing costs about a cycle
// per symbol. It detects corruption and encoder/decoder model mismatch; it is not a
// cryptographic hash.
#pragma once
#include <cstddef>
#include <cstdint>

namespace gwn {

constexpr uint32_t kPrime1 = 0x9E3779B1u;
constexpr uint32_t kPrime2 = 0x85EBCA77u;
constexpr uint32_t kPrime3 = 0xC2B2AE3Du;

inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

class PairHasher {
 public:
  explicit PairHasher(uint64_t seed) {
    const uint32_t lo = static_cast<uint32_t>(seed);
    const uint32_t hi = static_cast<uint32_t>(seed >> 32);
    acc_[0] = lo + kPrime1 + kPrime2;
    acc_[1] = hi + kPrime2;
    acc_[2] = lo ^ kPrime3;
    acc_[3] = hi - kPrime1;
  }

  // Feed pairs at positions [pos, pos + n) of the chunk.
  void update(const int32_t* symbols, const int32_t* indexes, size_t n) {
    size_t lane = count_ & 3u;
    for (size_t i = 0; i < n; ++i) {
      const uint32_t word = static_cast<uint32_t>(symbols[i]) ^
                            (static_cast<uint32_t>(indexes[i]) * kPrime3);
      uint32_t a = acc_[lane] + word * kPrime2;
      acc_[lane] = rotl32(a, 13) * kPrime1;
      lane = (lane + 1) & 3u;
    }
    count_ += n;
  }

  uint32_t digest() const {
    uint32_t h = rotl32(acc_[0], 1) + rotl32(acc_[1], 7) + rotl32(acc_[2], 12) +
                 rotl32(acc_[3], 18) + static_cast<uint32_t>(count_);
    h ^= h >> 15;
    h *= kPrime2;
    h ^= h >> 13;
    h *= kPrime3;
    h ^= h >> 16;
    return h;
  }

 private:
  uint32_t acc_[4];
  uint64_t count_ = 0;
};

// 64-bit fingerprint of a sequence of 32-bit words (used for table sets).
inline uint64_t fingerprint_words(const uint32_t* words, size_t n, uint64_t h) {
  for (size_t i = 0; i < n; ++i) {
    h ^= words[i];
    h *= 0x100000001B3ull;  // FNV-1a 64 prime
    h ^= h >> 29;
  }
  return h;
}

}  // namespace gwn
