#include "server/api_server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast/core/error.hpp>

#include "server/http_session.h"
#include "server/rejected_connection.h"
#include "server/server_context.h"

namespace infergrid {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

// Connections answered 503 at once (over --max-connections) that may linger at the same time;
// past it they are closed without an answer.
constexpr int kMaxRejecting = 32;

}  // namespace

WorkerPool::WorkerPool(int threads) : guard_(context_.get_executor()) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      // Per-thread nice on Linux; failure (a container that forbids it) only loses the
      // preference, never the work.
      ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 5);
      context_.run();
    });
  }
}

WorkerPool::~WorkerPool() {
  context_.stop();
  for (auto& t : threads_) t.join();
}

struct ApiServer::Impl : ServerContext {
  using ServerContext::ServerContext;
  void accept();
  void on_accept_error(const beast::error_code& ec);
  void wait_for_signal();
  void begin_shutdown();
};

void ApiServer::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) return on_accept_error(ec);
    accept_backoff = std::chrono::milliseconds(0);
    try {
      // Streamed tokens are small writes; without this each waits for the client's delayed
      // ACK (~40 ms added to time to first token).
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (open_connections.load() >= max_connections) {
        metrics.record_rejection(503);
        if (rejecting_connections.load() < kMaxRejecting) {
          reject_connection(std::move(socket), *this);
        } else {
          socket.close(ignored);
        }
      } else {
        serve_connection(std::move(socket), *this);
      }
    } catch (const std::exception& e) {  // e.g. bad_alloc: this connection is lost, not the server
      spdlog::error("accepting a connection failed: {}", e.what());
    }
    accept();
  });
}

void ApiServer::Impl::on_accept_error(const beast::error_code& ec) {
  if (!acceptor.is_open()) return;  // shutting down
  const bool out_of_resources = ec == net::error::no_descriptors ||
                                ec == net::error::no_buffer_space || ec == net::error::no_memory ||
                                ec.value() == ENFILE;
  if (auto suppressed = accept_log.allow()) {
    spdlog::warn("accept failed: {}{}", ec.message(),
                 *suppressed > 0
                     ? fmt::format(" ({} more times since the last report)", *suppressed)
                     : std::string());
  }
  if (!out_of_resources) return accept();
  // The pending connection stays in the backlog and the listener stays readable: retrying at
  // once would spin. Wait for connections to close, longer each time it fails again.
  accept_backoff =
      std::clamp(accept_backoff * 2, std::chrono::milliseconds(5), std::chrono::milliseconds(500));
  accept_timer.expires_after(accept_backoff);
  accept_timer.async_wait([this](beast::error_code error) {
    if (!error) accept();
  });
}

void ApiServer::Impl::wait_for_signal() {
  signals->async_wait([this](beast::error_code error, int signal_number) {
    if (error) return;
    if (shutting_down) {
      // The operator asked twice: stop now, without draining (the tiers survive a kill).
      spdlog::warn("second signal ({}): exiting now", signal_number);
      spdlog::default_logger()->flush();
      std::_Exit(128 + signal_number);
    }
    begin_shutdown();
    wait_for_signal();
  });
}

void ApiServer::Impl::begin_shutdown() {
  if (shutting_down.exchange(true)) return;
  spdlog::info("shutting down: no new connections; finishing in-flight requests (up to {} ms)",
               options.shutdown_grace.count());
  net::post(acceptor.get_executor(), [this] {
    beast::error_code ec;
    acceptor.close(ec);
    accept_timer.cancel();
  });
  shutdown_thread = std::thread([this] {
    // Every engine drains at once, each within the grace period.
    std::vector<std::thread> drains;
    for (const auto& model : models) {
      drains.emplace_back(
          [this, &engine = model->engine] { engine.shutdown(options.shutdown_grace); });
    }
    for (std::thread& t : drains) t.join();
    // Let sessions write their last bytes before the I/O threads stop.
    const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
    while (active_generations > 0 && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ioc.stop();
  });
}

ApiServer::ApiServer(std::vector<ServedModel> models, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(models), std::move(options))) {}

ApiServer::ApiServer(Engine& engine, const Tokenizer& tokenizer, ChatTemplate chat_template,
                     ServerOptions options)
    : ApiServer({ServedModel{engine, tokenizer, chat_template,
                             options.model_names.empty() ? std::vector<std::string>{"default"}
                                                         : options.model_names}},
                options) {}

ApiServer::~ApiServer() {
  if (impl_->shutdown_thread.joinable()) impl_->shutdown_thread.join();
}

int ApiServer::max_connections() const {
  return impl_->max_connections;
}

Status ApiServer::start() {
  if (impl_->models.empty()) return Status(StatusCode::kInvalidArgument, "no model to serve");
  beast::error_code ec;
  const auto address = net::ip::make_address(impl_->options.host, ec);
  if (ec) {
    return make_error(StatusCode::kInvalidArgument, "'{}' is not an IP address: {}",
                      impl_->options.host, ec.message());
  }
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(impl_->options.port));
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(StatusCode::kIoError, "cannot listen on {}:{}: {}", impl_->options.host,
                      impl_->options.port, ec.message());
  }
  bound_port_ = acceptor.local_endpoint().port();
  impl_->signals.emplace(impl_->ioc, SIGINT, SIGTERM);
  impl_->wait_for_signal();
  impl_->accept();
  return Status::ok();
}

void ApiServer::run() {
  // A handler that throws loses its own connection (its session, holding no more pending
  // operations, is destroyed); the I/O thread goes back to serving the others.
  auto serve = [this] {
    while (true) {
      try {
        impl_->ioc.run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("an HTTP handler failed: {}", e.what());
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, impl_->options.io_threads); ++i) threads.emplace_back(serve);
  serve();
  for (auto& t : threads) t.join();
  if (impl_->shutdown_thread.joinable()) impl_->shutdown_thread.join();
}

void ApiServer::request_shutdown() {
  net::post(impl_->ioc, [this] { impl_->begin_shutdown(); });
}

}  // namespace infergrid
