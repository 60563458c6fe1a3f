// KV transfer between instances over TCP (frames: kvstore/kv_transfer_frame.h).
//
// KvTransferReceiver (a decode instance): listens, verifies every block of every session and
// stores the good ones in its KvReceiveTier under the lease the sender asked for, where the
// engine's prefix match finds them. KvTransferSender (a prefill instance): runs one session
// per handed-off request on its own thread, streaming the request's blocks in prompt order as
// they appear in a source tier (the DRAM tier the engine writes each computed block through
// to), so the receiver gets the first blocks while later prefill chunks are still computing.
//
// Invariants: a sent block stays pinned in the session (its bytes kept, counted in
// inflight_blocks) until the receiver acknowledges it or its lease ends, and at most `window`
// are pinned at once; every session ends by its deadline (connect, writes, acks and the wait
// for blocks all count against it), on cancel(), or when the source will not have the next
// block (input finished and the block missing: a prefix cannot skip one), and releases every
// pin then; the receiver closes a connection that is silent past its idle timeout or sends a
// frame it cannot read, and stores a block only when its frame's checksum, layout tag, token
// count and key (recomputed from parent and tokens) agree; the receive tier checks the block's
// own checksum again before a request uses it. Both are thread-safe; destruction cancels and
// joins every thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "kvstore/kv_tier.h"
#include "kvstore/kv_transfer_frame.h"
#include "kvstore/receive_tier.h"

namespace infergrid {

struct KvTransferReceiverOptions {
  std::string host = "127.0.0.1";
  int port = 0;                    // 0: any free port (port() says which)
  uint64_t model_fingerprint = 0;  // keys are recomputed from tokens with it
  int max_connections = 64;        // more are closed at once
  std::chrono::milliseconds idle_timeout{30000};
  std::chrono::milliseconds max_lease{600000};  // a sender's lease is capped at this
};

struct KvTransferReceiverStats {
  uint64_t connections_total = 0;
  uint64_t connections_open = 0;
  uint64_t sessions_completed = 0;  // ended with kEnd
  uint64_t sessions_broken = 0;     // closed before kEnd (sender died, garbage, timeout)
  uint64_t blocks_accepted = 0;
  uint64_t blocks_rejected = 0;  // failed a check: dropped, the engine computes them
  uint64_t bytes_received = 0;
};

class KvTransferReceiver {
 public:
  static Result<std::unique_ptr<KvTransferReceiver>> start(KvTransferReceiverOptions options,
                                                           std::shared_ptr<KvReceiveTier> tier);
  ~KvTransferReceiver();
  KvTransferReceiver(const KvTransferReceiver&) = delete;
  KvTransferReceiver& operator=(const KvTransferReceiver&) = delete;

  int port() const { return port_; }
  KvTransferReceiverStats stats() const;
  KvReceiveTier& tier() { return *tier_; }

 private:
  KvTransferReceiver(KvTransferReceiverOptions options, std::shared_ptr<KvReceiveTier> tier);
  void accept_loop();
  void serve_connection(int fd);
  // One kBlock frame's body after its header: whether the block was stored (false: rejected,
  // the stream still in step); an error when the connection failed.
  Result<bool> receive_block(int fd, const KvFrameHeader& header, uint32_t seq,
                             std::chrono::milliseconds lease);
  void reap_finished_locked();

  struct Connection {
    std::thread thread;
    std::atomic<bool> finished{false};
  };

  const KvTransferReceiverOptions options_;
  std::shared_ptr<KvReceiveTier> tier_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd: readable once stopping
  int port_ = 0;
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::list<Connection> connections_;
  KvTransferReceiverStats stats_;
};

struct KvTransferBlock {
  uint64_t key = 0;
  uint64_t parent_key = 0;
  std::vector<int32_t> tokens;
};

struct KvTransferPlan {
  std::string host;  // the receiver
  int port = 0;
  std::string transfer_id;
  uint64_t layout_tag = 0;
  int block_size = 0;
  size_t payload_bytes = 0;             // one block in the tiers' format
  std::vector<KvTransferBlock> blocks;  // the prompt's full blocks, first to last
  std::chrono::steady_clock::time_point deadline;
  std::chrono::milliseconds lease{30000};  // the receiver holds unloaded blocks this long
  int window = 64;                         // sent and not yet acknowledged, at most
};

struct KvTransferResult {
  bool ok = false;    // the receiver confirmed the end of the session
  std::string error;  // why not
  uint32_t sent = 0;
  uint32_t accepted = 0;
  uint32_t rejected = 0;
  uint64_t bytes = 0;
  double ms = 0;
};

struct KvTransferSenderStats {
  uint64_t sessions_active = 0;
  uint64_t sessions_ok = 0;
  uint64_t sessions_failed = 0;
  uint64_t blocks_sent = 0;
  uint64_t blocks_rejected = 0;
  uint64_t bytes_sent = 0;
  uint64_t inflight_blocks = 0;  // pinned now: sent, not yet acknowledged
};

class KvTransferSession;

class KvTransferSender {
 public:
  // source: where the blocks appear (read with get(), so every block is verified there).
  explicit KvTransferSender(std::shared_ptr<KvTier> source, int max_sessions = 16);
  ~KvTransferSender();
  KvTransferSender(const KvTransferSender&) = delete;
  KvTransferSender& operator=(const KvTransferSender&) = delete;

  using DoneFn = std::function<void(const KvTransferResult&)>;
  // Starts streaming plan's blocks; on_done runs once on the session's thread at its end. An
  // error (and no session) when max_sessions are running.
  Result<std::shared_ptr<KvTransferSession>> start(KvTransferPlan plan, DoneFn on_done);
  KvTransferSenderStats stats() const;
  // Cancels every session and waits until each has ended (its on_done has run). Sessions
  // started afterwards are not covered.
  void shutdown();
  // A block was written to the source (the engine's write-through): sessions waiting for one
  // look now instead of at their next poll.
  void notify_written();

 private:
  friend class KvTransferSession;
  struct Running {
    std::shared_ptr<KvTransferSession> session;
    std::thread thread;
    std::atomic<bool> finished{false};
  };
  void reap_finished_locked();

  std::shared_ptr<KvTier> source_;
  const int max_sessions_;
  mutable std::mutex mutex_;
  std::list<Running> running_;
  std::mutex wake_mutex_;  // guards writes_ and every session's input_finished_, cancelled_
  std::condition_variable wake_cv_;
  uint64_t writes_ = 0;
  std::atomic<uint64_t> sessions_ok_{0}, sessions_failed_{0}, blocks_sent_{0}, blocks_rejected_{0},
      bytes_sent_{0}, inflight_blocks_{0};
};

// One request's transfer. The owner calls finish_input() once every block the prefill will
// compute has reached the source (or cancel() to stop it).
class KvTransferSession {
 public:
  KvTransferSession(KvTransferPlan plan, KvTransferSender& sender);
  ~KvTransferSession();
  KvTransferSession(const KvTransferSession&) = delete;
  KvTransferSession& operator=(const KvTransferSession&) = delete;

  void finish_input();
  void cancel();

 private:
  friend class KvTransferSender;
  KvTransferResult run();
  // Waits until block i is in the source (true, payload filled) or never will be (false).
  bool next_block(size_t i, std::vector<uint8_t>& payload, std::string& error);
  bool stopped() const { return cancelled_.load(); }

  KvTransferPlan plan_;
  KvTransferSender& sender_;
  int wake_fd_ = -1;             // an eventfd: readable on cancel()
  bool input_finished_ = false;  // under sender_.wake_mutex_
  std::atomic<bool> cancelled_{false};
};

}  // namespace infergrid
