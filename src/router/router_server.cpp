#include "router/router_server.h"

#include "router/priority_class.h"
#include "router/router_stats.h"

#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "kvstore/block_key.h"
#include "server/http_util.h"
#include "server/openai_api.h"

namespace infergrid {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

std::string new_request_id() {
  static std::mt19937_64 rng(std::random_device{}());
  return fmt::format("req-{:016x}", rng());
}

// The statuses after which another instance may succeed where this one did not.
bool worth_retrying(int status) {
  return status == 429 || status >= 500;
}

// `usage.prompt_tokens_details.cached_tokens` of a response body or stream chunk, if present.
std::optional<int64_t> cached_tokens_of(const json& body) {
  if (!body.is_object()) return std::nullopt;
  auto usage = body.find("usage");
  if (usage == body.end() || !usage->is_object()) return std::nullopt;
  auto details = usage->find("prompt_tokens_details");
  if (details == usage->end() || !details->is_object()) return std::nullopt;
  auto cached = details->find("cached_tokens");
  if (cached == details->end() || !cached->is_number_integer()) return std::nullopt;
  return cached->get<int64_t>();
}

// How an upstream answer that did not complete ended (outside the coroutines: GCC 12
// mishandles conditional temporaries in their frames).
std::string describe_unfinished(const Result<HttpResponse>& result) {
  if (!result.is_ok()) return result.status().message();
  if (!result->event_stream) return fmt::format("HTTP {}", result->status);
  return "the stream ended before [DONE]";
}

// One proxied stream between the upstream fetch and the writer to the client (one thread).
struct UpstreamStream {
  std::deque<std::string> events;
  bool done = false;
  bool client_gone = false;
  std::optional<Result<HttpResponse>> result;
};

// Named locals only: GCC 12 double-destroys temporaries (lambdas, results) in some co_await
// expressions.
asio::awaitable<void> run_upstream(HttpClient& client, HttpRequest up,
                                   std::shared_ptr<UpstreamStream> shared,
                                   std::shared_ptr<asio::steady_timer> wake) {
  EventHandler handler = [shared, wake](std::string_view data, Clock::time_point) {
    shared->events.emplace_back(data);
    wake->cancel();
  };
  Result<HttpResponse> result = co_await client.fetch(std::move(up), std::move(handler));
  shared->result.emplace(std::move(result));
  shared->done = true;
  wake->cancel();
}

}  // namespace

struct RouterServer::Impl {
  Impl(RouterOptions o, RouterModel m, HttpClient& c, InstanceSet& i, KvIndex& x, RoutingPolicy& p)
      : options(std::move(o)),
        model(std::move(m)),
        preparer(model.tokenizer, model.chat_template,
                 PreparerOptions{
                     {"router"}, model.max_context, /*trust_request_priority=*/true, JsonLimits{}}),
        client(c),
        instances(i),
        index(x),
        policy(p),
        acceptor(c.context()),
        signals(c.context(), SIGINT, SIGTERM),
        records(options.max_records) {
    if (options.planner) {
      planner.emplace(*options.planner);
      stats.planner = true;
    }
  }

  // --- plumbing -----------------------------------------------------------------------------
  using Response = http::response<http::string_body>;

  // Takes an lvalue: GCC 12 double-destroys temporaries in some co_await expressions.
  asio::awaitable<bool> write(beast::tcp_stream& stream, Response& res) {
    res.prepare_payload();
    beast::error_code ec;
    stream.expires_after(std::chrono::seconds(30));
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  Response make_response(unsigned version, bool keep_alive, int status, std::string content_type,
                         std::string body, const std::string& request_id = {}) {
    Response res{static_cast<http::status>(status), version};
    res.set(http::field::server, "infergrid-route");
    res.set(http::field::content_type, content_type);
    if (!request_id.empty()) res.set("X-Request-Id", request_id);
    res.keep_alive(keep_alive);
    res.body() = std::move(body);
    return res;
  }

  Response error_response(unsigned version, bool keep_alive, const ApiError& error,
                          const std::string& request_id = {}, std::string_view retry_after = {}) {
    Response res = make_response(version, keep_alive, error.http_status, "application/json",
                                 error.to_json(), request_id);
    if (!retry_after.empty()) res.set(http::field::retry_after, retry_after);
    return res;
  }

  ApiError read_limit_error(const beast::error_code& ec) const {
    if (ec == http::error::body_limit) {
      return api_error(413, fmt::format("the body is over {} bytes", options.max_body_bytes));
    }
    return api_error(431, "the request headers are too large");
  }

  // --- serving ------------------------------------------------------------------------------
  asio::awaitable<void> accept_loop() {
    while (!stopping) {
      beast::error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (stopping) break;
        asio::steady_timer backoff(client.context(), std::chrono::milliseconds(50));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      asio::co_spawn(client.context(), session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::error_code ec;
    stream.socket().set_option(tcp::no_delay(true), ec);
    beast::flat_buffer buffer;
    try {
      while (!stopping) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(options.max_body_bytes);
        parser.header_limit(64 << 10);
        stream.expires_after(std::chrono::seconds(120));
        co_await http::async_read(stream, buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::body_limit || ec == http::error::header_limit) {
          Response res = error_response(11, false, read_limit_error(ec));
          co_await write(stream, res);
          break;
        }
        if (ec) break;
        http::request<http::string_body> req = parser.release();
        const bool keep = co_await handle(stream, req);
        if (!keep || !req.keep_alive()) break;
      }
    } catch (const std::exception& e) {
      spdlog::warn("route: connection: {}", e.what());
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.socket().close(ec);
  }

  asio::awaitable<bool> handle(beast::tcp_stream& stream, http::request<http::string_body>& req) {
    const std::string path = path_of(req.target());
    if (req.method() == http::verb::post &&
        (path == "/v1/completions" || path == "/v1/chat/completions")) {
      co_return co_await proxy(
          stream, req, path == "/v1/chat/completions" ? Endpoint::kChat : Endpoint::kCompletions);
    }
    Response res = answer_directly(req);
    co_return co_await write(stream, res);
  }

  // Every endpoint but generation: answered from the router's own state.
  Response answer_directly(const http::request<http::string_body>& req) {
    const std::string target(req.target());
    const std::string path = path_of(target);
    const unsigned version = req.version();
    const bool keep = req.keep_alive();
    const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
    const auto not_allowed = [&](const char* allow) {
      Response res =
          error_response(version, keep, api_error(405, fmt::format("{} takes {}", path, allow)));
      res.set(http::field::allow, allow);
      return res;
    };
    const auto ok_json = [&](std::string body) {
      return make_response(version, keep, 200, "application/json", std::move(body));
    };
    if (path == "/v1/completions" || path == "/v1/chat/completions") return not_allowed("POST");
    const bool known = path == "/health" || path == "/v1/health" || path == "/v1/models" ||
                       path == "/metrics" || path == "/route/explain" ||
                       path == "/route/instances" || path == "/route/planner";
    if (!known) {
      return error_response(
          version, keep,
          api_error(404, fmt::format("no route for {} {}", std::string(req.method_string()),
                                     path.substr(0, 100))));
    }
    if (!get) return not_allowed("GET");
    if (path == "/health" || path == "/v1/health") {
      const bool any = !eligible_ids().empty();
      return make_response(version, keep, any ? 200 : 503, "application/json",
                           any ? R"({"status":"ok"})" : R"({"status":"no instance available"})");
    }
    if (path == "/v1/models") return ok_json(models_body());
    if (path == "/metrics") {
      return make_response(version, keep, 200, "text/plain; version=0.0.4; charset=utf-8",
                           stats.prometheus(instances, index, [&](const Instance& inst) {
                             return serves_our_model(inst) &&
                                    inst.eligible(Clock::now(), instances.options());
                           }));
    }
    if (path == "/route/instances") return ok_json(instances_body());
    if (path == "/route/planner") {
      if (!planner) {
        return error_response(version, keep,
                              api_error(404, "the planner is off (infergrid route --planner)"));
      }
      return ok_json(planner->state().dump());
    }
    const std::string id = query_param(target, "id").value_or("");
    const json* record = records.find(id);
    if (record == nullptr) {
      return error_response(
          version, keep,
          api_error(404,
                    fmt::format("no decision recorded for request id '{}' (the last {} are kept)",
                                id.substr(0, 100), options.max_records),
                    "id"));
    }
    return ok_json(record->dump());
  }

  std::vector<InstanceId> eligible_ids() {
    std::vector<InstanceId> ids;
    const auto now = Clock::now();
    for (const auto& inst : instances.instances()) {
      if (serves_our_model(*inst) && inst->eligible(now, instances.options()))
        ids.push_back(inst->id);
    }
    return ids;
  }

  bool serves_our_model(const Instance& inst) const {
    return inst.fingerprint == model.fingerprint && inst.block_size > 0;
  }

  std::string models_body() {
    json data = json::array();
    std::vector<std::string> seen;
    for (InstanceId id : eligible_ids()) {
      const std::string& name = instances.instances()[id]->model;
      if (std::find(seen.begin(), seen.end(), name) != seen.end()) continue;
      seen.push_back(name);
      data.push_back({{"id", name},
                      {"object", "model"},
                      {"created", 0},
                      {"owned_by", "infergrid"},
                      {"max_model_len", model.max_context}});
    }
    return json{{"object", "list"}, {"data", data}}.dump();
  }

  std::string instances_body() {
    json list = json::array();
    const auto now = Clock::now();
    for (const auto& inst : instances.instances()) {
      list.push_back(
          {{"id", inst->id},
           {"address", inst->address},
           {"health", health_name(inst->health)},
           {"wanted", inst->wanted},
           {"eligible", serves_our_model(*inst) && inst->eligible(now, instances.options())},
           {"model", inst->model},
           {"role", inst->role},
           {"kv_share", inst->kv_share},
           {"synced", inst->synced},
           {"seq", inst->seq},
           {"indexed_blocks", index.n_entries_of(inst->id)},
           {"reported_load", inst->reported_load},
           {"inflight", inst->inflight},
           {"connects", inst->connects},
           {"snapshots", inst->snapshots},
           {"last_error", inst->last_error}});
    }
    return json{{"instances", list}, {"indexed_blocks", index.n_blocks()}}.dump();
  }

  // --- admission ----------------------------------------------------------------------------
  // nullptr: admitted; else why not. In flight counts every class, so a full cluster of batch
  // work still leaves interactive requests the share batch may not use.
  const char* admit(PriorityClass priority) {
    double capacity = 0;
    double inflight = 0;
    for (InstanceId id : eligible_ids()) {
      capacity += options.max_inflight_per_instance;
      inflight += instances.instances()[id]->inflight;
    }
    if (capacity == 0) return nullptr;  // no instance: the routing answers 503
    const double share = priority == PriorityClass::kBatch      ? options.batch_share
                         : priority == PriorityClass::kStandard ? options.standard_share
                                                                : 1.0;
    if (inflight < share * capacity) return nullptr;
    switch (priority) {
      case PriorityClass::kBatch:
        return "the cluster is busy: batch requests are shed first; retry later";
      case PriorityClass::kStandard:
        return "the cluster is busy: standard requests are shed; retry later";
      case PriorityClass::kInteractive:
        return "the cluster is at capacity; retry later";
    }
    return nullptr;
  }

  // --- proxying -----------------------------------------------------------------------------
  asio::awaitable<bool> send_error(beast::tcp_stream& stream, unsigned version, bool keep,
                                   const ApiError& error, const std::string& request_id,
                                   const char* retry_after) {
    ++stats.requests_by_outcome[fmt::format("{}", error.http_status)];
    Response res =
        error_response(version, keep, error, request_id, retry_after != nullptr ? retry_after : "");
    co_return co_await write(stream, res);
  }

  asio::awaitable<bool> proxy(beast::tcp_stream& stream, http::request<http::string_body>& req,
                              Endpoint endpoint) {
    const unsigned version = req.version();
    const bool keep = req.keep_alive();
    std::string request_id(req["X-Request-Id"]);
    if (request_id.empty() || request_id.size() > 128) request_id = new_request_id();
    const auto fail = [&](const ApiError& e, const char* retry_after = nullptr) {
      return send_error(stream, version, keep, e, request_id, retry_after);
    };

    auto parsed = parse_api_request(req.body(), endpoint, JsonLimits{});
    if (auto* e = std::get_if<ApiError>(&parsed)) co_return co_await fail(*e);
    ApiRequest& api = std::get<ApiRequest>(parsed);
    const std::string model_name = api.model;
    const std::vector<InstanceId> serving = eligible_ids();
    if (!model_name.empty()) {
      bool known = false;
      for (InstanceId id : serving) known = known || instances.instances()[id]->model == model_name;
      if (!known) {
        const ApiError unknown =
            api_error(404,
                      fmt::format("the model '{}' is not served by any instance behind this router",
                                  model_name.substr(0, 100)),
                      "model", "model_not_found");
        co_return co_await fail(unknown);
      }
    }
    // The class: header first, then the body's field; standard when neither.
    nlohmann::ordered_json body = nlohmann::ordered_json::parse(req.body(), nullptr, false);
    PriorityClass priority = PriorityClass::kStandard;
    {
      std::string class_name(req["x-priority-class"]);
      if (class_name.empty() && body.is_object() && body.contains("priority_class")) {
        class_name = body["priority_class"].is_string() ? body["priority_class"].get<std::string>()
                                                        : std::string("(not a string)");
      }
      if (!class_name.empty()) {
        auto parsed_class = priority_class_from_name(class_name);
        if (!parsed_class) {
          const ApiError bad = api_error(
              400,
              fmt::format("priority class '{}' is not one of interactive, standard, batch",
                          class_name.substr(0, 100)),
              "priority_class");
          co_return co_await fail(bad);
        }
        priority = *parsed_class;
      }
    }
    if (const char* shed = admit(priority)) {
      ++stats.shed_by_class[std::string(priority_class_name(priority))];
      ApiError overloaded = api_error(429, shed, {}, "overloaded");
      overloaded.type = "rate_limit_error";
      co_return co_await fail(overloaded, "1");
    }
    ++stats.admitted_by_class[std::string(priority_class_name(priority))];
    api.model.clear();
    auto prepared = preparer.prepare(api, 0);
    if (auto* e = std::get_if<ApiError>(&prepared)) co_return co_await fail(*e);
    const PreparedRequest& p = std::get<PreparedRequest>(prepared);
    const std::vector<int32_t>& prompt = p.request.prompt;
    // What the instances get: the client's body, with the class as the engine's priority when
    // asked, and for a stream that can be continued elsewhere the token reports and a seed
    // (without one each instance would draw its own, and a continuation would not be the run
    // it continues).
    StreamState resumable;
    resumable.arrived = Clock::now();
    resumable.enabled = p.stream && p.n == 1 && body.is_object();
    bool rewrite_body = false;
    if (options.forward_priority && body.is_object()) {
      body["priority"] = priority == PriorityClass::kInteractive ? 1
                         : priority == PriorityClass::kBatch     ? -1
                                                                 : 0;
      rewrite_body = true;
    }
    if (resumable.enabled) {
      body["infergrid_report_tokens"] = true;
      if (!body.contains("seed") || body["seed"].is_null()) {
        body["seed"] = static_cast<int64_t>(seed_source() >> 1);
      }
      rewrite_body = true;
    }
    const std::string forwarded_body = rewrite_body ? body.dump() : std::string();

    // Keys over the whole prompt as the instances' prefix caches will see it.
    const int block_size =
        serving.empty() ? 16 : instances.instances()[serving.front()]->block_size;
    std::vector<uint64_t> keys;
    uint64_t parent = kRootBlockKey;
    for (size_t start = 0; start + static_cast<size_t>(block_size) <= prompt.size();
         start += block_size) {
      parent = block_key(parent, std::span(prompt).subspan(start, block_size), model.fingerprint);
      keys.push_back(parent);
    }
    std::string session(req["x-session-id"]);
    if (session.empty()) session = api.user;

    auto record = std::make_shared<json>(json{{"id", request_id},
                                              {"policy", policy_name(policy.options().policy)},
                                              {"prompt_tokens", prompt.size()},
                                              {"prompt_blocks", keys.size()},
                                              {"session", session},
                                              {"priority_class", priority_class_name(priority)},
                                              {"attempts", json::array()}});
    records.remember(request_id, record);

    std::vector<InstanceId> tried;
    std::optional<HttpResponse> last_error_response;
    std::string last_transport_error;
    for (int attempt = 0; attempt < options.max_attempts; ++attempt) {
      const auto now = Clock::now();
      std::vector<InstanceView> views(instances.instances().size());
      for (const auto& inst : instances.instances()) {
        InstanceView& v = views[inst->id];
        v.eligible = serves_our_model(*inst) && inst->eligible(now, instances.options()) &&
                     inst->block_size == block_size &&
                     (model_name.empty() || inst->model == model_name);
        v.stable_hash = inst->stable_hash;
        v.reported_load = inst->reported_load;
        v.inflight = inst->inflight;
        v.queued_prefill_tokens = inst->queued_prefill_tokens;
        v.tier_is_disk = true;  // instances announce their SSD tier only (kv_event_stream.h)
      }
      // Prefill instances only prefill, while anything else can take the request.
      bool other_than_prefill = false;
      for (const auto& inst : instances.instances()) {
        other_than_prefill =
            other_than_prefill || (views[inst->id].eligible && inst->role != "prefill");
      }
      if (other_than_prefill) {
        for (const auto& inst : instances.instances()) {
          if (inst->role == "prefill") views[inst->id].eligible = false;
        }
      }
      RouteRequest rr{keys, static_cast<int>(prompt.size()), block_size, session};
      const auto decide_start = Clock::now();
      RouteDecision decision = policy.choose(rr, views, index, tried);
      stats.record_decision_seconds(seconds_since(decide_start));
      ++stats.decisions[fmt::format("policy=\"{}\",reason=\"{}\"",
                                    policy_name(policy.options().policy), decision.reason)];
      json attempt_record = {{"reason", decision.reason}};
      json candidates = json::array();
      for (const CandidateScore& c : decision.candidates) {
        candidates.push_back({{"instance", instances.instances()[c.instance]->address},
                              {"engine_blocks", c.engine_blocks},
                              {"tier_blocks", c.tier_blocks},
                              {"load", c.load},
                              {"cost", c.cost},
                              {"within_slack", c.within_slack}});
      }
      attempt_record["candidates"] = std::move(candidates);
      if (!decision.instance) {
        (*record)["attempts"].push_back(std::move(attempt_record));
        break;
      }
      Instance& inst = *instances.instances()[*decision.instance];
      tried.push_back(inst.id);
      int predicted_cached = (decision.engine_blocks + decision.tier_blocks) * block_size;
      // Counted from the decision on, the prefill handoff's wait included: requests decided
      // meanwhile see this one, so a burst does not herd.
      ++inst.inflight;
      if (!resumable.header_sent && body.is_object() && options.pd_min_uncached_tokens > 0) {
        std::string target(req.target());
        const std::optional<int> handed = co_await prefill_handoff(
            inst, body, std::move(target), request_id, static_cast<int>(prompt.size()),
            predicted_cached, attempt_record);
        if (handed) predicted_cached = std::max(predicted_cached, *handed);
      }
      attempt_record["instance"] = inst.address;
      attempt_record["predicted_cached_tokens"] = predicted_cached;
      if (attempt > 0) ++stats.retries;
      stats.predicted_cached_tokens += predicted_cached;

      const double uncached =
          std::max<double>(0, static_cast<double>(prompt.size()) - predicted_cached);
      inst.queued_prefill_tokens += uncached;
      bool prefill_done = false;
      const auto prefill_finished = [&] {
        if (prefill_done) return;
        prefill_done = true;
        inst.queued_prefill_tokens = std::max(0.0, inst.queued_prefill_tokens - uncached);
      };

      HttpRequest up;
      up.method = "POST";
      up.host = inst.url.host;
      up.port = inst.url.port;
      up.target = inst.url.target(std::string(req.target()));
      if (resumable.header_sent) {
        // A continuation: the prompt plus every token the client's text stands for.
        ++stats.streams_resumed;
        body["infergrid_resume"] = resumable.tokens;
        up.body = body.dump();
        attempt_record["resumed_tokens"] = resumable.tokens.size();
      } else {
        up.body = forwarded_body.empty() ? req.body() : forwarded_body;
      }
      up.timeout = options.request_timeout;
      up.headers.emplace_back("X-Request-Id", request_id);
      if (auto auth = req[http::field::authorization]; !auth.empty()) {
        up.headers.emplace_back("Authorization", std::string(auth));
      }
      // (Not a ?: of two co_awaits: GCC 12 destroys such temporaries twice.)
      Outcome outcome;
      if (p.stream) {
        outcome = co_await stream_through(stream, req, up, request_id, resumable, prefill_finished);
      } else {
        outcome = co_await forward_whole(up, *record);
      }
      prefill_finished();
      --inst.inflight;
      if (outcome.actual_cached) {
        stats.actual_cached_tokens += *outcome.actual_cached;
        attempt_record["actual_cached_tokens"] = *outcome.actual_cached;
      }
      attempt_record["outcome"] = outcome.summary;
      (*record)["attempts"].push_back(std::move(attempt_record));
      if (outcome.kind == Outcome::kDone) {
        ++stats.requests_by_outcome[fmt::format("{}",
                                                outcome.response ? outcome.response->status : 200)];
        if (outcome.response) {  // a whole answer to write now
          Response res =
              make_response(version, keep, outcome.response->status,
                            outcome.response->content_type.empty() ? "application/json"
                                                                   : outcome.response->content_type,
                            std::move(outcome.response->body), request_id);
          co_return co_await write(stream, res);
        }
        observe_for_planner(resumable);
        co_return outcome.keep_connection;
      }
      if (outcome.kind == Outcome::kClientGone) {
        ++stats.requests_by_outcome["client_gone"];
        co_return false;
      }
      // Failed before anything reached the client, or mid-stream with a continuation
      // possible: another instance may do better.
      instances.mark_failed(inst.id, outcome.summary);
      if (outcome.response && !resumable.header_sent) {
        last_error_response = std::move(outcome.response);
      } else {
        last_transport_error = outcome.summary;
      }
    }
    if (resumable.header_sent) {
      // Tokens reached the client and no instance could continue: the stream ends with an
      // error event.
      ++stats.streams_failed_midway;
      ++stats.requests_by_outcome["failed_midway"];
      const std::string why = last_transport_error.empty()
                                  ? std::string("no instance left to continue it")
                                  : last_transport_error;
      spdlog::warn("route: stream {} failed mid-stream: {}", request_id, why);
      ApiError e = api_error(502, "the instance serving this stream failed: " + why);
      e.type = "upstream_error";
      std::string tail = "data: " + e.to_json() + "\n\n";
      co_return co_await end_stream(stream, std::move(tail));
    }
    if (last_error_response) {
      ++stats.requests_by_outcome[fmt::format("{}", last_error_response->status)];
      Response res = make_response(version, keep, last_error_response->status, "application/json",
                                   std::move(last_error_response->body), request_id);
      if (!last_error_response->retry_after.empty())
        res.set(http::field::retry_after, last_error_response->retry_after);
      co_return co_await write(stream, res);
    }
    ApiError e =
        api_error(503, last_transport_error.empty()
                           ? "no instance is available to serve this request"
                           : "every instance tried failed; the last: " + last_transport_error);
    e.type = "service_unavailable";
    co_return co_await fail(e, "1");
  }

  struct Outcome {
    enum Kind { kDone, kRetry, kClientGone } kind = kDone;
    std::optional<HttpResponse> response;  // kDone: a whole answer to write; kRetry: the error
    bool keep_connection = true;
    std::optional<int64_t> actual_cached;
    std::string summary;
  };

  asio::awaitable<Outcome> forward_whole(HttpRequest up, json& /*record*/) {
    Outcome out;
    auto result = co_await client.fetch(std::move(up));
    if (!result.is_ok()) {
      out.kind = Outcome::kRetry;
      out.summary = result.status().message();
      co_return out;
    }
    out.summary = fmt::format("HTTP {}", result->status);
    if (worth_retrying(result->status)) {
      out.kind = Outcome::kRetry;
      out.response = std::move(*result);
      co_return out;
    }
    out.actual_cached = cached_tokens_of(json::parse(result->body, nullptr, false));
    out.response = std::move(*result);
    co_return out;
  }

  // Conditional disaggregation: when `decode` would compute most of a long prompt, an eligible
  // prefill instance computes it first and the decode instance then loads its blocks instead
  // of computing them: through the shared DRAM tier when both write through to the same one
  // (the prefill instance answers once its blocks are written there), else streamed to the
  // decode instance's KV transfer port (it answers once the receiver confirmed them). The
  // prompt tokens the decode instance should then find cached, or nothing when the prompt was
  // not handed off; on any failure the decode instance computes it as without one.
  asio::awaitable<std::optional<int>> prefill_handoff(Instance& decode,
                                                      const nlohmann::ordered_json& body,
                                                      std::string target,
                                                      const std::string& request_id,
                                                      int prompt_tokens, int predicted_cached,
                                                      json& attempt_record) {
    const int uncached = prompt_tokens - predicted_cached;
    const int block_size = std::max(1, decode.block_size);
    const int full_blocks_tokens = prompt_tokens / block_size * block_size;
    if ((decode.kv_share.empty() && decode.kv_transfer_port <= 0) || decode.role == "prefill" ||
        uncached < options.pd_min_uncached_tokens || 2 * predicted_cached >= prompt_tokens) {
      co_return std::nullopt;
    }
    const auto now = Clock::now();
    Instance* prefill = nullptr;
    bool prefill_shares_dram = false;
    for (const auto& inst : instances.instances()) {
      // A prefill instance reads what it streams from its DRAM tier: it must have one.
      if (inst->role != "prefill" || inst->kv_share.empty() || inst->model != decode.model ||
          inst->block_size != decode.block_size || !serves_our_model(*inst) ||
          !inst->eligible(now, instances.options())) {
        continue;
      }
      const bool shares = inst->kv_share == decode.kv_share;
      if (!shares && decode.kv_transfer_port <= 0) continue;
      // One that shares the decode instance's DRAM tier first (no bytes cross a socket), then
      // the least loaded.
      const auto load = [](const Instance& i) {
        return std::max<double>(i.reported_load, i.inflight);
      };
      if (prefill == nullptr || (shares && !prefill_shares_dram) ||
          (shares == prefill_shares_dram && load(*inst) < load(*prefill))) {
        prefill = inst.get();
        prefill_shares_dram = shares;
      }
    }
    if (prefill == nullptr) co_return std::nullopt;

    // The same prompt, one token, whole: the prefill instance renders and tokenizes it as the
    // decode instance will, so the blocks it writes are the ones the decode instance looks for.
    static const char* const kNotForPrefill[] = {
        "stream",          "stream_options",        "n",    "logprobs",
        "top_logprobs",    "max_completion_tokens", "seed", "infergrid_report_tokens",
        "infergrid_resume"};
    nlohmann::ordered_json job = body;
    for (const char* field : kNotForPrefill) job.erase(field);
    job["max_tokens"] = 1;
    if (prefill_shares_dram) {
      job["infergrid_prefill_handoff"] = true;
    } else {
      const std::string& host = decode.url.host;
      const bool v6 = host.find(':') != std::string::npos && host.front() != '[';
      nlohmann::ordered_json handoff = nlohmann::ordered_json::object();
      handoff["transfer_to"] = v6 ? fmt::format("[{}]:{}", host, decode.kv_transfer_port)
                                  : fmt::format("{}:{}", host, decode.kv_transfer_port);
      handoff["deadline_ms"] =
          std::chrono::duration_cast<std::chrono::milliseconds>(options.request_timeout).count();
      handoff["lease_ms"] = 30000;
      job["infergrid_prefill_handoff"] = std::move(handoff);
    }
    HttpRequest up;
    up.method = "POST";
    up.host = prefill->url.host;
    up.port = prefill->url.port;
    up.target = prefill->url.target(target);
    up.body = job.dump();
    up.timeout = options.request_timeout;
    up.headers.emplace_back("X-Request-Id", request_id);
    ++prefill->inflight;
    prefill->queued_prefill_tokens += uncached;
    const auto start = Clock::now();
    Result<HttpResponse> result = co_await client.fetch(std::move(up));
    --prefill->inflight;
    prefill->queued_prefill_tokens = std::max(0.0, prefill->queued_prefill_tokens - uncached);
    const bool ok = result.is_ok() && result->status == 200;
    std::string outcome =
        result.is_ok() ? fmt::format("HTTP {}", result->status) : result.status().message();
    json record = {{"instance", prefill->address},
                   {"path", prefill_shares_dram ? "dram" : "tcp"},
                   {"outcome", outcome},
                   {"ms", seconds_since(start) * 1000}};
    std::optional<int> handed;
    if (ok && prefill_shares_dram) handed = full_blocks_tokens;
    if (ok && !prefill_shares_dram) {
      // What the receiver confirmed: the decode instance finds those blocks, computes the rest.
      const json answer = json::parse(result->body, nullptr, false);
      const json transfer =
          answer.is_object() ? answer.value("infergrid_transfer", json()) : json();
      record["transfer"] = transfer;
      const int accepted =
          transfer.is_object() && transfer.value("blocks_accepted", json()).is_number_integer()
              ? transfer["blocks_accepted"].get<int>()
              : 0;
      if (accepted > 0) handed = std::min(full_blocks_tokens, accepted * block_size);
      stats.kv_transfer_blocks += static_cast<uint64_t>(std::max(0, accepted));
      if (!transfer.is_object() || !transfer.value("ok", false)) {
        spdlog::warn(
            "route: the KV transfer from {} to {} failed ({}); the decode instance "
            "computes what did not arrive",
            prefill->address, decode.address,
            transfer.is_object() ? transfer.value("error", std::string()) : "no result");
      }
    }
    attempt_record["prefill"] = std::move(record);
    ++stats.pd_handoffs[!ok ? "failed" : handed ? "ok" : "transfer_failed"];
    if (!ok) {
      spdlog::warn("route: prefill handoff to {} failed ({}); the decode instance computes it",
                   prefill->address, outcome);
      if (!result.is_ok() || worth_retrying(result->status)) {
        instances.mark_failed(prefill->id, outcome);
      }
    }
    co_return handed;
  }

  // What one client stream has been sent so far, across the attempts that serve it.
  struct StreamState {
    bool enabled = false;         // one choice: a failed instance's stream can be continued
    bool header_sent = false;     // the client has the 200 and maybe events: no more retries
    std::vector<int32_t> tokens;  // the ids behind every chunk the client has
    bool finished = false;        // a finish_reason reached the client
    json id, created;             // of the first instance's chunks, kept by continuations
    // For the planner: when the request arrived, and its first and last tokens reached us.
    Clock::time_point arrived;
    std::optional<Clock::time_point> first_token_at, last_token_at;
  };

  // A finished stream's TTFT and time per output token, for the planner (replayed tokens of a
  // continuation count: the client waited for them).
  void observe_for_planner(const StreamState& st) {
    if (!planner || !st.first_token_at) return;
    const auto ms = [](Clock::duration d) {
      return std::chrono::duration<double, std::milli>(d).count();
    };
    // Stamped with the stream's end, when both are known: a TTFT stamped with its first token
    // would leave the window before a long stream ends and never count.
    const auto now = Clock::now();
    planner->observe_ttft(now, ms(*st.first_token_at - st.arrived));
    if (st.tokens.size() > 1) {
      planner->observe_tpot(now, ms(*st.last_token_at - *st.first_token_at) /
                                     static_cast<double>(st.tokens.size() - 1));
    }
  }

  // Every interval: the planner's decision, and the conversion it asks for (POST /admin/role
  // to the least loaded instance of the side that gives one up; a prefill instance needs a
  // DRAM tier, so only decode instances with one can become prefill instances).
  asio::awaitable<void> planner_loop() {
    asio::steady_timer timer(client.context());
    beast::error_code ec;
    while (!stopping) {
      timer.expires_after(planner->options().interval);
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (stopping) break;
      const auto now = Clock::now();
      std::vector<Instance*> prefills, decodes;
      for (const auto& inst : instances.instances()) {
        if (!serves_our_model(*inst) || !inst->eligible(now, instances.options())) continue;
        if (inst->role == "prefill") prefills.push_back(inst.get());
        if (inst->role == "decode") decodes.push_back(inst.get());
      }
      const PlannerDecision decision =
          planner->step(now, static_cast<int>(prefills.size()), static_cast<int>(decodes.size()));
      ++stats.planner_decisions[planner_decision_name(decision.kind)];
      if (decision.kind == PlannerDecision::kHold) continue;
      const bool to_prefill = decision.kind == PlannerDecision::kToPrefill;
      Instance* target = nullptr;
      for (Instance* inst : to_prefill ? decodes : prefills) {
        if (to_prefill && inst->kv_share.empty()) continue;
        const auto load = [](const Instance& i) {
          return std::max<double>(i.reported_load, i.inflight);
        };
        if (target == nullptr || load(*inst) < load(*target)) target = inst;
      }
      const std::string role = to_prefill ? "prefill" : "decode";
      if (target == nullptr) {
        spdlog::warn(
            "planner: {}, but no decode instance has the DRAM tier a prefill instance "
            "needs",
            decision.reason);
        continue;
      }
      HttpRequest up;
      up.method = "POST";
      up.host = target->url.host;
      up.port = target->url.port;
      up.target = target->url.target("/admin/role");
      up.body = json{{"role", role}}.dump();
      up.timeout = std::chrono::seconds(5);
      const std::string address = target->address;
      Result<HttpResponse> result = co_await client.fetch(std::move(up));
      const bool ok = result.is_ok() && result->status == 200;
      ++stats.planner_conversions[fmt::format("to=\"{}\",result=\"{}\"", role,
                                              ok ? "ok" : "failed")];
      if (!ok) {
        spdlog::warn(
            "planner: converting {} to {} failed ({})", address, role,
            result.is_ok() ? fmt::format("HTTP {}", result->status) : result.status().message());
        continue;
      }
      // The instance may be gone from the set by now: look it up again.
      for (const auto& inst : instances.instances()) {
        if (inst->address == address) inst->role = role;
      }
      planner->converted(Clock::now());
      spdlog::info("planner: {} is now a {} instance: {}", address, role, decision.reason);
    }
  }

  // The stream's tail: `tail` (an error event, or nothing) and [DONE], then the last chunk.
  asio::awaitable<bool> end_stream(beast::tcp_stream& stream, std::string tail) {
    tail += "data: [DONE]\n\n";
    beast::error_code ec;
    stream.expires_after(std::chrono::seconds(30));
    co_await asio::async_write(stream, http::make_chunk(asio::buffer(tail)),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (!ec)
      co_await asio::async_write(stream, http::make_chunk_last(),
                                 asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  // One upstream event as the client gets it: the instance's token report taken out (into
  // st.tokens), and in a continuation the first instance's id and created.
  static std::string client_event(std::string data, StreamState& st, bool continuation,
                                  std::optional<int64_t>& actual_cached) {
    json chunk = json::parse(data, nullptr, false);
    if (!chunk.is_object()) return data;
    if (auto cached = cached_tokens_of(chunk)) actual_cached = cached;
    bool changed = false;
    if (auto it = chunk.find("infergrid_tokens"); it != chunk.end()) {
      if (it->is_array()) {
        for (const json& t : *it) {
          if (t.is_number_integer()) st.tokens.push_back(t.get<int32_t>());
        }
        if (!it->empty()) {
          const auto now = Clock::now();
          if (!st.first_token_at) st.first_token_at = now;
          st.last_token_at = now;
        }
      }
      chunk.erase(it);
      changed = true;
    }
    if (continuation && !st.id.is_null()) {
      chunk["id"] = st.id;
      chunk["created"] = st.created;
      changed = true;
    } else if (st.id.is_null() && chunk.contains("id")) {
      st.id = chunk["id"];
      st.created = chunk.value("created", json(0));
    }
    if (auto choices = chunk.find("choices"); choices != chunk.end() && choices->is_array()) {
      for (const json& c : *choices) {
        if (c.is_object() && c.contains("finish_reason") && !c["finish_reason"].is_null())
          st.finished = true;
      }
    }
    if (!changed) return data;
    return chunk.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // Streams one upstream answer to the client. The SSE header goes out with the first event, so
  // until then a failure can still be retried elsewhere unseen; after it, a failure of a
  // continuable stream is kRetry too (the caller continues it elsewhere), else the stream ends
  // with an error event.
  template <typename OnFirst>
  asio::awaitable<Outcome> stream_through(beast::tcp_stream& stream,
                                          const http::request<http::string_body>& req,
                                          HttpRequest up, const std::string& request_id,
                                          StreamState& st, OnFirst on_first_event) {
    Outcome out;
    const bool continuation = st.header_sent;
    auto shared = std::make_shared<UpstreamStream>();
    auto wake = std::make_shared<asio::steady_timer>(client.context());
    wake->expires_at(asio::steady_timer::time_point::max());
    up.idle_timeout = options.upstream_idle_timeout;
    up.should_continue = [shared] { return !shared->client_gone; };
    asio::co_spawn(client.context(), run_upstream(client, std::move(up), shared, wake),
                   asio::detached);

    http::response<http::empty_body> header{http::status::ok, req.version()};
    header.set(http::field::server, "infergrid-route");
    header.set(http::field::content_type, "text/event-stream");
    header.set(http::field::cache_control, "no-cache");
    header.set("X-Request-Id", request_id);
    header.keep_alive(req.keep_alive());
    header.chunked(true);
    http::response_serializer<http::empty_body> serializer{header};
    beast::error_code ec;
    const auto client_gone = [&] {
      shared->client_gone = true;
      out.kind = Outcome::kClientGone;
      out.summary = "the client went away";
    };
    bool first_event = true;
    while (true) {
      if (shared->events.empty()) {
        if (shared->done) break;
        wake->expires_at(asio::steady_timer::time_point::max());
        co_await wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (first_event) {
        first_event = false;
        on_first_event();
      }
      if (!st.header_sent) {
        stream.expires_after(std::chrono::seconds(30));
        co_await http::async_write_header(stream, serializer,
                                          asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          client_gone();
          break;
        }
        st.header_sent = true;
      }
      std::string raw = std::move(shared->events.front());
      shared->events.pop_front();
      const std::string data = client_event(std::move(raw), st, continuation, out.actual_cached);
      const std::string frame = "data: " + data + "\n\n";
      stream.expires_after(std::chrono::seconds(30));
      co_await asio::async_write(stream, http::make_chunk(asio::buffer(frame)),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        client_gone();
        break;
      }
    }
    if (out.kind == Outcome::kClientGone) {
      while (!shared->done) {  // the fetch sees client_gone at its next piece and ends
        wake->expires_at(asio::steady_timer::time_point::max());
        co_await wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      co_return out;
    }
    Result<HttpResponse>& result = *shared->result;
    const bool complete = result.is_ok() && result->saw_done;
    if (!st.header_sent) {
      if (result.is_ok() && !result->event_stream) {  // an error answer (or a whole body)
        out.summary = fmt::format("HTTP {}", result->status);
        if (worth_retrying(result->status)) out.kind = Outcome::kRetry;
        out.response = std::move(*result);
        co_return out;
      }
      if (!complete) {
        out.kind = Outcome::kRetry;
        out.summary = describe_unfinished(result);
        co_return out;
      }
      co_await http::async_write_header(stream, serializer,
                                        asio::redirect_error(asio::use_awaitable, ec));
      st.header_sent = true;
    }
    if (!complete && st.finished) {
      // The end already reached the client (only the usage chunk or [DONE] was lost).
      out.summary = "HTTP 200 stream (its end lost: " + describe_unfinished(result) + ")";
      std::string no_tail;
      out.keep_connection = co_await end_stream(stream, std::move(no_tail));
      co_return out;
    }
    if (!complete) {
      std::string why = describe_unfinished(result);
      if (result.is_ok() && !result->event_stream && !result->body.empty()) {
        why += ": " + result->body.substr(0, 300);
      }
      out.summary = "failed mid-stream: " + why;
      spdlog::warn("route: {}", out.summary);
      if (st.enabled) {
        out.kind = Outcome::kRetry;  // the caller continues it on another instance
        co_return out;
      }
      ++stats.streams_failed_midway;
      ApiError e = api_error(502, "the instance serving this stream failed: " + why);
      e.type = "upstream_error";
      std::string tail = "data: " + e.to_json() + "\n\n";
      out.keep_connection = co_await end_stream(stream, std::move(tail));
      co_return out;
    }
    out.summary = continuation ? "HTTP 200 stream (continued)" : "HTTP 200 stream";
    std::string no_tail;
    out.keep_connection = co_await end_stream(stream, std::move(no_tail));
    co_return out;
  }

  RouterOptions options;
  RouterModel model;
  RequestPreparer preparer;
  HttpClient& client;
  InstanceSet& instances;
  KvIndex& index;
  RoutingPolicy& policy;
  tcp::acceptor acceptor;
  asio::signal_set signals;
  bool stopping = false;

  DecisionRecords records;
  RouterStats stats;
  std::optional<PdPlanner> planner;
  std::mt19937_64 seed_source{std::random_device{}()};

  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stop_requested = false;
};

RouterServer::RouterServer(RouterOptions options, RouterModel model, HttpClient& client,
                           InstanceSet& instances, KvIndex& index, RoutingPolicy& policy)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(model), client, instances, index,
                                   policy)) {}

RouterServer::~RouterServer() {
  // Close the acceptor on its thread; sessions still running end with the client's thread.
  auto done = asio::co_spawn(
      impl_->client.context(),
      [impl = impl_.get()]() -> asio::awaitable<void> {
        impl->stopping = true;
        beast::error_code ec;
        impl->acceptor.close(ec);
        impl->signals.cancel(ec);
        co_return;
      },
      asio::use_future);
  done.wait();
}

Status RouterServer::start() {
  Impl& m = *impl_;
  std::promise<Status> bound;
  auto future = bound.get_future();
  asio::post(m.client.context(), [&] {
    beast::error_code ec;
    auto address = asio::ip::make_address(m.options.host, ec);
    if (ec) {
      bound.set_value(make_error(StatusCode::kInvalidArgument, "--host '{}': {}", m.options.host,
                                 ec.message()));
      return;
    }
    tcp::endpoint endpoint(address, static_cast<unsigned short>(m.options.port));
    m.acceptor.open(endpoint.protocol(), ec);
    if (!ec) m.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) m.acceptor.bind(endpoint, ec);
    if (!ec) m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      bound.set_value(make_error(StatusCode::kIoError, "cannot listen on {}:{}: {}", m.options.host,
                                 m.options.port, ec.message()));
      return;
    }
    port_ = m.acceptor.local_endpoint().port();
    asio::co_spawn(m.client.context(), m.accept_loop(), asio::detached);
    if (m.planner) asio::co_spawn(m.client.context(), m.planner_loop(), asio::detached);
    m.signals.async_wait([this](const beast::error_code& ec, int) {
      if (!ec) request_shutdown();
    });
    bound.set_value(Status::ok());
  });
  return future.get();
}

void RouterServer::run() {
  std::unique_lock lock(impl_->stop_mutex);
  impl_->stop_cv.wait(lock, [&] { return impl_->stop_requested; });
}

void RouterServer::request_shutdown() {
  {
    std::lock_guard lock(impl_->stop_mutex);
    impl_->stop_requested = true;
  }
  impl_->stop_cv.notify_all();
}

}  // namespace infergrid
