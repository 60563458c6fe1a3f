// `bench serve`: drives an OpenAI-compatible server with a workload and measures every request
// from the client side, so the same run compares our server with llama.cpp's or vLLM's.
//
// Arrivals: a closed loop keeps `concurrency` requests in flight; an open loop sends at Poisson
// times with `request_rate` per second (at most `concurrency` in flight when given); a trace sends
// at its own timestamps times `time_scale`. Multi-turn applies the arrival process to conversation
// starts; a conversation's next turn becomes ready when the previous answer has arrived (plus the
// think time), and ready requests go out in the order they became ready.
//
// Every request streams (`stream_options.include_usage`) and asks for exactly its output length
// (`max_tokens` with `ignore_eos`), so token counts come from the server's usage.
#pragma once

#include <optional>
#include <string>

#include "bench/load_report.h"
#include "bench/workload.h"
#include "core/status.h"

namespace infergrid {

enum class ApiEndpoint { kCompletions, kChat };

struct ServeBenchOptions {
  std::string url = "http://127.0.0.1:8080";
  std::string model;                                 // empty: the first id from GET /v1/models
  ApiEndpoint endpoint = ApiEndpoint::kCompletions;  // multi-turn always uses chat
  WorkloadOptions workload;
  // Closed loop: requests in flight (0 means 8). Open loop and trace: a cap (0 means none).
  int concurrency = 0;
  double request_rate = 0;            // requests/s, Poisson; 0 = closed loop
  double time_scale = 1.0;            // trace: send time = timestamp x time_scale
  double think_time_ms = 0;           // multi-turn: pause between an answer and the next turn
  double timeout_s = 600;             // per request
  std::optional<double> temperature;  // default 0 (greedy)
  SloOptions slo;
  bool check_metrics = false;  // read GET /metrics before and after the run
  bool progress = true;        // a progress line on stderr when it is a terminal
};

Result<LoadReport> run_serve_bench(const ServeBenchOptions& options);

}  // namespace infergrid
