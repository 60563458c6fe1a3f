// RouterStats and DecisionRecords: what `infergrid route` counts for /metrics, and the record
// of its recent decisions for /route/explain. Touched only on the router's I/O thread.
// Invariant: DecisionRecords keeps the last max_records decisions, each found by its request
// id in O(1) (an id a client sends again names its latest request).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "router/instance_set.h"
#include "router/kv_index.h"

namespace infergrid {

struct RouterStats {
  static constexpr size_t kDecisionWindow = 4096;  // decisions behind the time quantiles

  std::map<std::string, uint64_t> decisions;  // by Prometheus labels policy=..,reason=..
  std::map<std::string, uint64_t> requests_by_outcome;
  std::map<std::string, uint64_t> admitted_by_class;
  std::map<std::string, uint64_t> shed_by_class;
  // Prefill handoffs by result: ok, failed, transfer_failed (no block reached the decode
  // instance over TCP).
  std::map<std::string, uint64_t> pd_handoffs;
  uint64_t kv_transfer_blocks = 0;  // blocks the decode instances confirmed receiving
  bool planner = false;             // --planner: its metrics are rendered
  std::map<std::string, uint64_t> planner_decisions;    // by decision: hold, to_prefill, ...
  std::map<std::string, uint64_t> planner_conversions;  // by labels to=..,result=..
  std::deque<double> decision_seconds;
  uint64_t retries = 0;
  uint64_t streams_failed_midway = 0;
  uint64_t streams_resumed = 0;  // continued on another instance after tokens were sent
  int64_t predicted_cached_tokens = 0;
  int64_t actual_cached_tokens = 0;

  void record_decision_seconds(double seconds);
  // The Prometheus text; `up` says whether an instance gets new requests.
  std::string prometheus(const InstanceSet& instances, const KvIndex& index,
                         const std::function<bool(const Instance&)>& up) const;
};

class DecisionRecords {
 public:
  explicit DecisionRecords(size_t max_records) : max_records_(max_records) {}
  void remember(const std::string& id, std::shared_ptr<nlohmann::json> record);
  const nlohmann::json* find(const std::string& id) const;  // null when not kept

 private:
  size_t max_records_;
  uint64_t next_seq_ = 0;
  std::deque<std::pair<std::string, uint64_t>> order_;  // oldest first
  std::unordered_map<std::string, std::pair<std::shared_ptr<nlohmann::json>, uint64_t>> by_id_;
};

}  // namespace infergrid
