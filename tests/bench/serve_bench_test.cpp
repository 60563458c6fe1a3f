// `bench serve` end to end against a fake OpenAI-compatible server that streams a known number
// of tokens and keeps /metrics counters: what the client reports must match what the server did.
#include "bench/serve_bench.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "net/fake_server.h"

namespace infergrid {
namespace {

using nlohmann::json;
using testing::FakeReply;
using testing::FakeRequest;
using testing::FakeServer;

int word_count(const std::string& s) {
  std::istringstream in(s);
  int n = 0;
  std::string w;
  while (in >> w) ++n;
  return n;
}

// Streams max_tokens chunks "t0 ", "t1 ", ... then usage and [DONE], like a server honouring
// ignore_eos. Chat streams open with a role-only chunk, which must not count as the first token.
class FakeOpenAi {
 public:
  FakeOpenAi() : server_([this](const FakeRequest& r) { return handle(r); }) {}

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  int connections() const { return server_.connections(); }
  std::vector<json> bodies() {
    std::lock_guard<std::mutex> lock(mutex_);
    return bodies_;
  }
  // Per answered request, in the order of bodies() less the failed ones.
  std::vector<int> reported_cached_tokens() {
    std::lock_guard<std::mutex> lock(mutex_);
    return reported_cached_tokens_;
  }
  std::vector<int> reported_prompt_tokens() {
    std::lock_guard<std::mutex> lock(mutex_);
    return reported_prompt_tokens_;
  }
  std::atomic<int> fail_every{0};  // every n-th generation request answers HTTP 500

 private:
  FakeReply handle(const FakeRequest& request) {
    FakeReply reply;
    const std::string target(request.target());
    std::lock_guard<std::mutex> lock(mutex_);
    if (target == "/v1/models") {
      reply.pieces = {testing::whole_response(200, "application/json",
                                              R"({"object":"list","data":[{"id":"fake-model"}]})")};
      return reply;
    }
    if (target == "/metrics") {
      reply.pieces = {testing::whole_response(
          200, "text/plain; version=0.0.4",
          fmt::format("# TYPE infergrid_request_success_total counter\n"
                      "infergrid_request_success_total{{finish_reason=\"length\"}} {}\n"
                      "infergrid_prompt_tokens_total {}\n"
                      "infergrid_generation_tokens_total {}\n",
                      success_, prompt_tokens_, generation_tokens_))};
      return reply;
    }
    const json body = json::parse(request.body());
    bodies_.push_back(body);
    if (fail_every > 0 && bodies_.size() % static_cast<size_t>(fail_every) == 0) {
      reply.pieces = {testing::whole_response(
          500, "application/json", R"({"error":{"message":"fake overload","type":"server"}})")};
      return reply;
    }
    const bool chat = target == "/v1/chat/completions";
    int prompt_tokens = 0;
    int cached_tokens = 0;  // chat: all but the last message, as if a prefix cache held them
    if (chat) {
      for (const json& m : body["messages"]) {
        cached_tokens = prompt_tokens;
        prompt_tokens += word_count(m["content"]) + 3;
      }
    } else {
      prompt_tokens = word_count(body["prompt"]);
    }
    const int n = body["max_tokens"];
    std::vector<std::string> events;
    if (chat) events.push_back(R"({"choices":[{"index":0,"delta":{"role":"assistant"}}]})");
    for (int i = 0; i < n; ++i) {
      const std::string text = fmt::format("t{} ", i);
      events.push_back(
          chat ? json{{"choices", {{{"index", 0}, {"delta", {{"content", text}}}}}}}.dump()
               : json{{"choices", {{{"index", 0}, {"text", text}}}}}.dump());
    }
    json usage = {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", n},
                  {"total_tokens", prompt_tokens + n}};
    if (chat) usage["prompt_tokens_details"] = {{"cached_tokens", cached_tokens}};
    events.push_back(json{{"choices", json::array()}, {"usage", usage}}.dump());
    reported_cached_tokens_.push_back(cached_tokens);
    reported_prompt_tokens_.push_back(prompt_tokens);
    events.push_back("[DONE]");
    ++success_;
    prompt_tokens_ += prompt_tokens;
    generation_tokens_ += n;
    reply.pieces = testing::sse_pieces(events);
    reply.pause_between = std::chrono::milliseconds(1);
    return reply;
  }

  std::mutex mutex_;
  std::vector<json> bodies_;
  std::vector<int> reported_cached_tokens_;
  std::vector<int> reported_prompt_tokens_;
  int64_t success_ = 0;
  int64_t prompt_tokens_ = 0;
  int64_t generation_tokens_ = 0;
  FakeServer server_;  // last: its thread calls handle() until it is destroyed
};

ServeBenchOptions small_run(const FakeOpenAi& server, WorkloadKind kind) {
  ServeBenchOptions o;
  o.url = server.url();
  o.progress = false;
  o.workload.kind = kind;
  o.workload.num_requests = 12;
  o.workload.input_len = 20;
  o.workload.output_len = 5;
  o.workload.prefix_len = 40;
  o.workload.tenants = 2;
  o.workload.conversations = 3;
  o.workload.turns = 3;
  o.workload.seed = 5;
  o.concurrency = 3;
  o.timeout_s = 10;
  return o;
}

TEST(ServeBench, ClientTotalsMatchTheServersMetrics) {
  FakeOpenAi server;
  ServeBenchOptions o = small_run(server, WorkloadKind::kSharedPrefix);
  o.workload.range_ratio = 0.4;
  o.check_metrics = true;
  auto report = run_serve_bench(o);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->info.model, "fake-model");
  EXPECT_EQ(report->n_success, 12u) << report->to_text();
  EXPECT_EQ(report->n_failed, 0u);
  EXPECT_EQ(report->n_short_output, 0u);
  ASSERT_TRUE(report->metrics.has_value());
  EXPECT_EQ(report->metrics->delta(&ServerCounters::request_success), 12.0);
  EXPECT_EQ(report->metrics->delta(&ServerCounters::prompt_tokens),
            static_cast<double>(report->prompt_tokens));
  EXPECT_EQ(report->metrics->delta(&ServerCounters::generation_tokens),
            static_cast<double>(report->completion_tokens));
  EXPECT_EQ(report->ttft_ms.count, 12u);
  EXPECT_GT(report->itl_ms.count, 0u);
  EXPECT_GT(report->output_throughput, 0);

  int64_t requested = 0;
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 12u);
  for (const json& b : bodies) {
    EXPECT_EQ(b["model"], "fake-model");
    EXPECT_EQ(b["stream"], true);
    EXPECT_EQ(b["stream_options"]["include_usage"], true);
    EXPECT_EQ(b["ignore_eos"], true);
    EXPECT_EQ(b["temperature"], 0.0);
    EXPECT_TRUE(b.contains("prompt"));
    requested += b["max_tokens"].get<int>();
  }
  EXPECT_EQ(report->completion_tokens, requested);
  // A closed loop of 3 never needs more than 3 connections (model and metrics reads reuse them).
  EXPECT_LE(server.connections(), 3);

  const json j = json::parse(report->to_json());
  EXPECT_EQ(j["metrics_check"]["server_delta"]["request_success"], 12.0);
  EXPECT_EQ(j["metrics_check"]["client"]["request_success"], 12);
}

TEST(ServeBench, MultiTurnResendsHistoryWithTheServersAnswers) {
  FakeOpenAi server;
  ServeBenchOptions o = small_run(server, WorkloadKind::kMultiTurn);
  o.model = "named";
  o.think_time_ms = 1;
  auto report = run_serve_bench(o);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->n_success, 9u) << report->to_text();
  EXPECT_EQ(report->info.endpoint, "chat");

  // Group requests by conversation (their system prompt plus first user turn).
  std::map<std::string, std::vector<json>> by_conversation;
  for (const json& b : server.bodies()) {
    EXPECT_EQ(b["model"], "named");
    by_conversation[b["messages"][0].dump() + b["messages"][1].dump()].push_back(b);
  }
  ASSERT_EQ(by_conversation.size(), 3u);
  for (const auto& [key, turns] : by_conversation) {
    ASSERT_EQ(turns.size(), 3u);
    for (size_t t = 0; t < turns.size(); ++t) {
      const json& messages = turns[t]["messages"];
      // system, then user/assistant pairs, then this turn's user message.
      ASSERT_EQ(messages.size(), 2 + 2 * t);
      EXPECT_EQ(messages[0]["role"], "system");
      for (size_t k = 0; k < t; ++k) {
        EXPECT_EQ(messages[2 + 2 * k]["role"], "assistant");
        EXPECT_EQ(messages[2 + 2 * k]["content"], "t0 t1 t2 t3 t4 ");
        // Earlier turns are resent unchanged.
        EXPECT_EQ(messages[1 + 2 * k], turns[k]["messages"][1 + 2 * k]);
      }
    }
  }

  // Turns 2 and 3 of each conversation are returning turns; their tokens, and the cached tokens
  // the server reported for them, are summed on their own.
  EXPECT_TRUE(report->has_returning_turns);
  EXPECT_EQ(report->ttft_first_turn_ms.count, 3u);
  EXPECT_EQ(report->ttft_returning_turn_ms.count, 6u);
  const auto bodies = server.bodies();
  const auto cached = server.reported_cached_tokens();
  const auto prompt = server.reported_prompt_tokens();
  ASSERT_EQ(cached.size(), bodies.size());
  int64_t prompt_returning = 0, cached_returning = 0;
  for (size_t i = 0; i < bodies.size(); ++i) {
    if (bodies[i]["messages"].size() <= 2) continue;  // a first turn: system and user
    prompt_returning += prompt[i];
    cached_returning += cached[i];
  }
  EXPECT_GT(cached_returning, 0);
  EXPECT_EQ(report->prompt_tokens_returning, prompt_returning);
  EXPECT_EQ(report->cached_tokens_returning, cached_returning);
  EXPECT_NE(report->to_text().find("TTFT returning turns"), std::string::npos);
}

TEST(ServeBench, PoissonArrivalsAndChatEndpoint) {
  FakeOpenAi server;
  ServeBenchOptions o = small_run(server, WorkloadKind::kRandom);
  o.endpoint = ApiEndpoint::kChat;
  o.request_rate = 500;
  o.concurrency = 0;
  o.temperature = 0.7;
  o.slo.ttft_ms = 60000;
  auto report = run_serve_bench(o);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->n_success, 12u) << report->to_text();
  EXPECT_EQ(report->completion_tokens, 60);
  EXPECT_FALSE(report->has_returning_turns);  // every request of a random workload is turn 1
  EXPECT_EQ(report->ttft_first_turn_ms.count, 12u);
  EXPECT_EQ(report->ttft_returning_turn_ms.count, 0u);
  EXPECT_EQ(report->cached_tokens_returning, 0);
  ASSERT_TRUE(report->goodput.has_value());
  EXPECT_EQ(report->n_good, 12u);
  for (const json& b : server.bodies()) {
    EXPECT_EQ(b["temperature"], 0.7);
    EXPECT_EQ(b["messages"].size(), 1u);  // random prompts have no system message
  }
}

TEST(ServeBench, TraceRequestsWaitForTheirTimestamps) {
  FakeOpenAi server;
  const auto path = std::filesystem::temp_directory_path() / "infergrid_serve_bench_test.jsonl";
  {
    std::ofstream out(path);
    out << R"({"timestamp": 0, "input_length": 30, "output_length": 2, "hash_ids": [1]})"
        << "\n"
        << R"({"timestamp": 80, "input_length": 30, "output_length": 3, "hash_ids": [1, 2]})"
        << "\n"
        << R"({"timestamp": 160, "input_length": 30, "output_length": 4, "hash_ids": [3]})"
        << "\n";
  }
  ServeBenchOptions o = small_run(server, WorkloadKind::kTrace);
  o.workload.trace_file = path.string();
  o.workload.num_requests = 0;
  o.time_scale = 0.5;  // the last request goes out at 80 ms
  auto report = run_serve_bench(o);
  std::filesystem::remove(path);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->n_success, 3u) << report->to_text();
  EXPECT_EQ(report->completion_tokens, 9);
  EXPECT_GE(report->duration_s, 0.075);
}

TEST(ServeBench, ServerErrorsAreCountedWithTheirMessages) {
  FakeOpenAi server;
  server.fail_every = 4;
  ServeBenchOptions o = small_run(server, WorkloadKind::kRandom);
  o.concurrency = 1;  // so that exactly requests 4, 8 and 12 fail
  auto report = run_serve_bench(o);
  ASSERT_TRUE(report.is_ok()) << report.status().to_string();
  EXPECT_EQ(report->n_success, 9u);
  EXPECT_EQ(report->n_failed, 3u);
  ASSERT_EQ(report->first_errors.size(), 1u);
  EXPECT_EQ(report->first_errors[0], "HTTP 500: fake overload");
}

TEST(ServeBench, FailedTurnStopsItsConversation) {
  FakeOpenAi server;
  server.fail_every = 2;  // with one conversation in flight, its second turn fails
  ServeBenchOptions o = small_run(server, WorkloadKind::kMultiTurn);
  o.workload.conversations = 1;
  o.workload.turns = 4;
  auto report = run_serve_bench(o);
  ASSERT_TRUE(report.is_ok());
  EXPECT_EQ(report->n_success, 1u);
  EXPECT_EQ(report->n_failed, 3u);
  EXPECT_EQ(server.bodies().size(), 2u);
  // Turns that were never answered still count as returning turns for the text report.
  EXPECT_TRUE(report->has_returning_turns);
  EXPECT_EQ(report->ttft_returning_turn_ms.count, 0u);
}

TEST(ServeBench, UnreachableServerAndBadOptionsAreErrors) {
  ServeBenchOptions o;
  o.url = "http://127.0.0.1:1";
  o.progress = false;
  auto no_model = run_serve_bench(o);
  ASSERT_FALSE(no_model.is_ok());
  EXPECT_NE(no_model.status().message().find("--model"), std::string::npos);

  o.model = "m";
  o.workload.num_requests = 3;
  auto all_failed = run_serve_bench(o);
  ASSERT_TRUE(all_failed.is_ok());
  EXPECT_EQ(all_failed->n_failed, 3u);

  o.url = "https://127.0.0.1";
  EXPECT_FALSE(run_serve_bench(o).is_ok());
  o.url = "http://127.0.0.1:1";
  o.timeout_s = 0;
  EXPECT_FALSE(run_serve_bench(o).is_ok());
}

}  // namespace
}  // namespace infergrid
