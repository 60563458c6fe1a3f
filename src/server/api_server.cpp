#include "server/api_server.h"

#include <deque>
#include <optional>
#include <random>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <nlohmann/json.hpp>

#include "server/openai_api.h"

namespace infergrid {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}{:016x}{:04x}", prefix, rng(), counter++ & 0xffff);
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

struct ApiServer::Impl {
  Impl(Engine& e, const Tokenizer& t, ChatTemplate c, ServerOptions o)
      : engine(e), tokenizer(t), chat_template(c), options(std::move(o)), acceptor(ioc) {}

  void accept();
  void begin_shutdown();

  Engine& engine;
  const Tokenizer& tokenizer;
  ChatTemplate chat_template;
  ServerOptions options;
  ServerMetrics metrics;
  net::io_context ioc;
  tcp::acceptor acceptor;
  std::optional<net::signal_set> signals;
  std::atomic<bool> shutting_down{false};
  std::atomic<int> active_generations{0};
  std::thread shutdown_thread;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ApiServer::Impl& server)
      : stream_(std::move(socket)), server_(server) {}

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }

 private:
  // --- reading requests -------------------------------------------------------------------
  void read_request() {
    parser_.emplace();
    parser_->body_limit(server_.options.max_body_bytes);
    stream_.expires_after(server_.options.idle_timeout);
    reading_ = true;
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      send_error(api_error(
          413, fmt::format("the request body exceeds {} bytes", server_.options.max_body_bytes)));
      return;
    }
    if (ec) return close();  // end of stream, timeout, reset, malformed HTTP
    request_ = parser_->release();
    keep_alive_ = request_.keep_alive();
    handle_request();
  }

  void handle_request() {
    std::string target(request_.target());
    if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
    const auto method = request_.method();
    if (target == "/health" || target == "/v1/health") {
      if (method != http::verb::get) return method_not_allowed();
      if (server_.shutting_down) {
        return send_json(http::status::service_unavailable, R"({"status":"shutting down"})");
      }
      return send_json(http::status::ok, R"({"status":"ok"})");
    }
    if (target == "/v1/models") {
      if (method != http::verb::get) return method_not_allowed();
      nlohmann::json data = nlohmann::json::array();
      for (const auto& name : server_.options.model_names) {
        data.push_back({{"id", name},
                        {"object", "model"},
                        {"created", 0},
                        {"owned_by", "infergrid"},
                        {"max_model_len", server_.engine.max_context()}});
      }
      return send_json(http::status::ok, nlohmann::json{{"object", "list"}, {"data", data}}.dump());
    }
    if (target == "/metrics") {
      if (method != http::verb::get) return method_not_allowed();
      return send_body(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                       server_.metrics.render(server_.engine.stats()));
    }
    if (target == "/v1/completions" || target == "/v1/chat/completions") {
      if (method != http::verb::post) return method_not_allowed();
      return start_generation(target == "/v1/chat/completions" ? Endpoint::kChat
                                                               : Endpoint::kCompletions);
    }
    send_error(api_error(
        404, fmt::format("no route for {} {}", std::string(request_.method_string()), target)));
  }

  void method_not_allowed() {
    send_error(api_error(
        405, fmt::format("method {} is not allowed on {}", std::string(request_.method_string()),
                         std::string(request_.target()))));
  }

  // --- generation -------------------------------------------------------------------------
  void start_generation(Endpoint endpoint) {
    auto parsed = parse_api_request(request_.body(), endpoint);
    if (auto* error = std::get_if<ApiError>(&parsed)) return send_error(*error);
    ApiRequest& api = std::get<ApiRequest>(parsed);
    const auto& names = server_.options.model_names;
    if (!api.model.empty() && std::find(names.begin(), names.end(), api.model) == names.end()) {
      return send_error(api_error(404,
                                  fmt::format("the model '{}' does not exist; this server serves "
                                              "'{}'",
                                              api.model, names.front()),
                                  "model", "model_not_found"));
    }
    GenerationRequest request;
    if (endpoint == Endpoint::kChat) {
      auto text = server_.chat_template.render(api.messages);
      if (!text.is_ok()) return send_error(api_error(400, text.status().message(), "messages"));
      request.prompt = server_.tokenizer.encode(*text, true, true);
    } else if (!api.prompt_tokens.empty()) {
      request.prompt = std::move(api.prompt_tokens);
    } else {
      request.prompt = server_.tokenizer.encode(api.prompt_text, true, true);
    }
    const int context = server_.engine.max_context();
    const int prompt_len = static_cast<int>(request.prompt.size());
    if (prompt_len >= context) {
      return send_error(api_error(400,
                                  fmt::format("this model's maximum context length is {} tokens; "
                                              "the prompt has {} tokens",
                                              context, prompt_len),
                                  endpoint == Endpoint::kChat ? "messages" : "prompt",
                                  "context_length_exceeded"));
    }
    const int room = context - prompt_len;
    request.options = std::move(api.options);
    request.options.max_tokens =
        std::min(room, api.max_tokens.value_or(endpoint == Endpoint::kChat ? room : 16));

    gen_.emplace();
    gen_->endpoint = endpoint;
    gen_->stream = api.stream;
    gen_->include_usage = api.include_usage;
    gen_->logprobs = api.logprobs;
    gen_->meta = {random_id(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-"), unix_seconds(),
                  names.front()};
    gen_->start = SteadyClock::now();

    std::weak_ptr<Session> weak = shared_from_this();
    auto executor = stream_.get_executor();
    auto id = server_.engine.submit(std::move(request), [weak, executor](const RequestEvent& e) {
      // On the engine's step thread: hand the event to the session's strand.
      if (auto self = weak.lock()) {
        net::post(executor, [self, e] { self->on_event(e); });
      }
    });
    if (!id.is_ok()) {
      gen_.reset();
      const Status& st = id.status();
      switch (st.code()) {
        case StatusCode::kResourceExhausted:
          server_.metrics.record_rejection(429);
          return send_error(api_error(429, st.message()), "1");
        case StatusCode::kUnavailable:
          server_.metrics.record_rejection(503);
          return send_error(api_error(503, st.message()), "5");
        case StatusCode::kOutOfRange:
          return send_error(api_error(400, st.message(), "prompt", "context_length_exceeded"));
        default:
          return send_error(api_error(400, st.message()));
      }
    }
    gen_->request_id = *id;
    // The session must outlive the request's final event; the engine holds only a weak
    // pointer, so the session keeps itself alive until then.
    gen_->keep_alive_self = shared_from_this();
    ++server_.active_generations;
    stream_.expires_never();
    if (gen_->stream) {
      auto res =
          std::make_unique<http::response<http::empty_body>>(http::status::ok, request_.version());
      res->set(http::field::server, "infergrid");
      res->set(http::field::content_type, "text/event-stream");
      res->set(http::field::cache_control, "no-cache");
      res->keep_alive(keep_alive_);
      res->chunked(true);
      sse_header_ = std::move(res);
      enqueue({WriteItem::kHeader, {}});
    }
    watch_for_disconnect();
  }

  // While generating, a pending read notices the client going away. When the client has
  // already sent more bytes (a pipelined request), they are left for the next read instead.
  void watch_for_disconnect() {
    if (reading_ || client_gone_ || buffer_.size() > 0) return;
    reading_ = true;
    stream_.async_read_some(
        buffer_.prepare(4096),
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->on_watch(ec, n); });
  }

  void on_watch(beast::error_code ec, size_t n) {
    reading_ = false;
    const bool resume = std::exchange(resume_after_watch_, false);
    if (ec == net::error::operation_aborted && resume && !gen_) {
      return read_request();  // the response is done; wait for the next request
    }
    if (ec) {
      client_gone_ = true;
      if (gen_ && !gen_->finished) {
        server_.engine.cancel(gen_->request_id);
      } else if (!gen_) {
        close();
      }
      return;
    }
    // Bytes of the next request: keep them for read_request(). Disconnects during the rest of
    // this generation are then noticed only by a failed write.
    buffer_.commit(n);
    if (!gen_ && !responding_) read_request();
  }

  void on_event(const RequestEvent& e) {
    if (!gen_) return;
    Generation& g = *gen_;
    const auto now = SteadyClock::now();
    if (!e.tokens.empty() && !g.first_token) g.first_token = now;
    std::vector<ChoiceLogprob> lps;
    if (g.logprobs) {
      for (const auto& t : e.tokens) {
        ChoiceLogprob lp{server_.tokenizer.token_to_piece(t.token), t.logprob, {}};
        for (const auto& alt : t.top) {
          lp.top.emplace_back(server_.tokenizer.token_to_piece(alt.token), alt.logprob);
        }
        lps.push_back(std::move(lp));
      }
    }
    g.usage = {e.prompt_tokens, e.completion_tokens, e.cached_tokens};
    if (g.stream && !client_gone_) {
      if (!e.text.empty() || !lps.empty() || g.first_chunk) {
        enqueue({WriteItem::kChunk,
                 sse(stream_chunk(g.meta, g.endpoint, e.text, g.logprobs ? &lps : nullptr,
                                  std::nullopt, g.first_chunk))});
        g.first_chunk = false;
      }
    } else {
      g.text += e.text;
      for (auto& lp : lps) g.all_logprobs.push_back(std::move(lp));
    }
    if (!e.finished) return;

    g.finished = true;
    RequestRecord record;
    record.ttft_seconds = g.first_token ? seconds_between(g.start, *g.first_token) : -1;
    record.e2e_seconds = seconds_between(g.start, now);
    record.prompt_tokens = e.prompt_tokens;
    record.completion_tokens = e.completion_tokens;
    record.finish_reason = finish_reason_json(e.finish_reason);
    server_.metrics.record_request(record);
    auto self = std::move(g.keep_alive_self);  // released when this handler returns
    --server_.active_generations;

    if (client_gone_) {
      gen_.reset();
      return close();
    }
    if (e.finish_reason == FinishReason::kError && !g.stream) {
      gen_.reset();
      return send_error(api_error(500, "generation failed: " + e.error.to_string()));
    }
    if (e.finish_reason == FinishReason::kCancelled && !g.stream) {
      gen_.reset();
      return send_error(api_error(503, "the server is shutting down"), "5");
    }
    if (g.stream) {
      enqueue({WriteItem::kChunk,
               sse(stream_chunk(g.meta, g.endpoint, "", nullptr, e.finish_reason, false))});
      if (g.include_usage) {
        enqueue({WriteItem::kChunk, sse(usage_chunk(g.meta, g.endpoint, g.usage))});
      }
      enqueue({WriteItem::kChunk, "data: [DONE]\n\n"});
      enqueue({WriteItem::kLast, {}});
    } else {
      std::string body =
          completion_response(g.meta, g.endpoint, g.text, g.logprobs ? &g.all_logprobs : nullptr,
                              e.finish_reason, g.usage);
      gen_.reset();
      send_json(http::status::ok, std::move(body));
    }
  }

  static std::string sse(const std::string& payload) { return "data: " + payload + "\n\n"; }

  // --- writing ----------------------------------------------------------------------------
  struct WriteItem {
    enum Kind { kHeader, kChunk, kLast } kind;
    std::string data;
  };

  void enqueue(WriteItem item) {
    writes_.push_back(std::move(item));
    if (!writing_) write_next();
  }

  void write_next() {
    if (writes_.empty() || client_gone_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    auto done = [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); };
    WriteItem& item = writes_.front();
    switch (item.kind) {
      case WriteItem::kHeader:
        sse_serializer_.emplace(*sse_header_);
        http::async_write_header(stream_, *sse_serializer_, done);
        break;
      case WriteItem::kChunk:
        net::async_write(stream_, http::make_chunk(net::buffer(item.data)), done);
        break;
      case WriteItem::kLast:
        net::async_write(stream_, http::make_chunk_last(), done);
        break;
    }
  }

  void on_write(beast::error_code ec) {
    const bool last = writes_.front().kind == WriteItem::kLast;
    writes_.pop_front();
    if (ec) {
      client_gone_ = true;
      writes_.clear();
      writing_ = false;
      if (gen_ && !gen_->finished) server_.engine.cancel(gen_->request_id);
      return;
    }
    if (last) {
      writing_ = false;
      gen_.reset();
      sse_serializer_.reset();
      sse_header_.reset();
      return finish_exchange();
    }
    write_next();
  }

  void send_error(const ApiError& error, const char* retry_after = nullptr) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(error.http_status), request_.version());
    res->set(http::field::content_type, "application/json");
    if (retry_after) res->set(http::field::retry_after, retry_after);
    res->body() = error.to_json();
    send(std::move(res));
  }

  void send_json(http::status status, std::string body) {
    send_body(status, "application/json", std::move(body));
  }

  void send_body(http::status status, const char* content_type, std::string body) {
    auto res = std::make_shared<http::response<http::string_body>>(status, request_.version());
    res->set(http::field::content_type, content_type);
    res->body() = std::move(body);
    send(std::move(res));
  }

  void send(std::shared_ptr<http::response<http::string_body>> res) {
    res->set(http::field::server, "infergrid");
    res->keep_alive(keep_alive_ && !server_.shutting_down);
    res->prepare_payload();
    stream_.expires_after(server_.options.idle_timeout);
    responding_ = true;
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        self->responding_ = false;
                        if (ec) return self->close();
                        self->finish_exchange();
                      });
  }

  void finish_exchange() {
    if (!keep_alive_ || server_.shutting_down) return close();
    if (reading_) {
      // The disconnect watch has no timeout; stop it, and its handler starts the next read.
      resume_after_watch_ = true;
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    read_request();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  struct Generation {
    Endpoint endpoint = Endpoint::kCompletions;
    bool stream = false;
    bool include_usage = false;
    bool logprobs = false;
    bool first_chunk = true;
    bool finished = false;
    uint64_t request_id = 0;
    ResponseMeta meta;
    SteadyClock::time_point start;
    std::optional<SteadyClock::time_point> first_token;
    std::string text;
    std::vector<ChoiceLogprob> all_logprobs;
    Usage usage;
    std::shared_ptr<Session> keep_alive_self;
  };

  beast::tcp_stream stream_;
  ApiServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  bool keep_alive_ = true;
  bool reading_ = false;
  bool writing_ = false;
  bool responding_ = false;          // a whole (non-streamed) response is being written
  bool resume_after_watch_ = false;  // the watch was cancelled to read the next request
  bool client_gone_ = false;
  std::optional<Generation> gen_;
  std::deque<WriteItem> writes_;
  std::unique_ptr<http::response<http::empty_body>> sse_header_;
  std::optional<http::response_serializer<http::empty_body>> sse_serializer_;
};

}  // namespace

void ApiServer::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (!acceptor.is_open()) return;  // shutting down
      spdlog::warn("accept failed: {}", ec.message());
    } else {
      // Streamed tokens are small writes; without this each waits for the client's delayed
      // ACK (~40 ms added to time to first token).
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(socket), *this)->start();
    }
    accept();
  });
}

void ApiServer::Impl::begin_shutdown() {
  if (shutting_down.exchange(true)) return;
  spdlog::info("shutting down: no new connections; finishing in-flight requests (up to {} ms)",
               options.shutdown_grace.count());
  net::post(acceptor.get_executor(), [this] {
    beast::error_code ec;
    acceptor.close(ec);
  });
  shutdown_thread = std::thread([this] {
    engine.shutdown(options.shutdown_grace);
    // Let sessions write their last bytes before the I/O threads stop.
    const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
    while (active_generations > 0 && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ioc.stop();
  });
}

ApiServer::ApiServer(Engine& engine, const Tokenizer& tokenizer, ChatTemplate chat_template,
                     ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, tokenizer, chat_template, std::move(options))) {
  if (impl_->options.model_names.empty()) impl_->options.model_names.push_back("default");
}

ApiServer::~ApiServer() {
  if (impl_->shutdown_thread.joinable()) impl_->shutdown_thread.join();
}

Status ApiServer::start() {
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
  impl_->signals->async_wait([this](beast::error_code error, int) {
    if (!error) impl_->begin_shutdown();
  });
  impl_->accept();
  return Status::ok();
}

void ApiServer::run() {
  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, impl_->options.io_threads); ++i) {
    threads.emplace_back([this] { impl_->ioc.run(); });
  }
  impl_->ioc.run();
  for (auto& t : threads) t.join();
  if (impl_->shutdown_thread.joinable()) impl_->shutdown_thread.join();
}

void ApiServer::request_shutdown() {
  net::post(impl_->ioc, [this] { impl_->begin_shutdown(); });
}

}  // namespace infergrid
