#include "server/metrics.h"

#include <fmt/format.h>

namespace infergrid {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, sum_, name, count_);
}

namespace {
const std::vector<double> kLatencyBuckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                             0.25,  0.5,   0.75, 1.0,   2.5,  5.0,   7.5,
                                             10.0,  20.0,  40.0, 80.0,  160.0};
const std::vector<double> kTokenLatencyBuckets = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025,
                                                  0.05,  0.075,  0.1,   0.15,   0.2,  0.3,
                                                  0.4,   0.5,    0.75,  1.0,    2.5};

void counter(std::string& out, const std::string& name, const std::string& help, uint64_t v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
}
void gauge(std::string& out, const std::string& name, const std::string& help, double v) {
  out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
}
}  // namespace

ServerMetrics::ServerMetrics()
    : ttft_(kLatencyBuckets), tpot_(kTokenLatencyBuckets), e2e_(kLatencyBuckets) {}

void ServerMetrics::record_request(const RequestRecord& r) {
  std::lock_guard lock(mutex_);
  ++finished_[r.finish_reason];
  prompt_tokens_ += static_cast<uint64_t>(r.prompt_tokens);
  generation_tokens_ += static_cast<uint64_t>(r.completion_tokens);
  if (r.ttft_seconds >= 0) ttft_.observe(r.ttft_seconds);
  if (r.ttft_seconds >= 0 && r.completion_tokens > 1) {
    tpot_.observe((r.e2e_seconds - r.ttft_seconds) / (r.completion_tokens - 1));
  }
  e2e_.observe(r.e2e_seconds);
}

void ServerMetrics::record_rejection(int http_status) {
  std::lock_guard lock(mutex_);
  ++rejected_[http_status];
}

std::string ServerMetrics::render(const EngineStats& e) const {
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(8192);
  uint64_t success = 0;
  for (const auto& [reason, n] : finished_) {
    if (reason == "stop" || reason == "length") success += n;
  }
  counter(out, "infergrid_request_success_total",
          "Requests that finished normally (stop or length)", success);
  out +=
      "# HELP infergrid_request_finished_total Finished requests by finish reason\n"
      "# TYPE infergrid_request_finished_total counter\n";
  for (const auto& [reason, n] : finished_) {
    out +=
        fmt::format("infergrid_request_finished_total{{finished_reason=\"{}\"}} {}\n", reason, n);
  }
  out +=
      "# HELP infergrid_request_rejected_total Requests refused before generation, by status\n"
      "# TYPE infergrid_request_rejected_total counter\n";
  for (const auto& [status, n] : rejected_) {
    out += fmt::format("infergrid_request_rejected_total{{status=\"{}\"}} {}\n", status, n);
  }
  counter(out, "infergrid_prompt_tokens_total", "Prompt tokens of finished requests",
          prompt_tokens_);
  counter(out, "infergrid_generation_tokens_total", "Generated tokens of finished requests",
          generation_tokens_);
  counter(out, "infergrid_prefix_cache_hit_tokens_total",
          "Prompt tokens served from the prefix cache", e.counters.prefix_hit_tokens);
  counter(out, "infergrid_prefix_cache_query_tokens_total",
          "Prompt tokens looked up in the prefix cache", e.counters.prompt_tokens);
  counter(out, "infergrid_computed_tokens_total",
          "Tokens run through the model (prefill, decode and recompute)",
          e.counters.computed_tokens);
  counter(out, "infergrid_preemptions_total", "Sequences preempted for KV blocks",
          e.counters.preemptions);
  counter(out, "infergrid_engine_steps_total", "Engine steps", e.counters.steps);
  gauge(out, "infergrid_num_requests_running", "Requests in the running batch", e.running);
  gauge(out, "infergrid_num_requests_waiting", "Requests waiting for admission", e.waiting);
  gauge(out, "infergrid_kv_blocks_total", "KV cache blocks in the pool", e.blocks_total);
  gauge(out, "infergrid_kv_block_bytes",
        "Bytes of one KV block (K and V of every layer, in the KV cache type)",
        static_cast<double>(e.block_bytes));
  gauge(out, "infergrid_kv_blocks_used", "KV cache blocks held by requests", e.blocks_in_use);
  gauge(out, "infergrid_kv_blocks_free", "KV cache blocks neither held nor cached", e.blocks_free);
  gauge(out, "infergrid_kv_blocks_cached", "KV cache blocks in the prefix cache", e.blocks_cached);
  gauge(out, "infergrid_kv_cache_usage_ratio", "Fraction of KV blocks held by requests",
        e.blocks_total > 0 ? static_cast<double>(e.blocks_in_use) / e.blocks_total : 0.0);
  if (e.has_disk_tier || e.has_dram_tier) {
    counter(out, "infergrid_kv_tier_hit_tokens_total",
            "Prompt tokens whose KV was loaded from the DRAM or disk tier",
            e.counters.tier_hit_tokens);
  }
  auto tier_metrics = [&](const char* tier, const TierStats& d) {
    const std::string p = fmt::format("infergrid_kv_{}_", tier);
    counter(out, p + "hits_total", "Tier block lookups that hit", d.hits);
    counter(out, p + "misses_total", "Tier block lookups that missed", d.misses);
    counter(out, p + "blocks_dropped_total", "Tier blocks dropped because they failed their check",
            d.dropped_corrupt);
    counter(out, p + "evicted_total", "Tier blocks evicted for capacity", d.evicted);
    counter(out, p + "written_bytes_total", "Bytes written to the tier", d.bytes_written);
    counter(out, p + "read_bytes_total", "Bytes read from the tier", d.bytes_read);
    gauge(out, p + "blocks", "Blocks held by the tier", static_cast<double>(d.blocks));
    gauge(out, p + "used_bytes", "Bytes held by the tier", static_cast<double>(d.used_bytes));
    gauge(out, p + "capacity_bytes", "Capacity of the tier", static_cast<double>(d.capacity_bytes));
  };
  if (!e.experts.empty()) {
    out +=
        "# HELP infergrid_expert_activations_total Tokens routed to each expert of a "
        "mixture-of-experts layer\n"
        "# TYPE infergrid_expert_activations_total counter\n";
    for (const EngineStats::ExpertActivations& m : e.experts) {
      std::string model;  // a Prometheus label value: backslash, quote and newline escaped
      for (char ch : m.model) {
        if (ch == '\\' || ch == '"') model += '\\';
        model += ch == '\n' ? std::string("\\n") : std::string(1, ch);
      }
      for (int l = 0; l < m.n_layer; ++l) {
        for (int x = 0; x < m.n_expert; ++x) {
          out += fmt::format(
              "infergrid_expert_activations_total{{model=\"{}\",layer=\"{}\",expert=\"{}\"}} "
              "{}\n",
              model, l, x, m.counts[static_cast<size_t>(l) * m.n_expert + x]);
        }
      }
    }
  }
  if (e.has_dram_tier) tier_metrics("dram", e.dram);
  if (e.has_disk_tier) tier_metrics("disk", e.disk);
  ttft_.render(out, "infergrid_time_to_first_token_seconds", "Time to first token");
  tpot_.render(out, "infergrid_time_per_output_token_seconds",
               "Mean time per output token after the first, per request");
  e2e_.render(out, "infergrid_e2e_request_latency_seconds", "End-to-end request latency");
  return out;
}

std::string render_kv_transfer_metrics(const KvTransferMetrics& m) {
  std::string out;
  if (m.sends) {
    const KvTransferSenderStats& s = m.sender;
    counter(out, "infergrid_kv_transfer_sessions_ok_total",
            "KV transfers to another instance that the receiver confirmed", s.sessions_ok);
    counter(out, "infergrid_kv_transfer_sessions_failed_total",
            "KV transfers to another instance that failed (the receiver computes the rest)",
            s.sessions_failed);
    counter(out, "infergrid_kv_transfer_sent_blocks_total", "KV blocks sent to other instances",
            s.blocks_sent);
    counter(out, "infergrid_kv_transfer_sent_rejected_blocks_total",
            "Sent KV blocks the receiver rejected (failed a check)", s.blocks_rejected);
    counter(out, "infergrid_kv_transfer_sent_bytes_total", "Bytes of KV transfer frames sent",
            s.bytes_sent);
    gauge(out, "infergrid_kv_transfer_sessions_active", "KV transfers running now",
          static_cast<double>(s.sessions_active));
    gauge(out, "infergrid_kv_transfer_inflight_blocks",
          "Sent KV blocks pinned until the receiver acknowledges them",
          static_cast<double>(s.inflight_blocks));
  }
  if (m.receives) {
    const KvTransferReceiverStats& r = m.receiver;
    counter(out, "infergrid_kv_transfer_received_blocks_total",
            "KV blocks received from other instances and stored", r.blocks_accepted);
    counter(out, "infergrid_kv_transfer_rejected_blocks_total",
            "Received KV blocks dropped because they failed a check", r.blocks_rejected);
    counter(out, "infergrid_kv_transfer_received_bytes_total", "Bytes of KV transfer frames read",
            r.bytes_received);
    counter(out, "infergrid_kv_transfer_broken_sessions_total",
            "KV transfer sessions that ended before the sender's end frame", r.sessions_broken);
    counter(out, "infergrid_kv_transfer_expired_blocks_total",
            "Received KV blocks whose lease ended before a request loaded them", m.expired);
    counter(out, "infergrid_kv_transfer_loaded_blocks_total",
            "Received KV blocks loaded by a request", m.received.hits);
    gauge(out, "infergrid_kv_transfer_connections", "Open KV transfer connections",
          static_cast<double>(r.connections_open));
    gauge(out, "infergrid_kv_transfer_held_blocks", "Received KV blocks not yet loaded",
          static_cast<double>(m.received.blocks));
    gauge(out, "infergrid_kv_transfer_held_bytes", "Bytes of received KV blocks not yet loaded",
          static_cast<double>(m.received.used_bytes));
  }
  return out;
}

}  // namespace infergrid
