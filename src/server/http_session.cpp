#include "server/http_session.h"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/beast.hpp>
#include <nlohmann/json.hpp>

#include "kvstore/block_key.h"
#include "server/kv_event_stream.h"
#include "server/linger_close.h"
#include "server/openai_api.h"
#include "server/openai_responder.h"
#include "server/tokenize_api.h"

namespace infergrid {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

namespace {

// Bytes a client may pipeline behind a request that is generating; past it they are dropped
// and the connection closes after the response (the client resends, as HTTP allows).
constexpr size_t kMaxPipelinedBytes = size_t{64} << 10;
// Streamed bytes queued for a client that reads slower than we generate; past it the client
// is declared gone, so a reader that stops cannot make the server hold its whole output.
constexpr size_t kMaxPendingWriteBytes = size_t{256} << 10;
// The kernel send buffer of a stream (Linux doubles it): bounds what a client that stopped
// reading holds in the kernel (autotuning grows it to 4 MiB on loopback) and how long it takes
// to notice; ample for token streams at any round trip time a person would wait through.
constexpr int kStreamSendBufferBytes = 256 << 10;
// When a half-closed client's socket is checked for the reset that says it is gone: soon after
// the probe (a reset takes a round trip), then every 100 ms.
constexpr std::array<std::chrono::milliseconds, 4> kLivenessChecks = {
    std::chrono::milliseconds(1), std::chrono::milliseconds(5), std::chrono::milliseconds(20),
    std::chrono::milliseconds(100)};

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

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ServerContext& server)
      : stream_(std::move(socket)), server_(server), liveness_timer_(stream_.get_executor()) {
    ++server_.open_connections;
  }
  ~Session() {
    if (transfer_) transfer_->cancel();
    --server_.open_connections;
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
  }

 private:
  // --- reading requests -------------------------------------------------------------------
  void read_request() {
    if (client_gone_) return close();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_.options.max_header_bytes));
    parser_->body_limit(server_.options.max_body_bytes);
    version_ = 11;
    cors_origin_.reset();
    stream_.expires_after(server_.options.idle_timeout);
    reading_ = true;
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    reading_ = false;
    if (ec) return on_read_error(ec);
    const auto& req = parser_->get();
    version_ = req.version();
    if (req.target().size() > server_.options.max_target_bytes) {
      return reject_and_close(
          api_error(414, fmt::format("the request target is longer than {} bytes",
                                     server_.options.max_target_bytes)));
    }
    // Beast decodes chunked framing only; any other coding would reach us still encoded.
    if (auto te = req[http::field::transfer_encoding]; !te.empty() && !is_plain_chunked(te)) {
      return reject_and_close(api_error(501, fmt::format("Transfer-Encoding '{}' is not "
                                                         "supported (only chunked)",
                                                         clip(te))));
    }
    if (auto expect = req[http::field::expect]; !expect.empty()) {
      if (!iequals_ascii(trim_ascii(expect), "100-continue")) {
        return reject_and_close(
            api_error(417, fmt::format("Expect: '{}' is not supported", clip(expect))));
      }
      if (version_ >= 11 && !parser_->is_done()) {
        // Refuse before the client sends a body that would be thrown away.
        if (!server_.access.host_allowed(req[http::field::host])) {
          return reject_and_close(host_not_allowed(req[http::field::host]));
        }
        if (server_.access.requires_key(path_of(req.target())) &&
            !server_.access.authenticate(req[http::field::authorization])) {
          return reject_and_close(unauthorized());
        }
        static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        return net::async_write(stream_, net::buffer(kContinue),
                                [self = shared_from_this()](beast::error_code e, size_t) {
                                  if (e) return self->close();
                                  self->read_body();
                                });
      }
    }
    read_body();
  }

  void read_body() {
    if (parser_->is_done()) return on_read({});
    reading_ = true;
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->reading_ = false;
                       self->on_read(ec);
                     });
  }

  void on_read_error(beast::error_code ec) {
    if (ec.category() != http::make_error_code(http::error::end_of_stream).category() ||
        ec == http::error::end_of_stream || ec == http::error::partial_message) {
      return close();  // end of stream, timeout, reset: nobody to answer
    }
    if (ec == http::error::body_limit) {
      return reject_and_close(api_error(
          413, fmt::format("the request body exceeds {} bytes", server_.options.max_body_bytes)));
    }
    if (ec == http::error::header_limit) {
      // A request line that alone passes the limit (it was never parsed) is a URL too long,
      // not too many headers.
      if (parser_->get().target().empty()) {
        return reject_and_close(api_error(414, fmt::format("the request line is longer than {} "
                                                           "bytes",
                                                           server_.options.max_target_bytes)));
      }
      return reject_and_close(api_error(431, fmt::format("the request headers are larger than "
                                                         "{} bytes",
                                                         server_.options.max_header_bytes)));
    }
    reject_and_close(api_error(400, fmt::format("malformed HTTP request: {}", ec.message())));
  }

  void on_read(beast::error_code ec) {
    if (ec) return on_read_error(ec);
    request_ = parser_->release();
    keep_alive_ = request_.keep_alive();
    try {
      handle_request();
    } catch (const std::exception& e) {
      // Nothing a request carries may end the process: the one request fails.
      spdlog::error("request {} {} failed: {}", std::string(request_.method_string()),
                    std::string(request_.target()), e.what());
      keep_alive_ = false;
      send_error(api_error(500, fmt::format("internal error: {}", e.what())));
    }
  }

  void handle_request() {
    const std::string target = path_of(request_.target());
    const auto method = request_.method();
    if (!server_.access.host_allowed(request_[http::field::host])) {
      return send_error(host_not_allowed(request_[http::field::host]));
    }
    cors_origin_ = server_.access.cors_allow(request_[http::field::origin]);
    if (method == http::verb::options) return preflight();
    caller_priority_ = 0;
    if (server_.access.requires_key(target)) {
      auto key = server_.access.authenticate(request_[http::field::authorization]);
      if (!key) return send_error(unauthorized());
      caller_priority_ = key->priority;
    }
    const bool get = method == http::verb::get || method == http::verb::head;
    if (target == "/health" || target == "/v1/health") {
      if (!get) return method_not_allowed("GET, HEAD");
      if (server_.shutting_down) {
        return send_json(http::status::service_unavailable, R"({"status":"shutting down"})");
      }
      return send_json(http::status::ok, R"({"status":"ok"})");
    }
    if (target == "/v1/models") {
      if (!get) return method_not_allowed("GET, HEAD");
      nlohmann::json data = nlohmann::json::array();
      for (const auto& model : server_.models) {
        for (const auto& name : model->names) {
          data.push_back({{"id", name},
                          {"object", "model"},
                          {"created", 0},
                          {"owned_by", "infergrid"},
                          {"max_model_len", model->preparer.options().max_context}});
        }
      }
      return send_json(http::status::ok, nlohmann::json{{"object", "list"}, {"data", data}}.dump());
    }
    if (target == "/kv/events") {
      if (!get) return method_not_allowed("GET, HEAD");
      return start_kv_events();
    }
    if (target == "/admin/role") {
      if (get) return send_json(http::status::ok, nlohmann::json{{"role", server_.role()}}.dump());
      if (method != http::verb::post) return method_not_allowed("GET, HEAD, POST");
      return switch_role();
    }
    if (target == "/metrics") {
      if (!get) return method_not_allowed("GET, HEAD");
      return send_body(http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                       server_.metrics.render(server_.engine_stats()) +
                           render_kv_transfer_metrics(server_.kv_transfer_metrics()));
    }
    if (target == "/v1/completions" || target == "/v1/chat/completions") {
      if (method != http::verb::post) return method_not_allowed("POST");
      return start_generation(target == "/v1/chat/completions" ? Endpoint::kChat
                                                               : Endpoint::kCompletions);
    }
    if (target == "/tokenize" || target == "/detokenize" || target == "/apply-template") {
      if (method != http::verb::post) return method_not_allowed("POST");
      return start_tokenizer_request(target == "/tokenize"     ? &tokenize_body
                                     : target == "/detokenize" ? &detokenize_body
                                                               : &apply_template_body);
    }
    send_error(api_error(
        404, fmt::format("no route for {} {}", std::string(request_.method_string()), target)));
  }

  // The connection becomes the event stream (kv_event_stream.h); this session ends here.
  void start_kv_events() {
    const std::string target(request_.target());
    auto routed = server_.route(query_param(target, "model").value_or(""));
    if (auto* error = std::get_if<ApiError>(&routed)) return send_error(*error);
    const ModelEntry& model = *std::get<const ModelEntry*>(routed);
    std::shared_ptr<KvEventLog> log = model.engine.scheduler_options().kv_events;
    if (!log) {
      return send_error(api_error(404, "this instance keeps no KV event log (prefix caching off)"));
    }
    KvEventQuery query;
    const auto number = [&](const char* name, int base, uint64_t& out) {
      const auto text = query_param(target, name);
      if (!text) return true;
      char* end = nullptr;
      errno = 0;
      out = std::strtoull(text->c_str(), &end, base);
      return !text->empty() && *end == '\0' && errno == 0;
    };
    if (!number("since", 10, query.since) || !number("epoch", 16, query.epoch)) {
      return send_error(api_error(400, "since must be a decimal and epoch a hex number"));
    }
    stream_.expires_never();
    serve_kv_events(stream_.release_socket(), server_, model, std::move(log), query);
  }

  // Tokenizing costs what the text costs: on a worker thread, as generation requests are
  // prepared; the session resumes on its strand with the answer.
  using TokenizerEndpoint = std::variant<std::string, ApiError> (*)(const ServerContext&,
                                                                    std::string_view);
  void start_tokenizer_request(TokenizerEndpoint endpoint) {
    auto body = std::make_shared<std::string>(std::move(request_.body()));
    request_.body().clear();
    net::post(
        server_.workers.get_executor(),
        [self = shared_from_this(), executor = stream_.get_executor(), body, endpoint]() mutable {
          auto answer = endpoint(self->server_, *body);
          body.reset();
          net::post(executor, [self = std::move(self), answer = std::move(answer)]() mutable {
            if (auto* error = std::get_if<ApiError>(&answer)) return self->send_error(*error);
            self->send_json(http::status::ok, std::move(std::get<std::string>(answer)));
          });
        });
  }

  static ApiError host_not_allowed(std::string_view host) {
    ApiError e =
        api_error(403, fmt::format("the Host '{}' is not allowed (see --allowed-host)", clip(host)),
                  {}, "host_not_allowed");
    e.type = "permission_error";
    return e;
  }

  // A client's text echoed in an error message, bounded.
  static std::string clip(std::string_view text) {
    return text.size() <= 100 ? std::string(text) : std::string(text.substr(0, 100)) + "...";
  }

  ApiError unauthorized() const {
    ApiError e = api_error(401,
                           "a valid API key is required: send 'Authorization: Bearer KEY' with "
                           "one of the server's --api-key values",
                           {}, "invalid_api_key");
    e.type = "authentication_error";
    return e;
  }

  void preflight() {
    auto res =
        std::make_shared<http::response<http::string_body>>(http::status::no_content, version_);
    res->set(http::field::allow, "GET, POST, OPTIONS");
    if (server_.access.cors_enabled() && !request_[http::field::origin].empty() && !cors_origin_) {
      return send_error(api_error(403,
                                  fmt::format("the origin '{}' is not allowed (see --cors-origin)",
                                              clip(request_[http::field::origin])),
                                  {}, "origin_not_allowed"));
    }
    if (cors_origin_) {
      res->set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
      auto asked = request_[http::field::access_control_request_headers];
      res->set(http::field::access_control_allow_headers,
               asked.empty() || !is_header_list(asked) ? std::string("authorization, content-type")
                                                       : std::string(asked));
      res->set(http::field::access_control_max_age, "600");
    }
    send(std::move(res));
  }

  void method_not_allowed(const char* allowed) {
    allow_ = allowed;
    send_error(api_error(
        405, fmt::format("method {} is not allowed on {} (use {})", clip(request_.method_string()),
                         clip(path_of(request_.target())), allowed)));
  }

  // --- generation -------------------------------------------------------------------------
  // Parsing, the chat template and tokenization run on a worker thread; the session resumes on
  // its strand with the result.
  void start_generation(Endpoint endpoint) {
    auto body = std::make_shared<std::string>(std::move(request_.body()));
    request_.body().clear();
    // The worker hands its reference back with the result, so the session is never destroyed
    // (nor its socket closed) on a worker thread.
    net::post(server_.workers.get_executor(), [self = shared_from_this(),
                                               executor = stream_.get_executor(), body, endpoint,
                                               priority = caller_priority_]() mutable {
      auto prepared = self->server_.prepare(*body, endpoint, priority);
      body.reset();
      net::post(executor, [self = std::move(self), prepared = std::move(prepared)]() mutable {
        self->submit(std::move(prepared));
      });
    });
  }

  void submit(std::variant<RoutedRequest, ApiError> prepared) {
    if (auto* error = std::get_if<ApiError>(&prepared)) {
      if (error->http_status == 503) return send_error(*error, "1");
      return send_error(*error);
    }
    model_ = std::get<RoutedRequest>(prepared).model;
    PreparedRequest& p = std::get<RoutedRequest>(prepared).prepared;
    if (!peer_eof_ && peer_sent_eof()) {
      // Sent and closed before anything was computed (fire and forget): find out whether the
      // client is gone before its prompt costs a step.
      peer_eof_ = true;
      keep_alive_ = false;
      if (!p.stream) {
        if (!send_probe()) {
          server_.metrics.record_rejection(499);  // nginx's "client closed request"
          return close();
        }
        liveness_timer_.expires_after(kLivenessChecks[0]);
        liveness_timer_.async_wait(
            [self = shared_from_this(), p = std::move(p)](beast::error_code ec) mutable {
              if (ec) return;
              if (peer_has_reset(self->stream_.socket().native_handle())) {
                self->server_.metrics.record_rejection(499);
                self->client_gone_ = true;
                return self->close();
              }
              self->start_engine_request(std::move(p));
            });
        return;
      }
    }
    start_engine_request(std::move(p));
  }

  void start_engine_request(PreparedRequest p) {
    const Endpoint endpoint = p.endpoint;
    if (p.prefill_handoff && !model_->engine.scheduler_options().dram_tier) {
      return send_error(api_error(400,
                                  "this instance has no shared DRAM tier to hand KV off "
                                  "through (start it with --kv-dram-bytes)",
                                  "infergrid_prefill_handoff"));
    }
    gen_.emplace(OpenAiResponder(model_->tokenizer, endpoint,
                                 {random_id(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-"),
                                  unix_seconds(), model_->names.front()},
                                 p.stream, p.include_usage, p.logprobs, p.n, p.tool_format));
    gen_->responder.set_failover(p.report_tokens, static_cast<int>(p.request.resume_tokens.size()));
    gen_->replayed_left = static_cast<int>(p.request.resume_tokens.size());
    gen_->prefill_handoff = p.prefill_handoff;
    gen_->start = SteadyClock::now();
    if (p.transfer) {
      if (model_->kv_sender == nullptr) {
        gen_.reset();
        return send_error(api_error(400, "this instance cannot stream KV to another one",
                                    "infergrid_prefill_handoff"));
      }
      auto started = start_transfer(*p.transfer, p.request.prompt);
      if (!started.is_ok()) {
        gen_.reset();
        server_.metrics.record_rejection(503);
        return send_error(api_error(503, started.status().message()), "1");
      }
      transfer_ = std::move(started).value();
    }

    std::weak_ptr<Session> weak = shared_from_this();
    auto executor = stream_.get_executor();
    // n choices are n engine requests of one prompt, submitted together: the scheduler lets the
    // first compute the prompt and the others reuse its blocks.
    Result<uint64_t> id = make_error(StatusCode::kInternal, "no choice was submitted");
    const uint64_t seed = p.request.options.sampling.seed;
    for (int choice = 0; choice < p.n; ++choice) {
      GenerationRequest request = choice + 1 < p.n ? p.request : std::move(p.request);
      request.options.sampling.seed = choice_seed(seed, choice);
      id = model_->engine.submit(
          std::move(request), [weak, executor, choice](const RequestEvent& e) {
            // On the engine's step thread: hand the event to the
            // session's strand.
            if (auto self = weak.lock()) {
              net::post(executor, [self, e, choice] { self->on_event(choice, e); });
            }
          });
      if (!id.is_ok()) break;
      gen_->request_ids.push_back(*id);
    }
    if (!id.is_ok()) {
      for (uint64_t submitted : gen_->request_ids) model_->engine.cancel(submitted);
      gen_.reset();
      stop_transfer();
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
    // The session must outlive the request's final event; the engine holds only a weak
    // pointer, so the session keeps itself alive until then.
    gen_->keep_alive_self = shared_from_this();
    ++server_.active_generations;
    stream_.expires_never();
    if (gen_->responder.stream()) {
      auto res = std::make_unique<http::response<http::empty_body>>(http::status::ok, version_);
      decorate(*res);
      res->set(http::field::content_type, "text/event-stream");
      res->set(http::field::cache_control, "no-cache");
      beast::error_code ignored;
      stream_.socket().set_option(net::socket_base::send_buffer_size(kStreamSendBufferBytes),
                                  ignored);
      // HTTP/1.0 has no chunked coding: the body ends when the connection closes.
      raw_stream_ = version_ < 11;
      if (raw_stream_) keep_alive_ = false;
      res->keep_alive(keep_alive_);
      res->chunked(!raw_stream_);
      sse_header_ = std::move(res);
      enqueue({WriteItem::kHeader, {}});
    }
    if (peer_eof_) return poll_liveness(0);
    watch_for_disconnect();
  }

  // Whether the client has closed its sending side with nothing left unread.
  bool peer_sent_eof() {
    char byte = 0;
    return ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

  // See on_peer_eof. False when the client cannot be probed (HTTP/1.0) or is already gone.
  bool send_probe() {
    if (version_ < 11) return false;  // no interim responses in HTTP/1.0
    static constexpr char kProbe[] = "HTTP/1.1 100 Continue\r\n\r\n";
    const ssize_t sent = ::send(stream_.socket().native_handle(), kProbe, sizeof(kProbe) - 1,
                                MSG_DONTWAIT | MSG_NOSIGNAL);
    return sent >= 0 || errno == EAGAIN || errno == EWOULDBLOCK;
  }

  // While generating, a read is always pending: it notices the client going away whatever the
  // client sent before (bytes of a pipelined request are kept for the next read, up to
  // kMaxPipelinedBytes).
  void watch_for_disconnect() {
    if (reading_ || client_gone_ || peer_eof_) return;
    reading_ = true;
    // On the socket itself: the stream's timers are for the response's writes (a write
    // timeout must not end a watch that is waiting, rightly, for as long as generation takes).
    stream_.socket().async_read_some(
        net::buffer(watch_scratch_),
        [self = shared_from_this()](beast::error_code ec, size_t n) { self->on_watch(ec, n); });
  }

  void on_watch(beast::error_code ec, size_t n) {
    reading_ = false;
    if (n > 0) keep_pipelined(n);
    switch (std::exchange(after_watch_, AfterWatch::kNothing)) {
      case AfterWatch::kReadNext:
        if (!gen_) return read_request();
        break;
      case AfterWatch::kLinger:
        return linger_close(shared_from_this(), stream_);
      case AfterWatch::kNothing:
        break;
    }
    if (ec == net::error::eof) {
      peer_eof_ = true;
      return on_peer_eof();
    }
    if (ec) return client_gone();
    if (gen_ && !gen_->finished) watch_for_disconnect();
  }

  void keep_pipelined(size_t n) {
    if (buffer_.size() + n > kMaxPipelinedBytes) {
      keep_alive_ = false;  // what was pipelined is dropped: close after this response
      return;
    }
    auto room = buffer_.prepare(n);
    std::memcpy(room.data(), watch_scratch_.data(), n);
    buffer_.commit(n);
  }

  // The client closed its sending side. It may be gone, or it may be waiting for the answer
  // (`nc -N`, shutdown(SHUT_WR)): TCP cannot tell until we send. A streamed response has sent
  // its header; a whole one sends an interim 100 (which every HTTP/1.1 client skips). A peer
  // that is gone answers with a reset, which the liveness poll sees.
  void on_peer_eof() {
    keep_alive_ = false;
    if (!gen_ || gen_->finished) return;  // the response is on its way
    if (!gen_->responder.stream() && !send_probe()) return client_gone();
    poll_liveness(0);
  }

  void poll_liveness(size_t check) {
    liveness_timer_.expires_after(kLivenessChecks[std::min(check, kLivenessChecks.size() - 1)]);
    liveness_timer_.async_wait([self = shared_from_this(), check](beast::error_code ec) {
      if (ec || !self->gen_ || self->gen_->finished || self->client_gone_) return;
      if (peer_has_reset(self->stream_.socket().native_handle())) return self->client_gone();
      self->poll_liveness(check + 1);
    });
  }

  // The client is gone: its request is cancelled (its KV freed at the next step) and nothing
  // more is written.
  void client_gone() {
    client_gone_ = true;
    // The item being written stays until its handler runs: the write still reads its bytes.
    while (writes_.size() > (writing_ ? 1u : 0u)) {
      pending_write_bytes_ -= writes_.back().data.size();
      writes_.pop_back();
    }
    liveness_timer_.cancel();
    if (gen_ && !gen_->finished) {
      for (uint64_t id : gen_->request_ids) model_->engine.cancel(id);
    } else if (!gen_) {
      close();
    }
  }

  void on_event(int choice, const RequestEvent& e) {
    if (!gen_) return;
    Generation& g = *gen_;
    const auto now = SteadyClock::now();
    if (g.replayed_left > 0) {
      g.replayed_left = std::max(0, g.replayed_left - static_cast<int>(e.tokens.size()));
    } else if (!e.tokens.empty() && !g.first_token) {
      g.first_token = now;
    }
    if (e.finished) g.completion_tokens += e.completion_tokens;
    OpenAiResponder::Output out = g.responder.on_event(choice, e);
    if (g.responder.stream() && !client_gone_) {
      for (std::string& chunk : out.sse) enqueue({WriteItem::kChunk, std::move(chunk)});
    }
    if (!out.finished) return;

    g.finished = true;
    liveness_timer_.cancel();
    RequestRecord record;
    record.ttft_seconds = g.first_token ? seconds_between(g.start, *g.first_token) : -1;
    record.e2e_seconds = seconds_between(g.start, now);
    record.prompt_tokens = e.prompt_tokens;
    record.completion_tokens = g.completion_tokens;
    record.finish_reason = finish_reason_json(e.finish_reason);
    server_.metrics.record_request(record);
    auto self = std::move(g.keep_alive_self);  // released when this handler returns
    --server_.active_generations;

    if (client_gone_) {
      gen_.reset();
      stop_transfer();
      return close();
    }
    if (g.responder.stream()) return enqueue({WriteItem::kLast, {}});
    const bool handoff = g.prefill_handoff && !out.error;
    gen_.reset();
    if (out.error) {
      stop_transfer();
      return send_error(*out.error, out.retry_after);
    }
    if (handoff) {
      // The decode instance loads this prompt from the DRAM tier once we answer: answer when
      // its blocks are there (the wait runs on a worker, never on an I/O thread). A transfer
      // streams them on from there: answer when it has ended too.
      auto executor = stream_.get_executor();
      net::post(server_.workers.get_executor(),
                [self, executor, engine = &model_->engine, transfer = transfer_,
                 body = std::move(out.body)]() mutable {
                  engine->flush_tier_writes();
                  if (transfer) transfer->finish_input();
                  net::post(executor, [self = std::move(self), transfer = std::move(transfer),
                                       body = std::move(body)]() mutable {
                    if (!transfer) return self->send_json(http::status::ok, std::move(body));
                    if (transfer != self->transfer_) return;  // the connection moved on
                    self->handoff_body_ = std::move(body);
                    self->answer_handoff();
                  });
                });
      return;
    }
    send_json(http::status::ok, std::move(out.body));
  }

  // POST /admin/role {"role": "prefill" | "decode" | "unified"}: what routers may send here
  // from now on. Requests already running finish where they are (the engine serves any
  // request whatever the role), so the switch drains nothing and loses nothing.
  void switch_role() {
    const nlohmann::json body = nlohmann::json::parse(request_.body(), nullptr, false);
    const auto it = body.is_object() ? body.find("role") : body.end();
    if (!body.is_object() || it == body.end() || !it->is_string() ||
        (*it != "prefill" && *it != "decode" && *it != "unified")) {
      return send_error(api_error(400,
                                  "the body must be {\"role\": \"prefill\", \"decode\" or "
                                  "\"unified\"}",
                                  "role"));
    }
    const std::string role = it->get<std::string>();
    for (const auto& model : server_.models) {
      if (role == "prefill" && model->kv_sender == nullptr) {
        return send_error(api_error(400,
                                    "a prefill instance hands KV off through its DRAM tier: "
                                    "this one has none (--kv-dram-bytes)",
                                    "role"));
      }
    }
    const std::string previous = server_.role();
    server_.set_role(role);
    if (previous != role) {
      spdlog::info("role switched from {} to {}", previous, role);
      if (server_.options.on_role_change) server_.options.on_role_change(role);
    }
    send_json(http::status::ok, nlohmann::json{{"role", role}, {"previous", previous}}.dump());
  }

  // --- KV transfer of a prefill handoff --------------------------------------------------
  // Streams the prompt's full blocks, in order, to the target as the engine writes them
  // through to the DRAM tier.
  Result<std::shared_ptr<KvTransferSession>> start_transfer(const KvTransferTarget& target,
                                                            const std::vector<int32_t>& prompt) {
    const SchedulerOptions& options = model_->engine.scheduler_options();
    KvTransferPlan plan;
    plan.host = target.host;
    plan.port = target.port;
    plan.transfer_id = random_id("kvx-");
    plan.layout_tag = options.dram_tier->layout_tag();
    plan.block_size = options.block_size;
    plan.payload_bytes = options.dram_tier->payload_bytes();
    plan.deadline = SteadyClock::now() + std::chrono::milliseconds(target.deadline_ms);
    plan.lease = std::chrono::milliseconds(target.lease_ms);
    const uint64_t fingerprint = model_->engine.model().fingerprint();
    const auto block = static_cast<size_t>(options.block_size);
    uint64_t parent = kRootBlockKey;
    for (size_t at = 0; at + block <= prompt.size(); at += block) {
      std::vector<int32_t> tokens(prompt.begin() + static_cast<std::ptrdiff_t>(at),
                                  prompt.begin() + static_cast<std::ptrdiff_t>(at + block));
      const uint64_t key = block_key(parent, tokens, fingerprint);
      plan.blocks.push_back({key, parent, std::move(tokens)});
      parent = key;
    }
    // The session's thread reports its end to this connection's strand; the reference keeps
    // the connection until then (every transfer ends by its deadline).
    auto executor = stream_.get_executor();
    auto self = shared_from_this();
    auto holder = std::make_shared<std::weak_ptr<KvTransferSession>>();
    auto started = model_->kv_sender->start(
        std::move(plan), [self, executor, holder](const KvTransferResult& result) {
          net::post(executor, [self, holder, result] {
            const auto session = holder->lock();
            if (!session || session != self->transfer_) return;  // stopped: nobody waits
            self->handoff_result_ = result;
            self->answer_handoff();
          });
        });
    if (started.is_ok()) *holder = *started;
    return started;
  }

  // The handoff's answer, once both the prefill's body and the transfer's result are in.
  void answer_handoff() {
    if (!handoff_body_ || !handoff_result_) return;
    nlohmann::json body = nlohmann::json::parse(*handoff_body_, nullptr, false);
    const KvTransferResult& r = *handoff_result_;
    if (body.is_object()) {
      body["infergrid_transfer"] = {{"ok", r.ok},
                                    {"error", r.error},
                                    {"blocks_sent", r.sent},
                                    {"blocks_accepted", r.accepted},
                                    {"blocks_rejected", r.rejected},
                                    {"bytes", r.bytes},
                                    {"ms", r.ms}};
    }
    if (!r.ok) spdlog::warn("KV transfer of a prefill handoff failed: {}", r.error);
    std::string answer = body.is_object() ? body.dump() : std::move(*handoff_body_);
    transfer_.reset();
    handoff_body_.reset();
    handoff_result_.reset();
    send_json(http::status::ok, std::move(answer));
  }

  void stop_transfer() {
    if (!transfer_) return;
    transfer_->cancel();
    transfer_.reset();
    handoff_body_.reset();
    handoff_result_.reset();
  }

  // --- writing ----------------------------------------------------------------------------
  struct WriteItem {
    enum Kind { kHeader, kChunk, kLast } kind;
    std::string data;
  };

  void enqueue(WriteItem item) {
    if (client_gone_) return;
    pending_write_bytes_ += item.data.size();
    if (pending_write_bytes_ > kMaxPendingWriteBytes) {
      spdlog::debug("a streaming client fell {} bytes behind; dropping it", pending_write_bytes_);
      client_gone();
      return close();
    }
    writes_.push_back(std::move(item));
    if (!writing_) write_next();
  }

  void write_next() {
    if (writes_.empty() || client_gone_) {
      writing_ = false;
      return;
    }
    WriteItem& item = writes_.front();
    if (item.kind == WriteItem::kLast && raw_stream_) {  // HTTP/1.0: the close ends the body
      writes_.pop_front();
      writing_ = false;
      return end_stream();
    }
    writing_ = true;
    // A client that stops reading fills the socket buffers; this bounds how long we wait.
    stream_.expires_after(server_.options.write_timeout);
    auto done = [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); };
    switch (item.kind) {
      case WriteItem::kHeader:
        sse_serializer_.emplace(*sse_header_);
        http::async_write_header(stream_, *sse_serializer_, done);
        break;
      case WriteItem::kChunk:
        if (raw_stream_) {
          net::async_write(stream_, net::buffer(item.data), done);
        } else {
          net::async_write(stream_, http::make_chunk(net::buffer(item.data)), done);
        }
        break;
      case WriteItem::kLast:
        net::async_write(stream_, http::make_chunk_last(), done);
        break;
    }
  }

  void on_write(beast::error_code ec) {
    const bool last = writes_.front().kind == WriteItem::kLast;
    pending_write_bytes_ -= writes_.front().data.size();
    writes_.pop_front();
    writing_ = false;
    if (client_gone_) return close();
    if (ec) {
      client_gone();
      return close();
    }
    if (last) return end_stream();
    write_next();
  }

  void end_stream() {
    gen_.reset();
    sse_serializer_.reset();
    sse_header_.reset();
    finish_exchange();
  }

  void send_error(const ApiError& error, const char* retry_after = nullptr) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(error.http_status), version_);
    res->set(http::field::content_type, "application/json");
    if (retry_after) res->set(http::field::retry_after, retry_after);
    if (error.http_status == 401) res->set(http::field::www_authenticate, "Bearer");
    res->body() = error.to_json();
    send(std::move(res));
  }

  // An error after which the connection cannot be trusted to stay in step (a bad request
  // line, an unread body): answer, then close.
  void reject_and_close(const ApiError& error) {
    keep_alive_ = false;
    send_error(error);
  }

  void send_json(http::status status, std::string body) {
    send_body(status, "application/json", std::move(body));
  }

  void send_body(http::status status, const char* content_type, std::string body) {
    auto res = std::make_shared<http::response<http::string_body>>(status, version_);
    res->set(http::field::content_type, content_type);
    res->body() = std::move(body);
    send(std::move(res));
  }

  template <class Response>
  void decorate(Response& res) const {
    res.set(http::field::server, "infergrid");
    if (cors_origin_) {
      res.set(http::field::access_control_allow_origin, *cors_origin_);
      res.set(http::field::vary, "Origin");
    }
  }

  void send(std::shared_ptr<http::response<http::string_body>> res) {
    decorate(*res);
    res->keep_alive(keep_alive_ && !server_.shutting_down);
    if (allow_) res->set(http::field::allow, std::exchange(allow_, nullptr));
    res->prepare_payload();
    stream_.expires_after(server_.options.write_timeout);
    auto done = [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (ec) return self->close();
      self->finish_exchange();
    };
    if (request_.method() == http::verb::head) {
      // The headers GET would have (Content-Length included), and no body.
      auto serializer = std::make_shared<http::response_serializer<http::string_body>>(*res);
      return http::async_write_header(
          stream_, *serializer,
          [done, serializer](beast::error_code ec, size_t n) { done(ec, n); });
    }
    http::async_write(stream_, *res, std::move(done));
  }

  void finish_exchange() {
    if (!keep_alive_ || server_.shutting_down) {
      if (reading_) {  // the disconnect watch has no timeout: stop it, then linger
        after_watch_ = AfterWatch::kLinger;
        beast::error_code ignored;
        stream_.socket().cancel(ignored);
        return;
      }
      return linger_close(shared_from_this(), stream_);
    }
    if (reading_) {
      // Stop the disconnect watch; its handler starts the next read.
      after_watch_ = AfterWatch::kReadNext;
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    read_request();
  }

  void close() {
    liveness_timer_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  struct Generation {
    explicit Generation(OpenAiResponder r) : responder(std::move(r)) {}
    OpenAiResponder responder;
    bool finished = false;
    std::vector<uint64_t> request_ids;  // one per choice
    int completion_tokens = 0;          // of the choices that have ended
    SteadyClock::time_point start;
    std::optional<SteadyClock::time_point> first_token;
    int replayed_left = 0;  // resumed tokens still to come back: not this run's first token
    bool prefill_handoff = false;
    std::shared_ptr<Session> keep_alive_self;
  };

  // The KV transfer of the current prefill handoff, and what its answer waits for.
  std::shared_ptr<KvTransferSession> transfer_;
  std::optional<std::string> handoff_body_;
  std::optional<KvTransferResult> handoff_result_;

  enum class AfterWatch { kNothing, kReadNext, kLinger };

  beast::tcp_stream stream_;
  ServerContext& server_;
  const ModelEntry* model_ = nullptr;  // the current request's model (set when it is prepared)
  net::steady_timer liveness_timer_;
  beast::flat_buffer buffer_;
  std::array<char, 4096> watch_scratch_{};
  std::optional<http::request_parser<http::string_body>> parser_;
  http::request<http::string_body> request_;
  unsigned version_ = 11;  // of the request being answered (11 before its header is read)
  std::optional<std::string> cors_origin_;  // Access-Control-Allow-Origin for this request
  int caller_priority_ = 0;                 // from the request's API key
  const char* allow_ = nullptr;             // the Allow header of a 405
  bool keep_alive_ = true;
  bool reading_ = false;
  bool writing_ = false;
  bool raw_stream_ = false;  // an HTTP/1.0 stream: no chunk framing
  bool client_gone_ = false;
  bool peer_eof_ = false;  // the client has closed its sending side
  AfterWatch after_watch_ = AfterWatch::kNothing;
  std::optional<Generation> gen_;
  std::deque<WriteItem> writes_;
  size_t pending_write_bytes_ = 0;
  std::unique_ptr<http::response<http::empty_body>> sse_header_;
  std::optional<http::response_serializer<http::empty_body>> sse_serializer_;
};
}  // namespace

void serve_connection(tcp::socket socket, ServerContext& server) {
  std::make_shared<Session>(std::move(socket), server)->start();
}

}  // namespace infergrid
