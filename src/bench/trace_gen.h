// Synthetic Mooncake-format traces (the JSONL `bench serve --workload trace` and
// `route simulate` read): timestamps, input/output lengths and hash ids of 512-token blocks,
// where equal leading ids are a shared prefix.
//  - multi-tenant: each request is one tenant's system prompt (its own blocks) plus blocks of
//    its own; tenants are picked with a Zipf popularity, so a few prefixes are very hot;
//  - multi-turn: conversations whose every turn resends the whole history plus a new user turn
//    and the previous answer, with think time between turns; conversations start at rate /
//    turns, so requests arrive at about `rate`.
// Both arrive as a Poisson process, optionally with bursts: every `burst_every_s` the rate is
// multiplied by `burst_factor` for `burst_s` seconds. Same options and seed, same trace.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/workload.h"
#include "core/status.h"

namespace infergrid {

enum class TraceKind { kMultiTenant, kMultiTurn };

struct TraceGenOptions {
  TraceKind kind = TraceKind::kMultiTenant;
  int requests = 1000;
  double rate_per_s = 10;  // mean arrivals per second outside bursts
  uint64_t seed = 0;
  // multi-tenant
  int tenants = 32;
  double zipf_s = 1.1;    // popularity exponent: tenant k is picked with weight 1/k^s
  int prefix_blocks = 8;  // system prompt, per tenant
  int suffix_blocks = 2;  // the request's own, on average (1 .. 2x)
  // multi-turn
  int turns = 6;
  int turn_blocks = 1;    // new user text per turn
  int answer_blocks = 1;  // the previous answer, resent with the history
  double think_time_s = 5;
  // both
  int output_length = 128;
  double burst_factor = 5;
  double burst_every_s = 60;
  double burst_s = 10;  // 0: no bursts
};

Result<std::vector<TraceEntry>> generate_trace(const TraceGenOptions& options);
std::string trace_to_jsonl(const std::vector<TraceEntry>& trace);

}  // namespace infergrid
