// What `bench serve` measured: one record per request, and the summary a user reads (latency
// percentiles, throughput, goodput, errors, and optionally the server's own /metrics counters
// for the same interval, so client and server accounting can be compared).
//
// Definitions (the ones vLLM's and SGLang's serving benchmarks use):
//  - TTFT: request sent -> first chunk with non-empty content;
//  - ITL: gaps between consecutive content chunks (chunks read together have a gap of 0);
//  - TPOT: (E2E - TTFT) / (completion_tokens - 1), defined only for 2 or more tokens;
//  - E2E: request sent -> end of the stream;
//  - throughputs and goodput divide by the run's duration (first send -> last completion) and
//    count successful requests only; goodput counts those that meet every SLO given.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace infergrid {

struct RequestRecord {
  bool success = false;
  std::string error;
  double start_s = 0;  // send time relative to the start of the run
  double ttft_s = 0;
  double e2e_s = 0;
  std::vector<double> itl_s;
  int prompt_tokens = 0;  // from the server's usage
  int completion_tokens = 0;
  int requested_output_tokens = 0;
  bool usage_reported = false;  // false: completion_tokens counts content chunks instead
  // usage.prompt_tokens_details.cached_tokens when the server reports it, else 0.
  int cached_tokens = 0;
  // 1-based turn of its conversation; 2 and up resend a history the server has seen. Requests
  // of workloads without conversations are all turn 1.
  int turn = 1;

  // -1 when fewer than two tokens came back.
  double tpot_s() const;
};

struct Distribution {
  size_t count = 0;
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

// Percentile with linear interpolation between closest ranks (numpy's default); 0 when empty.
double percentile(std::vector<double> values, double p);
Distribution summarize_distribution(const std::vector<double>& values);

struct SloOptions {
  double ttft_ms = 0;  // 0: no TTFT objective
  double tpot_ms = 0;  // 0: no TPOT objective
  bool any() const { return ttft_ms > 0 || tpot_ms > 0; }
};

// A request counts toward goodput when it succeeded and meets every objective given; a request
// with a single output token has no TPOT and meets any TPOT objective.
bool meets_slo(const RequestRecord& record, const SloOptions& slo);

// The serving counters a Prometheus /metrics page may carry, summed over their label sets.
// Names tried, in order: infergrid_*, then vLLM's (vllm:*) and llama.cpp's (llamacpp:*) ones.
struct ServerCounters {
  std::optional<double> request_success;
  std::optional<double> prompt_tokens;
  std::optional<double> generation_tokens;
  // infergrid's KV-cache samples (prefix cache, computed tokens, preemptions and every
  // infergrid_kv_* tier series), by name; empty for other servers.
  std::map<std::string, double, std::less<>> kv;
};
ServerCounters parse_prometheus_counters(std::string_view text);

struct MetricsCheck {
  std::string error;  // why before or after could not be read; empty when both were
  std::optional<ServerCounters> before;
  std::optional<ServerCounters> after;

  // after - before, when both exist.
  std::optional<double> delta(std::optional<double> ServerCounters::*field) const;
  // The same for one of the kv samples (a counter); nullopt when either side lacks it.
  std::optional<double> kv_delta(std::string_view name) const;
  // A kv gauge's value after the run.
  std::optional<double> kv_after(std::string_view name) const;
};

// Settings echoed into the report so that a saved JSON file says what was run.
struct RunInfo {
  std::string url;
  std::string model;
  std::string workload;
  std::string endpoint;
  std::string arrivals;  // e.g. "closed loop, concurrency 8"
  uint64_t seed = 0;
};

struct LoadReport {
  RunInfo info;
  size_t n_requests = 0;
  size_t n_success = 0;
  size_t n_failed = 0;
  size_t n_good = 0;
  size_t n_short_output = 0;  // successes with fewer tokens than requested (ignore_eos unheeded)
  std::vector<std::string> first_errors;  // up to kMaxErrors distinct messages
  double duration_s = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  bool usage_missing = false;     // some success had no usage; its tokens are chunk counts
  double request_throughput = 0;  // req/s
  double output_throughput = 0;   // completion tokens/s
  double total_token_throughput = 0;
  std::optional<double> goodput;  // req/s; only when an SLO was given
  SloOptions slo;
  Distribution ttft_ms;
  Distribution tpot_ms;
  Distribution itl_ms;
  Distribution e2e_ms;
  // TTFT split by turn, for multi-turn workloads: a first turn has nothing a cache could reuse,
  // a returning turn (turn >= 2) resends a history the server has already seen.
  bool has_returning_turns = false;  // some request, sent or not, has turn >= 2
  Distribution ttft_first_turn_ms;
  Distribution ttft_returning_turn_ms;
  int64_t prompt_tokens_returning = 0;  // successful returning turns only
  int64_t cached_tokens_returning = 0;  // their usage cached_tokens; 0 when never reported
  std::optional<MetricsCheck> metrics;

  static constexpr size_t kMaxErrors = 5;

  std::string to_text() const;
  std::string to_json() const;  // pretty-printed
};

LoadReport summarize(const std::vector<RequestRecord>& records, double duration_s,
                     const SloOptions& slo);

}  // namespace infergrid
