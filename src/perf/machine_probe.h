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

// Last-level cache size the CPU reports (0 if unknown).
size_t last_level_cache_bytes();

// A buffer no cache can hold: 4x the reported last-level cache, and at least 2 GiB (this VM
// kind reports a 480 MiB L3; a 1 GiB probe read partly from it and swung 13-33 GB/s).
size_t default_bandwidth_buffer_bytes();

// Reads a buffer of buffer_bytes with every pool thread; returns the best of `repetitions`.
// buffer_bytes 0: default_bandwidth_buffer_bytes().
BandwidthResult measure_read_bandwidth(ThreadPool& pool, size_t buffer_bytes = 0,
                                       int repetitions = 5);

// Peak fp32 GFLOP/s from register-resident FMA chains on every pool thread.
double measure_peak_gflops(ThreadPool& pool);

// Peak int8 GOP/s (a multiply-add is 2 ops) from register-resident vpdpbusd chains on every
// pool thread: the bound of the packed integer GEMM; 0 without AVX-512 VNNI.
double measure_peak_int8_gops(ThreadPool& pool);

}  // namespace infergrid
