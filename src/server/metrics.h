// ServerMetrics: the Prometheus metrics of `infergrid serve`, rendered in the text exposition
// format for GET /metrics. Latency histograms are observed per finished request; gauges and
// engine-side counters are read from the Engine when rendered. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "kvstore/kv_transfer.h"

namespace infergrid {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  void render(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct RequestRecord {
  double ttft_seconds = -1;  // < 0: no token was produced
  double e2e_seconds = 0;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  std::string finish_reason;  // stop, length, abort, error
};

// KV transfer between instances (kvstore/kv_transfer.h), summed over the served models.
struct KvTransferMetrics {
  bool sends = false;     // some model can stream KV to another instance
  bool receives = false;  // some model listens for KV from other instances
  KvTransferSenderStats sender;
  KvTransferReceiverStats receiver;
  TierStats received;    // the blocks received and not yet loaded
  uint64_t expired = 0;  // received blocks whose lease ended before a request loaded them
};
std::string render_kv_transfer_metrics(const KvTransferMetrics& m);

class ServerMetrics {
 public:
  ServerMetrics();
  void record_request(const RequestRecord& record);
  void record_rejection(int http_status);  // requests refused before reaching the engine
  std::string render(const EngineStats& engine) const;

 private:
  mutable std::mutex mutex_;
  Histogram ttft_, tpot_, e2e_;
  std::map<std::string, uint64_t> finished_;  // by finish reason
  std::map<int, uint64_t> rejected_;          // by HTTP status
  uint64_t prompt_tokens_ = 0;
  uint64_t generation_tokens_ = 0;
};

}  // namespace infergrid
