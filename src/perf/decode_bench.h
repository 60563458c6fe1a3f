// Single-sequence engine benchmark: prefill and batch-1 decode speed of a model, with the
// machine's measured read bandwidth and peak FLOP/s as references from the same run.
#pragma once

#include <string>

#include "core/status.h"
#include "kernels/cpu_backend.h"
#include "model/model.h"

namespace infergrid {

struct DecodeBenchOptions {
  int prompt_tokens = 256;
  int gen_tokens = 64;
  int batch_tokens = 256;  // prompt tokens per forward pass
  int repetitions = 2;     // best of
  bool measure_machine = true;
  KvType kv_type = kDefaultKvType;
};

struct DecodeBenchResult {
  std::string backend;
  std::string model;
  int prompt_tokens = 0;
  int gen_tokens = 0;
  double prefill_tokens_per_second = 0;
  double prefill_gflops = 0;
  double decode_tokens_per_second = 0;
  double weight_bytes_per_token = 0;
  double kv_bytes_per_token = 0;  // mean KV bytes read per decoded token
  double decode_bytes_per_second = 0;
  double memory_bandwidth = 0;    // bytes/s, measured
  size_t memory_probe_bytes = 0;  // the probe's buffer
  double peak_gflops = 0;         // fp32 FMA, measured
  double peak_int8_gops = 0;      // int8 vpdpbusd, measured (0 without VNNI)
  // Mixture of experts: tokens each expert got during the decode run, as a share of the
  // routed tokens (1 / n_expert each if the router spread them evenly).
  int n_expert = 0;
  double min_expert_share = 0;
  double max_expert_share = 0;
  double bandwidth_ratio() const {
    return memory_bandwidth > 0 ? decode_bytes_per_second / memory_bandwidth : 0;
  }
  std::string to_text() const;
  std::string to_json() const;
};

Result<DecodeBenchResult> run_decode_bench(const Model& model, CpuBackend& backend,
                                           const DecodeBenchOptions& options);

}  // namespace infergrid
