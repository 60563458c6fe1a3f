// Machine probes that give benchmarks their reference numbers, measured in the same run:
// sustained memory read bandwidth (a STREAM-like sum over a buffer far larger than the caches)
// and peak fp32 FMA throughput.
#pragma once

#include <cstddef>

#include "core/thread_pool.h"

namespace infergrid {

struct BandwidthResult {
  double bytes_per_second = 0;
  size_t buffer_bytes = 0;
  int repetitions = 0;
};

// Reads a buffer of buffer_bytes with every pool thread; returns the best of `repetitions`.
BandwidthResult measure_read_bandwidth(ThreadPool& pool, size_t buffer_bytes = size_t{1} << 30,
                                       int repetitions = 5);

// Peak fp32 GFLOP/s from register-resident FMA chains on every pool thread.
double measure_peak_gflops(ThreadPool& pool);

}  // namespace infergrid
