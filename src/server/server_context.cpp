#include "server/server_context.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace infergrid {

const ModelEntry* ServerContext::find_model(std::string_view name) const {
  if (name.empty()) return models.front().get();
  for (const auto& m : models) {
    if (std::find(m->names.begin(), m->names.end(), name) != m->names.end()) return m.get();
  }
  return nullptr;
}

std::variant<const ModelEntry*, ApiError> ServerContext::route(std::string_view name) const {
  if (const ModelEntry* model = find_model(name)) return model;
  std::vector<std::string> served;
  for (const auto& m : models) served.push_back(m->names.front());
  return api_error(404,
                   fmt::format("the model '{}' does not exist; this server serves {}",
                               name.substr(0, 100), fmt::join(served, ", ")),
                   "model", "model_not_found");
}

std::variant<RoutedRequest, ApiError> ServerContext::prepare(std::string_view body,
                                                             Endpoint endpoint,
                                                             int caller_priority) const {
  auto parsed = parse_api_request(body, endpoint, JsonLimits{});
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  ApiRequest& api = std::get<ApiRequest>(parsed);
  auto routed = route(api.model);
  if (auto* error = std::get_if<ApiError>(&routed)) return *error;
  const ModelEntry* model = std::get<const ModelEntry*>(routed);
  auto prepared = model->preparer.prepare(api, caller_priority);
  if (auto* error = std::get_if<ApiError>(&prepared)) return *error;
  return RoutedRequest{model, std::move(std::get<PreparedRequest>(prepared))};
}

namespace {

void add_tier_stats(TierStats& into, const TierStats& s) {
  into.hits += s.hits;
  into.misses += s.misses;
  into.stored += s.stored;
  into.evicted += s.evicted;
  into.dropped_corrupt += s.dropped_corrupt;
  into.bytes_written += s.bytes_written;
  into.bytes_read += s.bytes_read;
  into.blocks += s.blocks;
  into.used_bytes += s.used_bytes;
  into.capacity_bytes += s.capacity_bytes;
}

}  // namespace

EngineStats ServerContext::engine_stats() const {
  EngineStats all = models.front()->engine.stats();
  for (auto& e : all.experts) e.model = models.front()->names.front();
  double kv_bytes = static_cast<double>(all.blocks_total) * static_cast<double>(all.block_bytes);
  for (size_t i = 1; i < models.size(); ++i) {
    const EngineStats s = models[i]->engine.stats();
    all.running += s.running;
    all.waiting += s.waiting;
    all.blocks_total += s.blocks_total;
    all.blocks_in_use += s.blocks_in_use;
    all.blocks_cached += s.blocks_cached;
    all.blocks_free += s.blocks_free;
    kv_bytes += static_cast<double>(s.blocks_total) * static_cast<double>(s.block_bytes);
    SchedulerCounters& c = all.counters;
    c.steps += s.counters.steps;
    c.prompt_tokens += s.counters.prompt_tokens;
    c.prefix_hit_tokens += s.counters.prefix_hit_tokens;
    c.tier_hit_tokens += s.counters.tier_hit_tokens;
    c.computed_tokens += s.counters.computed_tokens;
    c.generated_tokens += s.counters.generated_tokens;
    c.preemptions += s.counters.preemptions;
    c.finished_requests += s.counters.finished_requests;
    c.cancelled_requests += s.counters.cancelled_requests;
    for (EngineStats::ExpertActivations e : s.experts) {
      e.model = models[i]->names.front();
      all.experts.push_back(std::move(e));
    }
    if (s.has_dram_tier) add_tier_stats(all.dram, s.dram);
    if (s.has_disk_tier) add_tier_stats(all.disk, s.disk);
    all.has_dram_tier = all.has_dram_tier || s.has_dram_tier;
    all.has_disk_tier = all.has_disk_tier || s.has_disk_tier;
  }
  // Models' blocks differ in size: the mean keeps blocks_total x block_bytes = the KV bytes.
  if (all.blocks_total > 0) {
    all.block_bytes = static_cast<size_t>(kv_bytes / all.blocks_total + 0.5);
  }
  return all;
}

KvTransferMetrics ServerContext::kv_transfer_metrics() const {
  KvTransferMetrics m;
  for (const auto& model : models) {
    if (model->kv_sender != nullptr) {
      m.sends = true;
      const KvTransferSenderStats s = model->kv_sender->stats();
      m.sender.sessions_active += s.sessions_active;
      m.sender.sessions_ok += s.sessions_ok;
      m.sender.sessions_failed += s.sessions_failed;
      m.sender.blocks_sent += s.blocks_sent;
      m.sender.blocks_rejected += s.blocks_rejected;
      m.sender.bytes_sent += s.bytes_sent;
      m.sender.inflight_blocks += s.inflight_blocks;
    }
    if (model->kv_receiver != nullptr) {
      m.receives = true;
      const KvTransferReceiverStats r = model->kv_receiver->stats();
      m.receiver.connections_total += r.connections_total;
      m.receiver.connections_open += r.connections_open;
      m.receiver.sessions_completed += r.sessions_completed;
      m.receiver.sessions_broken += r.sessions_broken;
      m.receiver.blocks_accepted += r.blocks_accepted;
      m.receiver.blocks_rejected += r.blocks_rejected;
      m.receiver.bytes_received += r.bytes_received;
      const TierStats t = model->kv_receiver->tier().stats();
      m.received.hits += t.hits;
      m.received.blocks += t.blocks;
      m.received.used_bytes += t.used_bytes;
      m.expired += model->kv_receiver->tier().expired();
    }
  }
  return m;
}

}  // namespace infergrid
