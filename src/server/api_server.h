// ApiServer: the OpenAI-compatible HTTP front end of `infergrid serve`: one or several models,
// each with its own engine, chosen by a request's `model` field.
//
// Boost.Beast over Asio: a few I/O threads serve every connection asynchronously (no thread
// per connection), with HTTP/1.1 keep-alive; each connection is an HttpSession (see
// http_session.h for its invariants). Open connections are capped below the fd limit (503
// past the cap) and accept() backs off when fds run out instead of spinning; SIGTERM/SIGINT
// stop the acceptor, let in-flight requests finish up to the grace period, then stop the I/O
// threads, and a second signal exits at once.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"
#include "kvstore/kv_transfer.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "server/access_control.h"
#include "server/metrics.h"

namespace infergrid {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: an ephemeral port (see ApiServer::port())
  int io_threads = 2;
  int worker_threads = 2;  // parse, template and tokenize requests off the I/O threads
  // The names of the single model of the one-engine constructor (the first is reported).
  std::vector<std::string> model_names;
  size_t max_body_bytes = size_t{8} << 20;
  size_t max_header_bytes = size_t{64} << 10;  // request line and headers: past it 431
  size_t max_target_bytes = size_t{8} << 10;   // the request target (URL): past it 414
  std::chrono::milliseconds shutdown_grace{30000};
  std::chrono::seconds idle_timeout{120};  // a keep-alive connection with no request
  std::chrono::seconds write_timeout{30};  // a client that stops reading is declared gone
  // Open connections; past it a new one gets 503 and is closed. 0: the fd limit less 128.
  int max_connections = 0;
  bool trust_request_priority = false;  // honour `priority` in request bodies
  // What the router may send here: "unified" (anything), "prefill" (prompts whose KV it hands
  // to a decode instance through the host's shared DRAM tier) or "decode". Reported in the KV
  // event stream's hello and the registry; the server itself serves any request whatever it is.
  std::string role = "unified";
  // Called after POST /admin/role switched the role (a router's planner moving capacity
  // between prefill and decode), with the new one: the caller rewrites its registry record.
  std::function<void(const std::string& role)> on_role_change;
  AccessOptions access;
};

// One model the server serves: its engine, tokenizer and chat template, and the names requests
// may give it (the first is reported; every name is unique across the server's models).
struct ServedModel {
  Engine& engine;
  const Tokenizer& tokenizer;
  ChatTemplate chat_template;
  std::vector<std::string> names;
  // KV transfer (kvstore/kv_transfer.h), owned by the caller: the sender of a prefill instance,
  // the receiver of a decode instance. Null: none.
  KvTransferSender* kv_sender = nullptr;
  KvTransferReceiver* kv_receiver = nullptr;
};

class ApiServer {
 public:
  // A request that names no model goes to the first one; one naming an unknown model gets 404.
  ApiServer(std::vector<ServedModel> models, ServerOptions options);
  // One model, named options.model_names ("default" when empty).
  ApiServer(Engine& engine, const Tokenizer& tokenizer, ChatTemplate chat_template,
            ServerOptions options);
  ~ApiServer();

  // Binds and listens; errors name the address.
  Status start();
  int port() const { return bound_port_; }
  int max_connections() const;
  // Serves until a shutdown completes (signal or request_shutdown()); then returns.
  void run();
  // Thread-safe; the same path as SIGTERM.
  void request_shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int bound_port_ = 0;
};

}  // namespace infergrid
