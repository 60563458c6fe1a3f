// `infergrid route` in front of real `infergrid serve` processes on loopback: decisions per
// policy, the KV event stream across restarts, failover when an instance is killed, and bad
// input at the router.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// A prompt of several full blocks (16 tokens each) that differs per `tag` from its first word.
std::string long_prompt(const std::string& tag) {
  std::string p = tag +
                  " once upon a time there was a little girl who lived in a village near "
                  "the forest and every day she went to the river to fetch water for her "
                  "mother, and on the way she sang songs to the birds in the trees";
  return p;
}

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

  // Waits until the router sees `n` eligible instances.
  static bool wait_eligible(const ServerProcess& router, size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      const HttpResult r = curl(router.url() + "/route/instances");
      const json body = json::parse(r.body, nullptr, false);
      if (r.status == 200 && body.is_object()) {
        size_t eligible = 0;
        for (const auto& inst : body["instances"]) eligible += inst["eligible"].get<bool>();
        if (eligible == n) return true;
      }
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  struct Routed {
    int status = 0;
    json body;
    json record;  // /route/explain for it
    std::string instance() const {
      return record.contains("attempts") && !record["attempts"].empty()
                 ? record["attempts"].back().value("instance", "")
                 : "";
    }
  };

  static Routed complete(const ServerProcess& router, const std::string& prompt,
                         const std::string& extra_headers = "", int max_tokens = 8) {
    static int counter = 0;
    const std::string id = "test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
    const json request = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
    Routed out;
    const HttpResult r = curl(router.url() + "/v1/completions", request.dump(),
                              "-H 'X-Request-Id: " + id + "' " + extra_headers);
    out.status = r.status;
    out.body = json::parse(r.body, nullptr, false);
    out.record = json::parse(curl(router.url() + "/route/explain?id=" + id).body, nullptr, false);
    return out;
  }

  static std::string text_of(const json& body) {
    return body.is_object() && body.contains("choices") ? body["choices"][0].value("text", "") : "";
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
