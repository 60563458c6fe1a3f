// RouterServer: `infergrid route`, the front door of many instances. It speaks the OpenAI API,
// prepares each request exactly as an instance would (same template and tokenizer), computes
// the prompt's block keys, asks the RoutingPolicy where to send it and proxies it there,
// streaming events through as they arrive.
//
// Invariants: every request ends with a response or, for a stream already started, an error
// event and [DONE], within its deadline (upstream timeouts bound every wait); a request that
// failed before its first byte reached the client (transport error, 5xx, 429) is retried on
// another instance, invisibly, while untried eligible instances remain; a one-choice stream
// whose instance fails after tokens were sent is continued on another: instances report the
// token ids behind each chunk (`infergrid_report_tokens`, stripped before the client sees
// them), the next instance gets the prompt plus those tokens (`infergrid_resume`) and replays
// them unsent, so greedy and seeded text is the uninterrupted run's (the router pins a seed
// when the client sent none), under the first instance's chunk id; a prefill handoff that fails
// leaves the decode instance to compute the prompt itself (never an error for the client); the
// router's own load count for an instance moves at the decision and at the end, never later; each
// decision is recorded (GET /route/explain?id=) under the X-Request-Id the client sent or we made.
// All state is touched only on the HttpClient's I/O thread.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "net/http_client.h"
#include "router/instance_set.h"
#include "router/kv_index.h"
#include "router/planner.h"
#include "router/routing_policy.h"
#include "server/request_preparer.h"

namespace infergrid {

// The model the router prepares requests for: the same file (tokenizer, template) as the
// instances, so the keys it computes are theirs.
struct RouterModel {
  const Tokenizer& tokenizer;
  ChatTemplate chat_template;
  uint64_t fingerprint = 0;
  int max_context = 0;
};

struct RouterOptions {
  std::string host = "127.0.0.1";
  int port = 8090;  // 0: ephemeral
  size_t max_body_bytes = size_t{8} << 20;
  std::chrono::milliseconds request_timeout{std::chrono::minutes(10)};
  // A stream that sends nothing for this long is dropped (then retried or ended).
  std::chrono::milliseconds upstream_idle_timeout{std::chrono::seconds(60)};
  int max_attempts = 3;
  size_t max_records = 10000;  // decisions kept for /route/explain
  // Priority classes (`x-priority-class` header or `priority_class` field: interactive,
  // standard, batch). The cluster holds max_inflight_per_instance requests per eligible
  // instance; a class is admitted while the requests in flight are under its share of that,
  // so under overload batch is shed first (429 with Retry-After) and interactive last.
  int max_inflight_per_instance = 64;
  double batch_share = 0.5;
  double standard_share = 0.85;
  // Also send the class to the instance as the engine's `priority` (interactive 1, standard 0,
  // batch -1: served and kept first / last); the instances need --trust-request-priority.
  bool forward_priority = false;
  // Prefill/decode disaggregation, decided per request: when the decode instance chosen would
  // compute at least this many prompt tokens, and holds under half of the prompt, an eligible
  // `--role prefill` instance computes the prompt first and the decode instance loads it: from
  // the shared DRAM tier when both write through to the same one, else streamed to the decode
  // instance's KV transfer port. 0: never.
  int pd_min_uncached_tokens = 512;
  // `--planner`: convert instances between prefill and decode (POST /admin/role) when the TTFT
  // or TPOT the router measures on streams says one side is the bottleneck (router/planner.h).
  std::optional<PlannerOptions> planner;
};

class RouterServer {
 public:
  RouterServer(RouterOptions options, RouterModel model, HttpClient& client, InstanceSet& instances,
               KvIndex& index, RoutingPolicy& policy);
  ~RouterServer();

  Status start();  // binds and listens on the client's I/O thread
  int port() const { return port_; }
  // Blocks until SIGINT/SIGTERM or request_shutdown(); then stops accepting.
  void run();
  void request_shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace infergrid
