// ServerContext: what every connection of one ApiServer shares: the models (each an engine,
// its tokenizer and its request preparer), access control, metrics, the I/O context and the
// worker threads, and the counts that admission and shutdown read (open connections, active
// generations).
//
// Invariants: the counters are updated only by the sessions they count (constructor and
// destructor); `workers` is declared after `ioc`, so it is stopped and joined first: its tasks
// hold sessions, whose sockets belong to `ioc`.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include <boost/asio.hpp>

#include "engine/engine.h"
#include "server/access_control.h"
#include "server/api_server.h"
#include "server/http_util.h"
#include "server/metrics.h"
#include "server/request_preparer.h"

namespace infergrid {

// Threads that prepare requests (parse, template, tokenize). They run at a lower CPU priority
// than the I/O and engine threads: on a machine with few cores a flood of costly bodies then
// slows only the requests being prepared, not the connections being served or the tokens
// being decoded.
class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();  // abandons tasks not started, waits for running ones
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  boost::asio::io_context::executor_type get_executor() { return context_.get_executor(); }

 private:
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::vector<std::thread> threads_;
};

// One served model as the sessions use it.
struct ModelEntry {
  ModelEntry(const ServedModel& m, bool trust_request_priority)
      : engine(m.engine),
        tokenizer(m.tokenizer),
        chat_template(m.chat_template),
        names(m.names),
        kv_sender(m.kv_sender),
        kv_receiver(m.kv_receiver),
        preparer(m.tokenizer, m.chat_template,
                 PreparerOptions{m.names, m.engine.max_context(), trust_request_priority,
                                 JsonLimits{}}) {}

  Engine& engine;
  const Tokenizer& tokenizer;
  ChatTemplate chat_template;
  std::vector<std::string> names;  // the first is reported
  KvTransferSender* kv_sender;
  KvTransferReceiver* kv_receiver;
  RequestPreparer preparer;
};

// A request body prepared for the model it names.
struct RoutedRequest {
  const ModelEntry* model = nullptr;
  PreparedRequest prepared;
};

struct ServerContext {
  ServerContext(std::vector<ServedModel> served, ServerOptions o)
      : options(std::move(o)),
        access(options.access),
        max_connections(options.max_connections > 0 ? options.max_connections
                                                    : default_max_connections()),
        acceptor(boost::asio::make_strand(ioc)),
        accept_timer(acceptor.get_executor()),
        workers(std::max(1, options.worker_threads)) {
    for (const ServedModel& m : served) {
      models.push_back(std::make_unique<ModelEntry>(m, options.trust_request_priority));
    }
  }

  // KV transfer counters of every model, summed.
  KvTransferMetrics kv_transfer_metrics() const;
  // The role routers are told (ServerOptions::role, until POST /admin/role switches it).
  std::string role() const {
    std::lock_guard lock(role_mutex_);
    return role_;
  }
  void set_role(std::string role) {
    std::lock_guard lock(role_mutex_);
    role_ = std::move(role);
  }
  // The model a request names ("": the first one); nullptr when none has that name.
  const ModelEntry* find_model(std::string_view name) const;
  // The same, or the 404 that names the served models.
  std::variant<const ModelEntry*, ApiError> route(std::string_view name) const;
  // Parses a body, finds its model and prepares it there (on a worker thread).
  std::variant<RoutedRequest, ApiError> prepare(std::string_view body, Endpoint endpoint,
                                                int caller_priority) const;
  // Every model's engine stats summed, tiers included (one model: its own); block_bytes is the
  // mean, so blocks_total x block_bytes stays the KV cache's bytes.
  EngineStats engine_stats() const;

  std::vector<std::unique_ptr<ModelEntry>> models;  // at least one
  ServerOptions options;

 private:
  mutable std::mutex role_mutex_;
  std::string role_ = options.role;

 public:
  AccessControl access;
  ServerMetrics metrics;
  const int max_connections;
  std::atomic<int> open_connections{0};
  std::atomic<int> rejecting_connections{0};
  boost::asio::io_context ioc;
  // The acceptor and its backoff timer share a strand: accept handlers, the backoff and the
  // shutdown's close never run at the same time on two I/O threads.
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::steady_timer accept_timer;
  std::chrono::milliseconds accept_backoff{0};
  LogLimiter accept_log{std::chrono::seconds(10)};
  std::optional<boost::asio::signal_set> signals;
  std::atomic<bool> shutting_down{false};
  std::atomic<int> active_generations{0};
  std::thread shutdown_thread;
  // Declared after ioc: destroyed (stopped and joined) first, since its tasks hold sessions.
  WorkerPool workers;
};

}  // namespace infergrid
