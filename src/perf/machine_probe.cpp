#include "perf/machine_probe.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include <unistd.h>

#include "core/aligned_buffer.h"
#include "core/clock.h"
#include "core/cpu_features.h"

namespace infergrid {

namespace {

__attribute__((target("avx2"))) float sum_avx2(const float* p, size_t n) {
  __m256 acc[8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int k = 0; k < 8; ++k) acc[k] = _mm256_add_ps(acc[k], _mm256_load_ps(p + i + 8 * k));
  }
  for (int k = 1; k < 8; ++k) acc[0] = _mm256_add_ps(acc[0], acc[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc[0]);
  float s = 0;
  for (float v : lanes) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}

float sum_scalar(const float* p, size_t n) {
  float acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
  }
  float s = 0;
  for (float v : acc) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iterations) {
  // 10 independent chains hide the FMA latency (4 cycles) across 2 ports.
  __m256 acc[10];
  for (int k = 0; k < 10; ++k) acc[k] = _mm256_set1_ps(static_cast<float>(k) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f);
  const __m256 b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int k = 0; k < 10; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  }
  for (int k = 1; k < 10; ++k) acc[0] = _mm256_add_ps(acc[0], acc[k]);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc[0]);
  return lanes[0];
}

// 12 independent vpdpbusd chains (latency 5, up to 2 per cycle), 64 multiply-adds each.
__attribute__((target("avx512f,avx512vnni"))) int32_t dpbusd_chains(int64_t iterations) {
  __m512i acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = _mm512_set1_epi32(k);
  const __m512i a = _mm512_set1_epi8(3);
  const __m512i b = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iterations; ++i) {
    for (int k = 0; k < 12; ++k) acc[k] = _mm512_dpbusd_epi32(acc[k], a, b);
  }
  for (int k = 1; k < 12; ++k) acc[0] = _mm512_add_epi32(acc[0], acc[k]);
  alignas(64) int32_t lanes[16];  // not _mm512_reduce_add_epi32: GCC 12 warns inside it
  _mm512_store_si512(lanes, acc[0]);
  int32_t sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum;
}

// Runs chain() on every pool thread, three times; the best rate in 1e9 ops/s, where one call
// of chain() is ops_per_call ops. The results stay observable so the work is not optimised away.
template <typename Chain>
double best_of_3_giga_ops(ThreadPool& pool, double ops_per_call, Chain chain) {
  using Result = decltype(chain());
  std::vector<Result> sinks(static_cast<size_t>(pool.size()));
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto start = Clock::now();
    pool.parallel_for(pool.size(), [&](int64_t t, int) { sinks[t] = chain(); });
    best = std::max(best, ops_per_call * pool.size() / seconds_since(start) / 1e9);
  }
  volatile Result sink = 0;
  for (Result s : sinks) sink = sink + s;
  return best;
}

}  // namespace

double measure_peak_int8_gops(ThreadPool& pool) {
  const CpuFeatures& f = cpu_features();
  if (!f.has_avx512_path() || !f.avx512vnni) return 0;
  const int64_t iterations = 10'000'000;
  return best_of_3_giga_ops(pool, static_cast<double>(iterations) * 12 * 64 * 2,
                            [&] { return dpbusd_chains(iterations); });
}

size_t last_level_cache_bytes() {
  long bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return bytes > 0 ? static_cast<size_t>(bytes) : 0;
}

size_t default_bandwidth_buffer_bytes() {
  return std::max(size_t{2} << 30, 4 * last_level_cache_bytes());
}

BandwidthResult measure_read_bandwidth(ThreadPool& pool, size_t buffer_bytes, int repetitions) {
  if (buffer_bytes == 0) buffer_bytes = default_bandwidth_buffer_bytes();
  const size_t n = buffer_bytes / sizeof(float);
  AlignedBuffer<float> buffer(n);
  // Touch every page from the threads that will read it (first-touch placement).
  const int64_t n_threads = pool.size();
  const size_t slice = (n / n_threads + 63) / 64 * 64;
  pool.parallel_for(n_threads, [&](int64_t t, int) {
    const size_t begin = std::min(n, static_cast<size_t>(t) * slice);
    const size_t end = std::min(n, begin + slice);
    for (size_t i = begin; i < end; ++i) buffer[i] = static_cast<float>(i & 1023) * 1e-3f;
  });
  const bool avx2 = cpu_features().has_avx2_path();
  std::vector<float> sinks(static_cast<size_t>(n_threads));
  BandwidthResult result;
  result.buffer_bytes = n * sizeof(float);
  result.repetitions = repetitions;
  for (int rep = 0; rep < repetitions; ++rep) {
    const auto start = Clock::now();
    pool.parallel_for(n_threads, [&](int64_t t, int) {
      const size_t begin = std::min(n, static_cast<size_t>(t) * slice);
      const size_t end = std::min(n, begin + slice);
      sinks[t] = avx2 ? sum_avx2(buffer.data() + begin, end - begin)
                      : sum_scalar(buffer.data() + begin, end - begin);
    });
    const double seconds = seconds_since(start);
    result.bytes_per_second = std::max(result.bytes_per_second, result.buffer_bytes / seconds);
  }
  // Keep the sums observable so the reads cannot be optimised away.
  volatile float sink = 0;
  for (float s : sinks) sink = sink + s;
  return result;
}

double measure_peak_gflops(ThreadPool& pool) {
  if (!cpu_features().has_avx2_path()) return 0;
  const int64_t iterations = 20'000'000;
  return best_of_3_giga_ops(pool, static_cast<double>(iterations) * 10 * 8 * 2,
                            [&] { return fma_chains_avx2(iterations); });
}

}  // namespace infergrid
