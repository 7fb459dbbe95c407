// Typed errors of the rANS core. The bindings map BitstreamError to
// gwn_fast.BitstreamError (a ValueError) and the std::invalid_argument family to
// ValueError. The core never asserts on data: every fault is one of these.
#pragma once
#include <stdexcept>
#include <string>

namespace gwn {

// The bytes are not a valid stream for these tables and indexes: corrupt,
// truncated, of another format version, or encoded with other tables/indexes.
struct BitstreamError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A caller passed a bad argument (bad table, index out of range, size mismatch).
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

}  // namespace gwn
