// `infergrid route simulate`: the router's RoutingPolicy and KvIndex, unchanged, driving
// simulated instances through a trace, to compare policies at cluster sizes no machine here
// could run for real.
//
// A simulated instance has a block cache of `capacity_blocks` trace blocks with the engine's
// eviction rule (least recently used first, and a block is never older than the blocks after
// it in a prompt, so only chain ends go: a prefix is never lost before its continuation), one
// prefill at a time in arrival order at `prefill_tokens_per_s` (uncached tokens only), and
// decode of `output_length` tokens at `decode_ms_per_token` plus `decode_ms_per_running` for
// each other running request. The index sees a prompt's blocks when its prefill ends (the
// instance's stored events) and evictions at once. The router's view of load is what it sent
// and has not seen finish, as in `infergrid route`. The session policy's session is a request's
// first block (its tenant's prompt, or its conversation): pure affinity.
// The oracle is one cache of the cluster's total capacity seeing every request in order: the
// hit ratio no placement can beat with that much memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/workload.h"
#include "core/status.h"
#include "router/routing_policy.h"

namespace infergrid {

struct SimOptions {
  int instances = 4;
  int capacity_blocks = 1024;  // per instance, in trace blocks (512 tokens)
  PolicyOptions policy;
  // Round figures of the order `infergrid bench decode` reports for a 100M model on 2 vCPUs;
  // pass that command's prefill tokens/s and ms per token for the hardware being modelled.
  double prefill_tokens_per_s = 4000;
  double decode_ms_per_token = 25;
  double decode_ms_per_running = 0.5;
  double time_scale = 1;  // trace timestamps are divided by this (2: twice the rate)
};

struct SimResult {
  size_t requests = 0;
  double hit_ratio = 0;           // prompt blocks found cached where they were sent
  double oracle_hit_ratio = 0;    // the same for one pooled cache of all the capacity
  double load_max_over_mean = 0;  // requests per instance
  double ttft_p50_ms = 0;
  double ttft_p90_ms = 0;
  double ttft_p99_ms = 0;
  double replay_requests_per_s = 0;  // how fast the simulation itself ran
  std::vector<uint64_t> requests_per_instance;
};

Result<SimResult> simulate(const std::vector<TraceEntry>& trace, const SimOptions& options);

std::string sim_result_json(const SimResult& result, const SimOptions& options);
std::string sim_result_text(const SimResult& result, const SimOptions& options);

}  // namespace infergrid
