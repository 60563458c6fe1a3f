// Shared helpers for the kernel tests: seeded random data and tolerance checks, so every test
// is deterministic and states its tolerance in one place.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace infergrid::test {

inline constexpr uint32_t kSeed = 20240611;

// Normally distributed floats with a few larger outliers, like real weights and activations.
inline std::vector<float> random_floats(int64_t n, std::mt19937& rng, float stddev = 1.0f) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = unit(rng) < 0.01f ? 8.0f * normal(rng) : normal(rng);
  return v;
}

inline std::vector<uint8_t> random_bytes(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> v(n);
  for (uint8_t& b : v) b = static_cast<uint8_t>(byte(rng));
  return v;
}

// |got - want| <= rel * scale + abs_tol, where scale is the magnitude that bounds the rounding
// of the computation (for a dot product, the sum of |terms|).
inline bool close(double got, double want, double scale, double rel, double abs_tol = 1e-30) {
  return std::fabs(got - want) <= rel * scale + abs_tol;
}

}  // namespace infergrid::test
