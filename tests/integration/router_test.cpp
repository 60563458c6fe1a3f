// `infergrid route` in front of real `infergrid serve` processes on loopback: decisions per
// policy, the KV event stream across restarts, failover when an instance is killed, and bad
// input at the router.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "golden_required.h"
#include "integration/router_helpers.h"
#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(test_model_path().empty());
    for (int i = 0; i < 3; ++i) start_instance();
  }

  void start_instance() {
    auto inst = std::make_unique<ServerProcess>();
    std::string log;
    ASSERT_TRUE(inst->start(test_server_args({}), log)) << log;
    instances_.push_back(std::move(inst));
  }

  std::unique_ptr<ServerProcess> start_router(const std::string& policy,
                                              const std::vector<ServerProcess*>& behind = {}) {
    std::vector<std::string> args = {"--model", test_model_path(),        "--policy",
                                     policy,    "--heartbeat-timeout-ms", "1500"};
    if (behind.empty()) {
      for (auto& inst : instances_) args.insert(args.end(), {"--instance", inst->url()});
    } else {
      for (ServerProcess* inst : behind) args.insert(args.end(), {"--instance", inst->url()});
    }
    auto router = std::make_unique<ServerProcess>();
    std::string log;
    EXPECT_TRUE(router->start(args, log, 0, "route")) << log;
    return router;
  }

  std::vector<std::unique_ptr<ServerProcess>> instances_;
};

TEST_F(RouterTest, CacheAwareSendsAPrefixWhereItsKvIsAndThePredictionMatchesTheInstance) {
  auto router = start_router("cache_aware");
  ASSERT_TRUE(wait_eligible(*router, 3));
  // Reference: the same greedy request straight to an instance.
  const json direct = json::parse(
      curl(instances_[0]->url() + "/v1/completions",
           json{{"prompt", long_prompt("alpha")}, {"max_tokens", 8}, {"temperature", 0}}.dump())
          .body);
  // Its blocks reach the router as events (polled every 20 ms by the instance's stream).
  const auto indexed = std::chrono::steady_clock::now() + 5s;
  while (instances_of(*router)["indexed_blocks"].get<int>() == 0 &&
         std::chrono::steady_clock::now() < indexed) {
    std::this_thread::sleep_for(20ms);
  }
  const Routed first = complete(*router, long_prompt("alpha"));
  ASSERT_EQ(first.status, 200) << first.body.dump();
  EXPECT_EQ(text_of(first.body), text_of(direct));
  const std::string home = first.instance();
  ASSERT_FALSE(home.empty()) << first.record.dump();
  std::this_thread::sleep_for(300ms);  // the events reach the router
  for (int i = 0; i < 3; ++i) {
    const Routed again = complete(*router, long_prompt("alpha"));
    ASSERT_EQ(again.status, 200);
    EXPECT_EQ(text_of(again.body), text_of(direct));
    EXPECT_EQ(again.instance(), home) << again.record.dump();
    const json& attempt = again.record["attempts"].back();
    EXPECT_EQ(attempt["reason"], "prefix_match");
    EXPECT_GE(attempt["predicted_cached_tokens"].get<int>(), 32);
    EXPECT_EQ(attempt["predicted_cached_tokens"], attempt["actual_cached_tokens"])
        << again.record.dump();
  }
  // The metrics count the decisions (the first too: the direct request left its blocks on
  // instance 0) and both sides of the prediction.
  EXPECT_EQ(home, instances_[0]->url());
  const std::string metrics = curl(router->url() + "/metrics").body;
  EXPECT_NE(
      metrics.find(
          "infergrid_route_decisions_total{policy=\"cache_aware\",reason=\"prefix_match\"} 4"),
      std::string::npos)
      << metrics;
  EXPECT_EQ(metric(metrics, "infergrid_route_predicted_cached_tokens_total"),
            metric(metrics, "infergrid_route_actual_cached_tokens_total"));
  EXPECT_GT(*metric(metrics, "infergrid_route_index_blocks"), 0);
}

TEST_F(RouterTest, RoundRobinAndSessionAffinity) {
  {
    auto router = start_router("round_robin");
    ASSERT_TRUE(wait_eligible(*router, 3));
    std::set<std::string> used;
    for (int i = 0; i < 3; ++i) used.insert(complete(*router, long_prompt("rr")).instance());
    EXPECT_EQ(used.size(), 3u);
  }
  auto router = start_router("session");
  ASSERT_TRUE(wait_eligible(*router, 3));
  std::set<std::string> of_a, all;
  for (int i = 0; i < 4; ++i) {
    const Routed r =
        complete(*router, long_prompt("s" + std::to_string(i)), "-H 'x-session-id: a'");
    ASSERT_EQ(r.status, 200);
    of_a.insert(r.instance());
  }
  EXPECT_EQ(of_a.size(), 1u);  // one session, one instance, whatever the prompt
  for (int s = 0; s < 24; ++s) {
    all.insert(
        complete(*router, "hi", "-H 'x-session-id: user" + std::to_string(s) + "'", 1).instance());
  }
  EXPECT_GE(all.size(), 2u);  // sessions spread
}

TEST_F(RouterTest, ARestartedRouterRebuildsTheIndexFromTheInstancesEventStreams) {
  std::string home;
  {
    auto router = start_router("cache_aware");
    ASSERT_TRUE(wait_eligible(*router, 3));
    home = complete(*router, long_prompt("beta")).instance();
    ASSERT_FALSE(home.empty());
  }
  auto router = start_router("cache_aware");
  ASSERT_TRUE(wait_eligible(*router, 3));
  const Routed again = complete(*router, long_prompt("beta"));
  EXPECT_EQ(again.instance(), home) << again.record.dump();
  EXPECT_GE(again.record["attempts"].back()["actual_cached_tokens"].get<int>(), 32);
}

TEST_F(RouterTest, AKilledInstanceIsRetriedElsewhereUnseenAndTheRouterNeverHangs) {
  auto router = start_router("cache_aware");
  ASSERT_TRUE(wait_eligible(*router, 3));
  const Routed first = complete(*router, long_prompt("gamma"));
  ASSERT_EQ(first.status, 200);
  const std::string expected = text_of(first.body);
  // Kill the instance that holds the prefix: the router's next choice fails (or the stream
  // already said it is gone) and the request is served by another, with the same greedy text.
  for (auto& inst : instances_) {
    if (inst->url() == first.instance()) inst->signal(SIGKILL);
  }
  const Routed after = complete(*router, long_prompt("gamma"));
  ASSERT_EQ(after.status, 200) << after.body.dump();
  EXPECT_EQ(text_of(after.body), expected);
  EXPECT_NE(after.instance(), first.instance());
  ASSERT_TRUE(wait_eligible(*router, 2));
  // Streams too: every request ends with [DONE].
  const HttpResult streamed = curl(
      router->url() + "/v1/completions",
      json{
          {"prompt", long_prompt("gamma")}, {"max_tokens", 8}, {"temperature", 0}, {"stream", true}}
          .dump());
  EXPECT_EQ(streamed.status, 200);
  EXPECT_NE(streamed.body.find("data: [DONE]"), std::string::npos) << streamed.body;
  // With every instance gone: a clean 503 with Retry-After, not a hang.
  for (auto& inst : instances_) inst->signal(SIGKILL);
  std::this_thread::sleep_for(200ms);
  const auto start = std::chrono::steady_clock::now();
  const HttpResult none =
      curl(router->url() + "/v1/completions", R"({"prompt":"hi","max_tokens":2})");
  EXPECT_EQ(none.status, 503) << none.body;
  EXPECT_NE(none.headers.find("Retry-After"), std::string::npos) << none.headers;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(curl(router->url() + "/health").status, 503);
}

// The text of an SSE body (completions' text or chat's delta.content), the chunk ids seen, and
// whether it carried an error event, a stray token report, and [DONE].
struct StreamedText {
  std::string text;
  std::set<std::string> ids;
  bool error = false;
  bool token_report = false;
  bool done = false;
  std::string finish_reason;
};

StreamedText parse_stream(const std::string& body) {
  StreamedText out;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end == std::string::npos ? end : end - at - 6);
    at = end == std::string::npos ? body.size() : end;
    if (data == "[DONE]") {
      out.done = true;
      continue;
    }
    const json chunk = json::parse(data, nullptr, false);
    if (!chunk.is_object()) continue;
    if (chunk.contains("error")) out.error = true;
    if (chunk.contains("infergrid_tokens")) out.token_report = true;
    if (chunk.contains("id")) out.ids.insert(chunk["id"].get<std::string>());
    if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
    const json& c = chunk["choices"][0];
    if (c.contains("text")) out.text += c["text"].get<std::string>();
    if (c.contains("delta") && c["delta"].contains("content"))
      out.text += c["delta"]["content"].get<std::string>();
    if (!c["finish_reason"].is_null()) out.finish_reason = c["finish_reason"].get<std::string>();
  }
  return out;
}

// An instance killed while it streams: the router continues the stream on another instance
// with the prompt plus the tokens already sent, and the client's text is exactly the
// uninterrupted run's, greedy and seeded, under one chunk id, with no error event.
TEST_F(RouterTest, AStreamWhoseInstanceIsKilledMidwayContinuesElsewhereWithTheSameText) {
  auto router = start_router("cache_aware");
  ASSERT_TRUE(wait_eligible(*router, 3));
  const json greedy = {{"prompt", long_prompt("delta")},
                       {"max_tokens", 3000},
                       {"temperature", 0},
                       {"ignore_eos", true},
                       {"stream", true}};
  const json seeded = {{"messages", {{{"role", "user"}, {"content", long_prompt("epsilon")}}}},
                       {"max_tokens", 3000},
                       {"temperature", 1.0},
                       {"seed", 4321},
                       {"ignore_eos", true},
                       {"stream", true},
                       {"stream_options", {{"include_usage", true}}}};
  int killed = 0;
  for (const auto& [path, request] : std::vector<std::pair<std::string, json>>{
           {"/v1/completions", greedy}, {"/v1/chat/completions", seeded}}) {
    const HttpResult reference = curl(router->url() + path, request.dump());
    ASSERT_EQ(reference.status, 200);
    const StreamedText expected = parse_stream(reference.body);
    ASSERT_TRUE(expected.done && !expected.error) << reference.body.substr(0, 500);
    ASSERT_FALSE(expected.token_report) << "the router must strip the instances' token reports";
    ASSERT_GT(expected.text.size(), 1000u);

    const std::string id = "midway-" + std::to_string(::getpid()) + "-" + std::to_string(killed);
    HttpResult interrupted;
    std::thread client([&] {
      interrupted = curl(router->url() + path, request.dump(), "-H 'X-Request-Id: " + id + "'");
    });
    // Kill whichever instance streams it once tokens have gone out.
    std::string victim, seen_log;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (victim.empty() && std::chrono::steady_clock::now() < deadline) {
      const json seen = instances_of(*router);
      if (seen_log.size() < 4000) seen_log += seen.dump() + "\n";
      if (seen.is_object() && seen.contains("instances")) {
        for (const auto& inst : seen["instances"]) {
          if (inst.value("inflight", 0.0) > 0) victim = inst.value("address", "");
        }
      }
      std::this_thread::sleep_for(10ms);
    }
    if (victim.empty()) client.join();
    ASSERT_FALSE(victim.empty()) << interrupted.status << " "
                                 << interrupted.body.substr(interrupted.body.size() > 300
                                                                ? interrupted.body.size() - 300
                                                                : 0)
                                 << "\nthe router's view while it ran:\n"
                                 << seen_log;
    std::this_thread::sleep_for(400ms);
    for (auto& inst : instances_) {
      if (inst->url() == victim) inst->signal(SIGKILL);
    }
    ++killed;
    client.join();
    ASSERT_EQ(interrupted.status, 200);
    const StreamedText got = parse_stream(interrupted.body);
    EXPECT_FALSE(got.error) << interrupted.body.substr(
        interrupted.body.size() > 600 ? interrupted.body.size() - 600 : 0);
    EXPECT_TRUE(got.done);
    EXPECT_FALSE(got.token_report);
    EXPECT_EQ(got.ids.size(), 1u) << "a continuation keeps the stream's chunk id";
    EXPECT_EQ(got.finish_reason, "length");
    EXPECT_EQ(got.text, expected.text) << path;
    if (path == "/v1/chat/completions") {
      // Usage counts the whole completion, the replayed tokens included.
      EXPECT_NE(interrupted.body.find("\"completion_tokens\":3000"), std::string::npos);
    }
    const json record =
        json::parse(curl(router->url() + "/route/explain?id=" + id).body, nullptr, false);
    ASSERT_TRUE(record.contains("attempts")) << record.dump();
    ASSERT_GE(record["attempts"].size(), 2u) << record.dump();
    EXPECT_EQ(record["attempts"][0]["instance"], victim);
    EXPECT_GT(record["attempts"][1].value("resumed_tokens", 0), 0) << record.dump();
    EXPECT_EQ(record["attempts"][1]["outcome"], "HTTP 200 stream (continued)");
    ASSERT_TRUE(wait_eligible(*router, 3 - killed));
  }
  const std::string metrics = curl(router->url() + "/metrics").body;
  EXPECT_EQ(metric(metrics, "infergrid_route_streams_resumed_total").value_or(-1), 2) << metrics;
  EXPECT_EQ(metric(metrics, "infergrid_route_streams_failed_midway_total").value_or(-1), 0);
}

// A TCP server that answers every connection with `reply` and closes: an instance that talks
// garbage.
class GarbageServer {
 public:
  explicit GarbageServer(std::string reply) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] {
      while (true) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char buf[4096];
        (void)::recv(c, buf, sizeof(buf), 0);
        (void)::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
        ::close(c);
      }
    });
  }
  ~GarbageServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::string reply_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST_F(RouterTest, BadInputAndBadInstancesGetClearErrorsAndNoCrash) {
  GarbageServer garbage(
      "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: {not json\n\n");
  GarbageServer not_http("\x16\x03\x01 this is not HTTP\r\n\r\n");
  std::vector<std::string> args = {
      "--model",    test_model_path(), "--instance", instances_[0]->url(),
      "--instance", garbage.url(),     "--instance", not_http.url()};
  ServerProcess router;
  std::string log;
  ASSERT_TRUE(router.start(args, log, 0, "route")) << log;
  ASSERT_TRUE(wait_eligible(router, 1));
  const HttpResult malformed = curl(router.url() + "/v1/completions", "{\"prompt\": ");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(json::parse(malformed.body)["error"]["type"], "invalid_request_error");
  const HttpResult unknown =
      curl(router.url() + "/v1/completions", R"({"model":"nope","prompt":"hi"})");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(json::parse(unknown.body)["error"]["code"], "model_not_found");
  const HttpResult invalid =
      curl(router.url() + "/v1/completions", R"({"prompt":"hi","max_tokens":-3})");
  EXPECT_EQ(invalid.status, 400) << invalid.body;
  EXPECT_EQ(curl(router.url() + "/nowhere").status, 404);
  EXPECT_EQ(curl(router.url() + "/route/explain?id=unknown").status, 404);
  const json models = json::parse(curl(router.url() + "/v1/models").body);
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  // Only the real instance serves; the router is still fine after all of it.
  for (int i = 0; i < 5; ++i) {
    const Routed r = complete(router, "hello there", "", 2);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.instance(), instances_[0]->url());
  }
  EXPECT_EQ(curl(router.url() + "/health").status, 200);
}

}  // namespace
}  // namespace infergrid::testing

namespace infergrid::testing {
namespace {

// A free loopback port (bound and released: good enough for a test's own etcd).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The real etcd (Debian's etcd-server, installed by tools/setup) on loopback ports of its own.
class EtcdProcess {
 public:
  bool start(std::string& log) {
    dir_ = std::filesystem::temp_directory_path() / ("ig_etcd_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    client_port_ = free_port();
    const int peer_port = free_port();
    const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port);
    std::vector<std::string> argv_strings = {"etcd",
                                             "--data-dir",
                                             dir_.string(),
                                             "--listen-client-urls",
                                             client,
                                             "--advertise-client-urls",
                                             client,
                                             "--listen-peer-urls",
                                             peer,
                                             "--initial-advertise-peer-urls",
                                             peer,
                                             "--initial-cluster",
                                             "default=" + peer};
    std::vector<char*> argv;
    for (auto& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    const int rc = posix_spawnp(&pid_, "etcd", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      log = "cannot start etcd (tools/setup installs etcd-server)";
      pid_ = -1;
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (curl(url() + "/health").status == 200) return true;
      std::this_thread::sleep_for(100ms);
    }
    log = "etcd did not answer /health";
    return false;
  }
  ~EtcdProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }

 private:
  pid_t pid_ = -1;
  int client_port_ = 0;
  std::filesystem::path dir_;
};

// The router's view of one address: "absent", "removed" (left the registry) or "eligible" /
// "ineligible".
std::string state_of(const ServerProcess& router, const std::string& address) {
  const json body = instances_of(router);
  if (!body.is_object()) return "no answer";
  for (const auto& inst : body["instances"]) {
    if (inst["address"] != address) continue;
    if (!inst["wanted"].get<bool>()) return "removed";
    return inst["eligible"].get<bool>() ? "eligible" : "ineligible";
  }
  return "absent";
}

bool wait_state(const ServerProcess& router, const std::string& address, const std::string& want,
                std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (state_of(router, address) == want) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

TEST(RouterEtcdTest, InstancesJoinThroughEtcdAndLeaveWhenDrainedOrWhenTheirLeaseExpires) {
  ASSERT_FALSE(test_model_path().empty());
  EtcdProcess etcd;
  std::string log;
  ASSERT_TRUE(etcd.start(log)) << log;
  std::vector<std::unique_ptr<ServerProcess>> instances;
  for (int i = 0; i < 3; ++i) {
    auto inst = std::make_unique<ServerProcess>();
    ASSERT_TRUE(inst->start(test_server_args({"--etcd", etcd.url(), "--etcd-ttl", "2"}), log))
        << log;
    instances.push_back(std::move(inst));
  }
  ServerProcess router;
  ASSERT_TRUE(router.start({"--model", test_model_path(), "--etcd", etcd.url()}, log, 0, "route"))
      << log;
  for (auto& inst : instances) {
    ASSERT_TRUE(wait_state(router, inst->url(), "eligible", 10s)) << instances_of(router).dump();
  }
  EXPECT_EQ(curl(router.url() + "/v1/completions", R"({"prompt":"hi","max_tokens":2})").status,
            200);

  // Drained (SIGTERM): it deregisters on the way out, well before a lease would expire.
  instances[0]->signal(SIGTERM);
  const auto drained = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_state(router, instances[0]->url(), "removed", 10s))
      << instances_of(router).dump();
  EXPECT_LT(std::chrono::steady_clock::now() - drained, 2s);

  // Killed (SIGKILL): its lease expires after the TTL and the registry drops it.
  instances[1]->signal(SIGKILL);
  ASSERT_TRUE(wait_state(router, instances[1]->url(), "removed", 10s))
      << instances_of(router).dump();

  // Meanwhile requests keep being served by what is left, and a restarted instance on a new
  // port joins.
  EXPECT_EQ(curl(router.url() + "/v1/completions", R"({"prompt":"hi","max_tokens":2})").status,
            200);
  auto again = std::make_unique<ServerProcess>();
  ASSERT_TRUE(again->start(test_server_args({"--etcd", etcd.url(), "--etcd-ttl", "2"}), log))
      << log;
  EXPECT_TRUE(wait_state(router, again->url(), "eligible", 10s)) << instances_of(router).dump();
  EXPECT_EQ(state_of(router, instances[2]->url()), "eligible");
}

TEST(RouterEtcdTest, ServeRefusesToStartWhenItsRegistryIsUnreachable) {
  ASSERT_FALSE(test_model_path().empty());
  ServerProcess inst;
  std::string log;
  EXPECT_FALSE(inst.start(
      test_server_args({"--etcd", "http://127.0.0.1:" + std::to_string(free_port())}), log));
  EXPECT_NE(log.find("etcd"), std::string::npos) << log;
}

}  // namespace
}  // namespace infergrid::testing

namespace infergrid::testing {
namespace {

TEST_F(RouterTest, UnderOverloadBatchIsShedFirstAndInteractiveStillGetsIn) {
  // One instance, room for 2 in flight: batch may use half, standard 85%, interactive all.
  ServerProcess instance;
  std::string log;
  ASSERT_TRUE(instance.start(test_server_args({"--trust-request-priority"}), log)) << log;
  ServerProcess router;
  ASSERT_TRUE(router.start({"--model", test_model_path(), "--instance", instance.url(),
                            "--max-inflight-per-instance", "2", "--forward-priority"},
                           log, 0, "route"))
      << log;
  ASSERT_TRUE(wait_eligible(router, 1));
  // A long batch request holds the batch share.
  const std::string long_batch = json{
      {"prompt", "once"},
      {"max_tokens", 4000},
      {"ignore_eos", true},
      {"stream", true},
      {"priority_class", "batch"}}.dump();
  std::thread holder([&] { curl(router.url() + "/v1/completions", long_batch, "-m 20"); });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (instances_of(router)["instances"][0]["inflight"].get<int>() == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  const std::string small = R"({"prompt":"hi","max_tokens":2})";
  const HttpResult batch =
      curl(router.url() + "/v1/completions", small, "-H 'x-priority-class: batch'");
  EXPECT_EQ(batch.status, 429) << batch.body;
  EXPECT_NE(batch.headers.find("Retry-After"), std::string::npos);
  EXPECT_EQ(json::parse(batch.body)["error"]["code"], "overloaded");
  const HttpResult interactive =
      curl(router.url() + "/v1/completions", small, "-H 'x-priority-class: interactive'");
  EXPECT_EQ(interactive.status, 200) << interactive.body;
  const HttpResult standard = curl(router.url() + "/v1/completions", small);
  EXPECT_EQ(standard.status, 200) << standard.body;
  const HttpResult bad =
      curl(router.url() + "/v1/completions", small, "-H 'x-priority-class: urgent'");
  EXPECT_EQ(bad.status, 400);
  const std::string metrics = curl(router.url() + "/metrics").body;
  EXPECT_NE(metrics.find("infergrid_route_shed_total{class=\"batch\"} 1"), std::string::npos)
      << metrics;
  instance.signal(SIGKILL);  // ends the holder's stream (the router reports it, then [DONE])
  holder.join();
}

}  // namespace
}  // namespace infergrid::testing

namespace infergrid::testing {
namespace {

TEST_F(RouterTest, ARestartedInstanceReannouncesItsSsdBlocksAndTheRouterCountsThem) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("ig_router_disk_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::vector<std::string> flags = {"--kv-disk-dir", dir.string()};
  auto instance = std::make_unique<ServerProcess>();
  std::string log;
  ASSERT_TRUE(instance->start(test_server_args(flags), log)) << log;
  const json request = {{"prompt", long_prompt("delta")}, {"max_tokens", 4}, {"temperature", 0}};
  ASSERT_EQ(curl(instance->url() + "/v1/completions", request.dump()).status, 200);
  instance->signal(SIGTERM);  // a drain writes the cached blocks to the SSD tier
  ASSERT_EQ(instance->wait(30s), 0);

  instance = std::make_unique<ServerProcess>();
  ASSERT_TRUE(instance->start(test_server_args(flags), log)) << log;
  // Its snapshot carries the disk tier's blocks, found on disk at startup.
  const HttpResult events = curl(instance->url() + "/kv/events", "", "-m 1");
  EXPECT_NE(events.body.find("\"disk\":[\""), std::string::npos) << events.body.substr(0, 500);
  ServerProcess router;
  ASSERT_TRUE(
      router.start({"--model", test_model_path(), "--instance", instance->url()}, log, 0, "route"))
      << log;
  ASSERT_TRUE(wait_eligible(router, 1));
  const Routed again = complete(router, long_prompt("delta"), "", 4);
  ASSERT_EQ(again.status, 200);
  const json& attempt = again.record["attempts"].back();
  EXPECT_EQ(attempt["candidates"][0]["engine_blocks"], 0) << again.record.dump();
  EXPECT_GE(attempt["candidates"][0]["tier_blocks"].get<int>(), 2) << again.record.dump();
  instance->signal(SIGKILL);  // it may still be writing blocks into the directory
  instance->wait(std::chrono::seconds(5));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace infergrid::testing

namespace infergrid::testing {
namespace {

// Prefill/decode disaggregation on one host: a `--role prefill` and a `--role decode` instance
// sharing a DRAM tier behind the router. A long prompt new to the decode instance is computed
// on the prefill instance, which answers once its blocks are in the tier; the decode instance
// loads them and generates the same greedy text as a unified instance. A prompt the decode
// instance already holds stays there, and a dead prefill instance only costs the decode
// instance the prefill.
TEST_F(RouterTest, APrefillInstanceComputesLongPromptsThatTheDecodeInstanceThenLoads) {
  const std::string name = "pd-" + std::to_string(::getpid());
  const auto remove_segments = [&] {
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
      if (entry.path().filename().string().starts_with("infergrid-kv-" + name + "-")) {
        std::filesystem::remove(entry.path());
      }
    }
  };
  remove_segments();
  ServerProcess prefill, decode;
  std::string log;
  ASSERT_TRUE(prefill.start(
      test_server_args({"--kv-dram-bytes", "64MiB", "--kv-dram-name", name, "--role", "prefill"}),
      log))
      << log;
  ASSERT_TRUE(decode.start(
      test_server_args({"--kv-dram-bytes", "64MiB", "--kv-dram-name", name, "--role", "decode"}),
      log))
      << log;
  auto router = start_router("cache_aware", {&prefill, &decode});
  ASSERT_TRUE(wait_eligible(*router, 2));
  const json listed = instances_of(*router);
  for (const auto& inst : listed["instances"]) {
    EXPECT_FALSE(inst["kv_share"].get<std::string>().empty()) << listed.dump();
    EXPECT_EQ(inst["role"], inst["address"] == prefill.url() ? "prefill" : "decode");
  }

  std::string prompt;
  for (int i = 0; i < 12; ++i) prompt += long_prompt("zeta" + std::to_string(i)) + " ";
  const Routed first = complete(*router, prompt, "", 24);
  ASSERT_EQ(first.status, 200) << first.body.dump();
  const Routed direct = complete(*instances_[0], prompt, "", 24);  // a unified instance
  ASSERT_EQ(direct.status, 200);
  EXPECT_EQ(text_of(first.body), text_of(direct.body));
  EXPECT_EQ(first.instance(), decode.url()) << first.record.dump();
  ASSERT_TRUE(first.record["attempts"][0].contains("prefill")) << first.record.dump();
  EXPECT_EQ(first.record["attempts"][0]["prefill"]["instance"], prefill.url());
  EXPECT_EQ(first.record["attempts"][0]["prefill"]["outcome"], "HTTP 200");
  const int prompt_tokens = first.body["usage"]["prompt_tokens"].get<int>();
  ASSERT_GT(prompt_tokens, 512);
  // Every full block came from the prefill instance through the tier.
  EXPECT_EQ(first.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(),
            prompt_tokens / 16 * 16);
  EXPECT_GT(
      metric(curl(decode.url() + "/metrics").body, "infergrid_kv_dram_hits_total").value_or(0), 0);

  // The next turn of the conversation: the decode instance holds most of it, so it runs there.
  const Routed again = complete(*router, prompt + "and then", "", 24);
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.instance(), decode.url());
  EXPECT_FALSE(again.record["attempts"][0].contains("prefill")) << again.record.dump();

  // A handoff asked of an instance without a shared tier is refused with a clear 400.
  const HttpResult refused =
      curl(instances_[0]->url() + "/v1/completions",
           R"({"prompt":"hi","max_tokens":1,"infergrid_prefill_handoff":true})");
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_NE(refused.body.find("--kv-dram-bytes"), std::string::npos);

  // The prefill instance dies: a new long prompt is computed by the decode instance, correctly.
  prefill.signal(SIGKILL);
  std::string other;
  for (int i = 0; i < 12; ++i) other += long_prompt("eta" + std::to_string(i)) + " ";
  const Routed alone = complete(*router, other, "", 24);
  ASSERT_EQ(alone.status, 200) << alone.body.dump();
  EXPECT_EQ(alone.instance(), decode.url());
  EXPECT_EQ(text_of(alone.body), text_of(complete(*instances_[0], other, "", 24).body));
  if (alone.record["attempts"][0].contains("prefill")) {
    EXPECT_NE(alone.record["attempts"][0]["prefill"]["outcome"], "HTTP 200");
  }
  // And nothing is left running or held on the decode instance.
  const std::string metrics = curl(decode.url() + "/metrics").body;
  EXPECT_EQ(metric(metrics, "infergrid_num_requests_running").value_or(-1), 0) << metrics;
  remove_segments();
}

// A prefill instance needs the shared tier it hands KV through.
TEST(RouterRoleTest, APrefillInstanceWithoutADramTierRefusesToStart) {
  ServerProcess prefill;
  std::string log;
  EXPECT_FALSE(prefill.start(test_server_args({"--role", "prefill"}), log));
  EXPECT_NE(log.find("--kv-dram-bytes"), std::string::npos) << log;
}

}  // namespace
}  // namespace infergrid::testing

namespace infergrid::testing {
namespace {

// The router renders chat requests with the instances' own template, a Jinja file included:
// the blocks it predicts cached are exactly those the instance reports. A template file it
// cannot read stops it, as it stops serve.
TEST(RouterTemplateTest, TheRouterUsesTheInstancesChatTemplateFile) {
  const auto file = std::filesystem::path(INFERGRID_SHARED_DIR) / "golden" / "chat-templates" /
                    "Qwen-Qwen2.5-7B-Instruct.jinja";
  if (!std::filesystem::exists(file)) IG_GOLDEN_MISSING("no golden chat template " << file);
  ServerProcess instance, router;
  std::string log;
  ASSERT_TRUE(instance.start(test_server_args({"--chat-template-file", file.string()}), log))
      << log;
  ASSERT_TRUE(router.start({"--model", test_model_path(), "--instance", instance.url(),
                            "--chat-template-file", file.string()},
                           log, 0, "route"))
      << log;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (curl(router.url() + "/health").status != 200 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  const json request = {
      {"messages",
       {{{"role", "system"}, {"content", long_prompt("theta") + long_prompt("iota")}},
        {{"role", "user"}, {"content", "Tell me more."}}}},
      {"max_tokens", 2},
      {"temperature", 0}};
  // The first request computes the prompt; later ones find its blocks once the router has
  // heard of them from the instance's event stream.
  int predicted = 0, actual = -1;
  for (int i = 0; i < 40 && (predicted == 0 || predicted != actual); ++i) {
    const std::string id = "tmpl-" + std::to_string(::getpid()) + "-" + std::to_string(i);
    const HttpResult r = curl(router.url() + "/v1/chat/completions", request.dump(),
                              "-H 'X-Request-Id: " + id + "'");
    ASSERT_EQ(r.status, 200) << r.body;
    const json record =
        json::parse(curl(router.url() + "/route/explain?id=" + id).body, nullptr, false);
    ASSERT_TRUE(record.contains("attempts")) << record.dump();
    predicted = record["attempts"][0].value("predicted_cached_tokens", -1);
    actual = record["attempts"][0].value("actual_cached_tokens", -2);
    if (predicted == 0 || predicted != actual) std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(predicted, actual);
  EXPECT_GT(predicted, 0);

  ServerProcess bad;
  EXPECT_FALSE(bad.start({"--model", test_model_path(), "--instance", instance.url(),
                          "--chat-template-file", "/nonexistent/template.jinja"},
                         log, 0, "route"));
  EXPECT_NE(log.find("cannot read it"), std::string::npos) << log;
}

}  // namespace
}  // namespace infergrid::testing
