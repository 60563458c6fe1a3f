#include "router/router_stats.h"

#include <algorithm>

#include <fmt/format.h>

namespace infergrid {

void RouterStats::record_decision_seconds(double seconds) {
  decision_seconds.push_back(seconds);
  if (decision_seconds.size() > kDecisionWindow) decision_seconds.pop_front();
}

std::string RouterStats::prometheus(const InstanceSet& instances, const KvIndex& index,
                                    const std::function<bool(const Instance&)>& up) const {
  std::string out;
  out += "# HELP infergrid_route_decisions_total Routing decisions by policy and reason.\n";
  out += "# TYPE infergrid_route_decisions_total counter\n";
  for (const auto& [labels, n] : decisions) {
    out += fmt::format("infergrid_route_decisions_total{{{}}} {}\n", labels, n);
  }
  out += "# HELP infergrid_route_requests_total Requests answered, by HTTP status or outcome.\n";
  out += "# TYPE infergrid_route_requests_total counter\n";
  for (const auto& [outcome, n] : requests_by_outcome) {
    out += fmt::format("infergrid_route_requests_total{{outcome=\"{}\"}} {}\n", outcome, n);
  }
  out += "# HELP infergrid_route_admitted_total Requests admitted, by priority class.\n";
  out += "# TYPE infergrid_route_admitted_total counter\n";
  for (const auto& [c, n] : admitted_by_class) {
    out += fmt::format("infergrid_route_admitted_total{{class=\"{}\"}} {}\n", c, n);
  }
  out += "# HELP infergrid_route_shed_total Requests refused with 429 by admission, by class.\n";
  out += "# TYPE infergrid_route_shed_total counter\n";
  for (const auto& [c, n] : shed_by_class) {
    out += fmt::format("infergrid_route_shed_total{{class=\"{}\"}} {}\n", c, n);
  }
  out +=
      "# HELP infergrid_route_prefill_handoffs_total Prompts computed on a prefill instance "
      "for a decode instance, by result (failed, transfer_failed: the decode instance computed "
      "it).\n";
  out += "# TYPE infergrid_route_prefill_handoffs_total counter\n";
  for (const char* result : {"ok", "failed", "transfer_failed"}) {
    auto it = pd_handoffs.find(result);
    out += fmt::format("infergrid_route_prefill_handoffs_total{{result=\"{}\"}} {}\n", result,
                       it == pd_handoffs.end() ? 0 : it->second);
  }
  if (planner) {
    out +=
        "# HELP infergrid_route_planner_decisions_total The planner's decisions, one per "
        "interval.\n# TYPE infergrid_route_planner_decisions_total counter\n";
    for (const char* d : {"hold", "to_prefill", "to_decode"}) {
      auto it = planner_decisions.find(d);
      out += fmt::format("infergrid_route_planner_decisions_total{{decision=\"{}\"}} {}\n", d,
                         it == planner_decisions.end() ? 0 : it->second);
    }
    out +=
        "# HELP infergrid_route_planner_conversions_total Instances the planner converted "
        "between roles, by new role and result.\n"
        "# TYPE infergrid_route_planner_conversions_total counter\n";
    for (const char* to : {"prefill", "decode"}) {
      for (const char* result : {"ok", "failed"}) {
        const std::string labels = fmt::format("to=\"{}\",result=\"{}\"", to, result);
        auto it = planner_conversions.find(labels);
        out += fmt::format("infergrid_route_planner_conversions_total{{{}}} {}\n", labels,
                           it == planner_conversions.end() ? 0 : it->second);
      }
    }
  }
  out += fmt::format(
      "# HELP infergrid_route_kv_transfer_blocks_total KV blocks streamed from prefill to "
      "decode instances over TCP, as the receivers confirmed them.\n"
      "# TYPE infergrid_route_kv_transfer_blocks_total counter\n"
      "infergrid_route_kv_transfer_blocks_total {}\n",
      kv_transfer_blocks);
  out += fmt::format(
      "# HELP infergrid_route_retries_total Requests sent again to another instance.\n"
      "# TYPE infergrid_route_retries_total counter\ninfergrid_route_retries_total {}\n",
      retries);
  out += fmt::format(
      "# HELP infergrid_route_streams_failed_midway_total Streams ended with an error event "
      "after tokens were sent: no instance could continue them.\n# TYPE "
      "infergrid_route_streams_failed_midway_total counter\n"
      "infergrid_route_streams_failed_midway_total {}\n"
      "# HELP infergrid_route_streams_resumed_total Streams continued on another instance after "
      "their instance failed mid-stream.\n# TYPE infergrid_route_streams_resumed_total counter\n"
      "infergrid_route_streams_resumed_total {}\n",
      streams_failed_midway, streams_resumed);
  out += fmt::format(
      "# HELP infergrid_route_predicted_cached_tokens_total Prompt tokens the index said were "
      "cached where requests were sent.\n"
      "# TYPE infergrid_route_predicted_cached_tokens_total counter\n"
      "infergrid_route_predicted_cached_tokens_total {}\n"
      "# HELP infergrid_route_actual_cached_tokens_total Cached prompt tokens the instances "
      "reported (usage.prompt_tokens_details.cached_tokens).\n"
      "# TYPE infergrid_route_actual_cached_tokens_total counter\n"
      "infergrid_route_actual_cached_tokens_total {}\n",
      predicted_cached_tokens, actual_cached_tokens);
  out += fmt::format(
      "# HELP infergrid_route_index_blocks Distinct KV blocks in the global index.\n"
      "# TYPE infergrid_route_index_blocks gauge\ninfergrid_route_index_blocks {}\n"
      "# HELP infergrid_route_index_entries Indexed (block, instance) pairs.\n"
      "# TYPE infergrid_route_index_entries gauge\ninfergrid_route_index_entries {}\n",
      index.n_blocks(), index.n_entries());
  out += "# HELP infergrid_route_instance_up Whether the instance gets new requests.\n";
  out += "# TYPE infergrid_route_instance_up gauge\n";
  out +=
      "# HELP infergrid_route_event_lag_seconds Time since the instance's last event or "
      "heartbeat.\n";
  out += "# TYPE infergrid_route_event_lag_seconds gauge\n";
  const auto now = Clock::now();
  for (const auto& inst : instances.instances()) {
    if (!inst->wanted) continue;
    out += fmt::format("infergrid_route_instance_up{{instance=\"{}\"}} {}\n", inst->address,
                       up(*inst) ? 1 : 0);
    const double lag = inst->last_message == Clock::time_point{}
                           ? -1
                           : std::chrono::duration<double>(now - inst->last_message).count();
    out += fmt::format("infergrid_route_event_lag_seconds{{instance=\"{}\"}} {:.3f}\n",
                       inst->address, lag);
  }
  std::vector<double> sorted(decision_seconds.begin(), decision_seconds.end());
  std::sort(sorted.begin(), sorted.end());
  const auto quantile = [&](double q) {
    return sorted.empty() ? 0.0
                          : sorted[static_cast<size_t>(q * static_cast<double>(sorted.size() - 1))];
  };
  out += "# HELP infergrid_route_decision_seconds Time to decide, over the last 4096 decisions.\n";
  out += "# TYPE infergrid_route_decision_seconds summary\n";
  for (double q : {0.5, 0.9, 0.99}) {
    out +=
        fmt::format("infergrid_route_decision_seconds{{quantile=\"{}\"}} {:.9f}\n", q, quantile(q));
  }
  return out;
}

void DecisionRecords::remember(const std::string& id, std::shared_ptr<nlohmann::json> record) {
  const uint64_t seq = next_seq_++;
  by_id_[id] = {std::move(record), seq};
  order_.emplace_back(id, seq);
  while (order_.size() > max_records_) {
    // An id sent again since is kept: its entry now belongs to the later request.
    auto it = by_id_.find(order_.front().first);
    if (it != by_id_.end() && it->second.second == order_.front().second) by_id_.erase(it);
    order_.pop_front();
  }
}

const nlohmann::json* DecisionRecords::find(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.first.get();
}

}  // namespace infergrid
