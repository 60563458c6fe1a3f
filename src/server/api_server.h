// ApiServer: the OpenAI-compatible HTTP front end of one engine (`infergrid serve`).
//
// Boost.Beast over Asio: a few I/O threads serve every connection asynchronously (no thread
// per connection), with HTTP/1.1 keep-alive. Each connection is a Session on its own strand;
// engine events (produced on the engine's step thread) are posted to that strand, so a
// session's state is only touched there. Invariants: every accepted generation ends with
// exactly one final engine event, which the session waits for even if the client has gone (so
// no callback outlives its session); a client that disconnects mid-request has its request
// cancelled, freeing its KV blocks at the next step; SIGTERM/SIGINT stop the acceptor, let
// in-flight requests finish up to the grace period, then stop the I/O threads.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "server/metrics.h"

namespace infergrid {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: an ephemeral port (see ApiServer::port())
  int io_threads = 2;
  std::vector<std::string> model_names;  // the first is reported; any is accepted
  size_t max_body_bytes = size_t{8} << 20;
  std::chrono::milliseconds shutdown_grace{30000};
  std::chrono::seconds idle_timeout{120};
};

class ApiServer {
 public:
  ApiServer(Engine& engine, const Tokenizer& tokenizer, ChatTemplate chat_template,
            ServerOptions options);
  ~ApiServer();

  // Binds and listens; errors name the address.
  Status start();
  int port() const { return bound_port_; }
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
