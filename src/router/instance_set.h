// InstanceSet: the instances a router sends work to, and what it knows of each: whether it is
// up, what model and block size it serves, its reported load, and the KV blocks it holds (fed
// into the KvIndex from its GET /kv/events stream, see server/kv_event_stream.h).
//
// Each wanted instance has one follower coroutine on the HttpClient's I/O thread that reads
// its event stream and reconnects with backoff, resuming from the last seq of the same epoch
// (the instance then replays what was missed, or sends a snapshot when too far behind or
// restarted). Invariants: everything here runs on that one thread (no locks); an instance is
// eligible only while its stream is synced (snapshot applied, no gap) and heard from within
// the heartbeat timeout, and not within the probation after a request to it failed; an
// instance id is its slot for the router's life (a re-added address gets its old slot back),
// so index entries and decision records never point at another instance. The HttpClient's I/O
// thread must be stopped (the client destroyed) before the set: followers suspended in it
// refer to the set.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "core/clock.h"
#include "net/http_client.h"
#include "router/kv_index.h"

namespace infergrid {

struct InstanceSetOptions {
  // No message (events or the 250 ms load heartbeat) for this long: the stream is dropped and
  // the instance is not eligible until it reconnects.
  std::chrono::milliseconds heartbeat_timeout{2000};
  // After a request to an instance failed, it gets no new requests for this long.
  std::chrono::milliseconds failure_probation{1000};
  std::chrono::milliseconds max_backoff{2000};
};

struct Instance {
  enum class Health { kConnecting, kUp, kDown };

  InstanceId id = 0;
  std::string address;  // as given: http://host:port
  Url url;
  uint64_t stable_hash = 0;
  bool wanted = true;      // in the static list or the registry
  bool pinned = false;     // given with --instance: the registry never removes it
  bool following = false;  // its follower coroutine is running (at most one is)
  Health health = Health::kConnecting;
  std::string last_error;

  // From its hello.
  std::string model;
  uint64_t fingerprint = 0;
  int block_size = 0;
  int blocks_total = 0;
  uint64_t epoch = 0;
  std::string role = "unified";  // unified, prefill or decode (ServerOptions::role)
  std::string kv_share;          // host and DRAM segment it writes through to; "" without
  int kv_transfer_port = 0;      // where it takes KV streamed from a prefill instance; 0: none

  // The event stream.
  uint64_t seq = 0;
  bool synced = false;  // a snapshot (or the resumed replay) has been applied
  Clock::time_point last_message{};
  Clock::time_point failed_at{};
  uint64_t connects = 0;
  uint64_t snapshots = 0;
  uint64_t events = 0;

  // Load: reported (running + waiting) and this router's own count.
  double reported_load = 0;
  int blocks_in_use = 0;
  int inflight = 0;
  double queued_prefill_tokens = 0;

  bool eligible(Clock::time_point now, const InstanceSetOptions& options) const;
};

std::string_view health_name(Instance::Health health);

class InstanceSet {
 public:
  InstanceSet(HttpClient& client, KvIndex& index, InstanceSetOptions options = {});
  ~InstanceSet();
  InstanceSet(const InstanceSet&) = delete;
  InstanceSet& operator=(const InstanceSet&) = delete;

  // On the client's I/O thread. Starts following the address (idempotent). `pinned`: a static
  // instance, which remove() leaves alone.
  Result<InstanceId> add(std::string_view address, bool pinned = false);
  // Stops following it (unless pinned); its blocks leave the index and it gets no new requests.
  void remove(std::string_view address);
  // A request to it failed in transport or with a 5xx: no new requests for the probation.
  void mark_failed(InstanceId id, std::string why);

  std::vector<std::unique_ptr<Instance>>& instances() { return instances_; }
  const std::vector<std::unique_ptr<Instance>>& instances() const { return instances_; }
  const InstanceSetOptions& options() const { return options_; }
  // Stops every follower (the router is shutting down).
  void stop_all();

 private:
  boost::asio::awaitable<void> follow(InstanceId id);
  // False when the stream must be dropped and resumed (a gap in the numbers, bad JSON).
  bool on_message(Instance& instance, std::string_view data);

  HttpClient& client_;
  KvIndex& index_;
  InstanceSetOptions options_;
  std::vector<std::unique_ptr<Instance>> instances_;
};

}  // namespace infergrid
