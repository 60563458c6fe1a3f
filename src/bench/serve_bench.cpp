#include "bench/serve_bench.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <queue>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "net/http_client.h"

namespace infergrid {

namespace {

namespace asio = boost::asio;
using nlohmann::json;

constexpr int kDefaultClosedLoopConcurrency = 8;
constexpr uint64_t kSaltArrivals = 0x6172'7269'7665'0005ULL;

std::string truncated(std::string_view s, size_t n = 200) {
  return s.size() <= n ? std::string(s) : std::string(s.substr(0, n)) + "...";
}

// The message of an OpenAI-style error body, else the start of the body.
std::string http_error_message(int status, const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    if (auto e = j.find("error"); e != j.end()) {
      if (e->is_object() && e->contains("message") && (*e)["message"].is_string()) {
        return fmt::format("HTTP {}: {}", status, (*e)["message"].get<std::string>());
      }
      if (e->is_string()) return fmt::format("HTTP {}: {}", status, e->get<std::string>());
    }
  }
  return fmt::format("HTTP {}: {}", status, truncated(body));
}

// A request waiting to be sent. Ties in ready time go out in the order the jobs were made.
struct Job {
  double ready_s = 0;  // relative to the start of the run
  uint64_t seq = 0;
  size_t record = 0;
  int conversation = -1;  // multi-turn only
  int turn = 0;
  bool operator>(const Job& o) const { return std::tie(ready_s, seq) > std::tie(o.ready_s, o.seq); }
};

// What one streamed response has delivered so far.
struct StreamState {
  Clock::time_point sent{};
  Clock::time_point last_content{};
  bool got_content = false;
  int content_chunks = 0;
  std::string text;
  std::string error;  // the first problem seen in the stream
};

// Runs the whole benchmark on the HTTP client's I/O thread, so the scheduling state needs no
// locks: the dispatcher and every request coroutine interleave only at co_await points.
class Runner {
 public:
  Runner(HttpClient& client, const ServeBenchOptions& options, Url url, std::string model,
         const Workload& workload)
      : client_(client),
        options_(options),
        url_(std::move(url)),
        model_(std::move(model)),
        workload_(workload),
        chat_(workload.kind == WorkloadKind::kMultiTurn || options.endpoint == ApiEndpoint::kChat),
        wake_(client.context()) {
    records_.resize(workload.total_requests());
    size_t offset = workload.requests.size();
    for (const Conversation& c : workload.conversations) {
      conversation_offsets_.push_back(offset);
      for (size_t t = 0; t < c.user_turns.size(); ++t) {
        records_[offset + t].turn = static_cast<int>(t) + 1;
      }
      offset += c.user_turns.size();
    }
    answers_.resize(workload.conversations.size());
    if (options.request_rate > 0 || workload.kind == WorkloadKind::kTrace) {
      max_in_flight_ = options.concurrency > 0 ? static_cast<size_t>(options.concurrency)
                                               : std::numeric_limits<size_t>::max();
    } else {
      max_in_flight_ = static_cast<size_t>(options.concurrency > 0 ? options.concurrency
                                                                   : kDefaultClosedLoopConcurrency);
    }
    show_progress_ = options.progress && isatty(STDERR_FILENO);
  }

  asio::awaitable<void> run() {
    start_ = Clock::now();
    last_end_ = start_;
    schedule_initial_jobs();
    boost::system::error_code ec;
    while (finished_ < records_.size()) {
      if (!pending_.empty() && in_flight_ < max_in_flight_) {
        const Clock::time_point due = time_at(pending_.top().ready_s);
        if (due <= Clock::now()) {
          Job job = pending_.top();
          pending_.pop();
          ++in_flight_;
          asio::co_spawn(client_.context(), send(job), asio::detached);
          continue;
        }
        wake_.expires_at(due);
      } else {
        wake_.expires_at(Clock::time_point::max());
      }
      // Completions cancel the timer to wake us early.
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (show_progress_) std::fprintf(stderr, "\r\033[K");
  }

  std::vector<RequestRecord>& records() { return records_; }
  double duration_s() const { return std::chrono::duration<double>(last_end_ - start_).count(); }

 private:
  Clock::time_point time_at(double offset_s) const {
    return start_ +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(offset_s));
  }

  void push(Job job) {
    job.seq = next_seq_++;
    pending_.push(job);
  }

  // Arrival times: all at once for a closed loop (the in-flight cap paces them), Poisson gaps
  // for an open loop, the trace's own timestamps for a trace.
  void schedule_initial_jobs() {
    std::mt19937_64 rng(options_.workload.seed ^ kSaltArrivals);
    double poisson_s = 0;
    const auto next_arrival = [&]() {
      if (options_.request_rate <= 0) return 0.0;
      const double t = poisson_s;
      const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
      poisson_s += -std::log1p(-u) / options_.request_rate;
      return t;
    };
    for (size_t i = 0; i < workload_.requests.size(); ++i) {
      Job job;
      job.record = i;
      job.ready_s = workload_.kind == WorkloadKind::kTrace
                        ? workload_.requests[i].trace_time_ms / 1000.0 * options_.time_scale
                        : next_arrival();
      push(job);
    }
    for (size_t c = 0; c < workload_.conversations.size(); ++c) {
      Job job;
      job.record = conversation_offsets_[c];
      job.conversation = static_cast<int>(c);
      job.ready_s = next_arrival();
      push(job);
    }
  }

  std::string request_body(const Job& job, int& output_tokens) const {
    json body;
    body["model"] = model_;
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    body["ignore_eos"] = true;
    body["temperature"] = options_.temperature.value_or(0.0);
    if (job.conversation >= 0) {
      const Conversation& conv = workload_.conversations[static_cast<size_t>(job.conversation)];
      const auto& answers = answers_[static_cast<size_t>(job.conversation)];
      output_tokens = conv.output_tokens[static_cast<size_t>(job.turn)];
      json messages = json::array();
      if (!conv.system.empty()) messages.push_back({{"role", "system"}, {"content", conv.system}});
      for (int t = 0; t < job.turn; ++t) {
        messages.push_back(
            {{"role", "user"}, {"content", conv.user_turns[static_cast<size_t>(t)]}});
        messages.push_back({{"role", "assistant"}, {"content", answers[static_cast<size_t>(t)]}});
      }
      messages.push_back(
          {{"role", "user"}, {"content", conv.user_turns[static_cast<size_t>(job.turn)]}});
      body["messages"] = std::move(messages);
    } else {
      const WorkloadRequest& r = workload_.requests[job.record];
      output_tokens = r.output_tokens;
      if (chat_) {
        json messages = json::array();
        if (!r.system.empty()) messages.push_back({{"role", "system"}, {"content", r.system}});
        messages.push_back({{"role", "user"}, {"content", r.user}});
        body["messages"] = std::move(messages);
      } else {
        body["prompt"] = r.system.empty() ? r.user : r.system + "\n\n" + r.user;
      }
    }
    body["max_tokens"] = output_tokens;
    return body.dump();
  }

  void on_event(StreamState& st, RequestRecord& rec, std::string_view data,
                Clock::time_point arrived) const {
    if (!st.error.empty()) return;
    const json j = json::parse(data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      st.error = "stream event is not a JSON object: " + truncated(data);
      return;
    }
    if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
      st.error = "error in stream: " + truncated(e->dump());
      return;
    }
    if (auto choices = j.find("choices");
        choices != j.end() && choices->is_array() && !choices->empty()) {
      const json& choice = (*choices)[0];
      const json* text = nullptr;
      if (chat_) {
        if (auto delta = choice.find("delta"); delta != choice.end() && delta->is_object()) {
          if (auto content = delta->find("content"); content != delta->end()) text = &*content;
        }
      } else if (auto t = choice.find("text"); t != choice.end()) {
        text = &*t;
      }
      if (text != nullptr && text->is_string() && !text->get_ref<const std::string&>().empty()) {
        if (!st.got_content) {
          rec.ttft_s = std::chrono::duration<double>(arrived - st.sent).count();
          st.got_content = true;
        } else {
          rec.itl_s.push_back(std::chrono::duration<double>(arrived - st.last_content).count());
        }
        st.last_content = arrived;
        ++st.content_chunks;
        st.text += text->get_ref<const std::string&>();
      }
    }
    if (auto usage = j.find("usage"); usage != j.end() && usage->is_object()) {
      rec.prompt_tokens = usage->value("prompt_tokens", 0);
      rec.completion_tokens = usage->value("completion_tokens", 0);
      rec.usage_reported = true;
      if (auto details = usage->find("prompt_tokens_details");
          details != usage->end() && details->is_object()) {
        if (auto cached = details->find("cached_tokens");
            cached != details->end() && cached->is_number_integer()) {
          rec.cached_tokens = cached->get<int>();
        }
      }
    }
  }

  static void finish_record(RequestRecord& rec, const StreamState& st,
                            const Result<HttpResponse>& result) {
    const Clock::time_point end = result.is_ok() ? result->end_time : Clock::now();
    rec.e2e_s = std::chrono::duration<double>(end - st.sent).count();
    if (!result.is_ok()) {
      rec.error = result.status().message();
    } else if (result->status != 200) {
      rec.error = http_error_message(result->status, result->body);
    } else if (!result->event_stream) {
      rec.error =
          fmt::format("expected a text/event-stream response, got '{}'", result->content_type);
    } else if (!st.error.empty()) {
      rec.error = st.error;
    } else if (!result->saw_done) {
      rec.error = "stream ended without data: [DONE]";
    } else {
      rec.success = true;
    }
    if (!rec.success) return;
    if (!rec.usage_reported) rec.completion_tokens = st.content_chunks;
    // Tokens may all decode to empty text (partial UTF-8); then the answer is first seen whole.
    if (!st.got_content) rec.ttft_s = rec.e2e_s;
  }

  asio::awaitable<void> send(Job job) {
    RequestRecord& rec = records_[job.record];
    HttpRequest request;
    request.method = "POST";
    request.host = url_.host;
    request.port = url_.port;
    request.target = url_.target(chat_ ? "/v1/chat/completions" : "/v1/completions");
    request.body = request_body(job, rec.requested_output_tokens);
    request.timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.timeout_s * 1000));
    StreamState st;
    st.sent = Clock::now();
    rec.start_s = std::chrono::duration<double>(st.sent - start_).count();
    Result<HttpResponse> result = co_await client_.fetch(
        std::move(request),
        [&](std::string_view data, Clock::time_point at) { on_event(st, rec, data, at); });
    finish_record(rec, st, result);
    last_end_ = std::max(last_end_, Clock::now());
    ++finished_;
    --in_flight_;
    if (job.conversation >= 0) continue_conversation(job, rec, std::move(st.text));
    report_progress();
    wake_.cancel();
  }

  void continue_conversation(const Job& job, const RequestRecord& rec, std::string answer) {
    const Conversation& conv = workload_.conversations[static_cast<size_t>(job.conversation)];
    const int turns = static_cast<int>(conv.user_turns.size());
    if (job.turn + 1 >= turns) return;
    if (!rec.success) {
      // Without the answer there is no history to send; the remaining turns are not sent.
      for (int t = job.turn + 1; t < turns; ++t) {
        RequestRecord& skipped = records_[job.record + static_cast<size_t>(t - job.turn)];
        skipped.error = "not sent: an earlier turn of its conversation failed";
        skipped.requested_output_tokens = conv.output_tokens[static_cast<size_t>(t)];
        ++finished_;
      }
      return;
    }
    answers_[static_cast<size_t>(job.conversation)].push_back(std::move(answer));
    Job next = job;
    next.turn = job.turn + 1;
    next.record = job.record + 1;
    next.ready_s = std::chrono::duration<double>(Clock::now() - start_).count() +
                   options_.think_time_ms / 1000.0;
    push(next);
  }

  void report_progress() {
    if (!show_progress_) return;
    const Clock::time_point now = Clock::now();
    if (finished_ < records_.size() && now - last_progress_ < std::chrono::milliseconds(250)) {
      return;
    }
    last_progress_ = now;
    size_t failed = 0;
    for (size_t i = 0; i < records_.size(); ++i) failed += !records_[i].error.empty();
    std::fprintf(stderr, "\r\033[K%zu/%zu requests done, %zu failed, %zu in flight", finished_,
                 records_.size(), failed, in_flight_);
    std::fflush(stderr);
  }

  HttpClient& client_;
  const ServeBenchOptions& options_;
  const Url url_;
  const std::string model_;
  const Workload& workload_;
  const bool chat_;
  std::vector<RequestRecord> records_;             // sized once: request coroutines hold references
  std::vector<size_t> conversation_offsets_;       // first record of each conversation
  std::vector<std::vector<std::string>> answers_;  // per conversation, per finished turn
  std::priority_queue<Job, std::vector<Job>, std::greater<Job>> pending_;
  uint64_t next_seq_ = 0;
  size_t max_in_flight_ = 0;
  size_t in_flight_ = 0;
  size_t finished_ = 0;
  asio::steady_timer wake_;
  Clock::time_point start_{};
  Clock::time_point last_end_{};
  bool show_progress_ = false;
  Clock::time_point last_progress_{};
};

Status validate(const ServeBenchOptions& o) {
  if (o.concurrency < 0) return make_error(StatusCode::kInvalidArgument, "--concurrency < 0");
  if (!(o.request_rate >= 0)) {
    return make_error(StatusCode::kInvalidArgument, "--request-rate must be >= 0");
  }
  if (!(o.timeout_s > 0))
    return make_error(StatusCode::kInvalidArgument, "--timeout-s must be > 0");
  if (!(o.time_scale > 0)) {
    return make_error(StatusCode::kInvalidArgument, "--time-scale must be > 0");
  }
  if (!(o.think_time_ms >= 0)) {
    return make_error(StatusCode::kInvalidArgument, "--think-time-ms must be >= 0");
  }
  if (o.temperature && !(*o.temperature >= 0)) {
    return make_error(StatusCode::kInvalidArgument, "--temperature must be >= 0");
  }
  if (o.workload.kind == WorkloadKind::kTrace && o.request_rate > 0) {
    return make_error(StatusCode::kInvalidArgument,
                      "--request-rate does not apply to a trace, which has its own timestamps "
                      "(see --time-scale)");
  }
  return Status::ok();
}

Result<std::string> discover_model(HttpClient& client, const Url& url) {
  HttpRequest request;
  request.host = url.host;
  request.port = url.port;
  request.target = url.target("/v1/models");
  request.timeout = std::chrono::seconds(30);
  auto response = client.fetch_sync(request);
  const auto fail = [&](const std::string& why) {
    return make_error(StatusCode::kUnavailable,
                      "cannot get a model name from GET {}/v1/models ({}); pass --model",
                      url.to_string(), why);
  };
  if (!response.is_ok()) return fail(response.status().message());
  if (response->status != 200) return fail(http_error_message(response->status, response->body));
  const json j = json::parse(response->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("data") || !j["data"].is_array() ||
      j["data"].empty() || !j["data"][0].is_object() || !j["data"][0].contains("id") ||
      !j["data"][0]["id"].is_string()) {
    return fail("no data[0].id in " + truncated(response->body));
  }
  return j["data"][0]["id"].get<std::string>();
}

// Reads /metrics; a server without one (or without our counters) is not an error.
std::optional<ServerCounters> read_metrics(HttpClient& client, const Url& url, std::string& error) {
  HttpRequest request;
  request.host = url.host;
  request.port = url.port;
  request.target = url.target("/metrics");
  request.timeout = std::chrono::seconds(30);
  auto response = client.fetch_sync(request);
  if (!response.is_ok()) {
    error = response.status().message();
    return std::nullopt;
  }
  if (response->status != 200) {
    error = fmt::format("GET /metrics: HTTP {}", response->status);
    return std::nullopt;
  }
  return parse_prometheus_counters(response->body);
}

std::string describe_arrivals(const ServeBenchOptions& o, WorkloadKind kind) {
  std::string cap = o.concurrency > 0 ? fmt::format("at most {} in flight", o.concurrency)
                                      : std::string("no cap on requests in flight");
  std::string s;
  if (kind == WorkloadKind::kTrace) {
    s = fmt::format("trace timestamps x {}, {}", o.time_scale, cap);
  } else if (o.request_rate > 0) {
    s = fmt::format("Poisson {} {}/s, {}", o.request_rate,
                    kind == WorkloadKind::kMultiTurn ? "conversations" : "requests", cap);
  } else {
    s = fmt::format("closed loop, concurrency {}",
                    o.concurrency > 0 ? o.concurrency : kDefaultClosedLoopConcurrency);
  }
  if (kind == WorkloadKind::kMultiTurn && o.think_time_ms > 0) {
    s += fmt::format(", think time {} ms", o.think_time_ms);
  }
  return s;
}

}  // namespace

Result<LoadReport> run_serve_bench(const ServeBenchOptions& options) {
  IG_RETURN_IF_ERROR(validate(options));
  IG_ASSIGN_OR_RETURN(Url url, Url::parse(options.url));
  IG_ASSIGN_OR_RETURN(Workload workload, make_workload(options.workload));
  HttpClient client;
  std::string model = options.model;
  if (model.empty()) {
    IG_ASSIGN_OR_RETURN(model, discover_model(client, url));
  }

  MetricsCheck check;
  if (options.check_metrics) check.before = read_metrics(client, url, check.error);

  Runner runner(client, options, url, model, workload);
  asio::co_spawn(client.context(), runner.run(), asio::use_future).get();

  size_t n_success = 0;
  for (const RequestRecord& r : runner.records()) n_success += r.success;
  if (options.check_metrics && check.before) {
    // A server may count a request just after sending its last byte; give it a moment.
    for (int attempt = 0; attempt < 20; ++attempt) {
      check.after = read_metrics(client, url, check.error);
      const auto delta = check.delta(&ServerCounters::request_success);
      if (!check.after || !delta || *delta >= static_cast<double>(n_success)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  LoadReport report = summarize(runner.records(), runner.duration_s(), options.slo);
  report.info.url = url.to_string();
  report.info.model = model;
  report.info.workload = workload_kind_name(workload.kind);
  const bool chat =
      workload.kind == WorkloadKind::kMultiTurn || options.endpoint == ApiEndpoint::kChat;
  report.info.endpoint = chat ? "chat" : "completions";
  report.info.arrivals = describe_arrivals(options, workload.kind);
  report.info.seed = options.workload.seed;
  if (options.check_metrics) report.metrics = std::move(check);
  return report;
}

}  // namespace infergrid
