// Prefill/decode disaggregation across hosts: a prefill instance streams a prompt's KV blocks
// over TCP to a decode instance's --kv-transfer-port, on loopback and between two network
// namespaces joined by a veth pair. Real processes throughout; every test checks the greedy
// text against a unified instance and that both sides' transfer gauges end idle.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "byte_flipping_proxy.h"
#include "golden_required.h"
#include "integration/router_helpers.h"
#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

std::string shm_name(const std::string& tag) {
  return tag + std::to_string(::getpid());
}

void remove_segments(const std::string& name) {
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    if (entry.path().filename().string().starts_with("infergrid-kv-" + name + "-")) {
      std::filesystem::remove(entry.path());
    }
  }
}

// A prompt well past the router's 512-token threshold for a handoff.
std::string handoff_prompt(const std::string& tag, int parts = 12) {
  std::string prompt;
  for (int i = 0; i < parts; ++i) prompt += long_prompt(tag + std::to_string(i)) + " ";
  return prompt;
}

// The decode instance's KV transfer port, as it reports it to routers.
int transfer_port_of(const ServerProcess& instance) {
  const HttpResult events = curl(instance.url() + "/kv/events", "", "-m 1");
  const std::string marker = "\"kv_transfer_port\":";
  const size_t at = events.body.find(marker);
  return at == std::string::npos ? 0 : std::atoi(events.body.c_str() + at + marker.size());
}

double metric_of(const ServerProcess& instance, const std::string& name) {
  return metric(curl(instance.url() + "/metrics").body, name).value_or(-1);
}

template <typename F>
bool eventually(F condition, std::chrono::milliseconds within = 10s) {
  const auto until = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

// Nothing pinned, sent, held or running on either side.
void expect_idle(const ServerProcess& prefill, const ServerProcess& decode) {
  EXPECT_TRUE(eventually([&] {
    return metric_of(prefill, "infergrid_kv_transfer_inflight_blocks") == 0 &&
           metric_of(prefill, "infergrid_kv_transfer_sessions_active") == 0 &&
           metric_of(decode, "infergrid_kv_transfer_connections") == 0 &&
           metric_of(decode, "infergrid_kv_transfer_held_blocks") == 0 &&
           metric_of(decode, "infergrid_num_requests_running") == 0;
  })) << curl(prefill.url() + "/metrics").body
      << curl(decode.url() + "/metrics").body;
}

class KvTransferProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(test_model_path().empty());
    name_ = shm_name("xfer");
    remove_segments(name_);
    std::string log;
    ASSERT_TRUE(prefill_.start(test_server_args({"--kv-dram-bytes", "64MiB", "--kv-dram-name",
                                                 name_, "--role", "prefill"}),
                               log))
        << log;
    ASSERT_TRUE(
        decode_.start(test_server_args({"--role", "decode", "--kv-transfer-port", "0"}), log))
        << log;
    ASSERT_TRUE(unified_.start(test_server_args({}), log)) << log;
    decode_transfer_port_ = transfer_port_of(decode_);
    ASSERT_GT(decode_transfer_port_, 0);
  }
  void TearDown() override { remove_segments(name_); }

  std::unique_ptr<ServerProcess> start_router() {
    auto router = std::make_unique<ServerProcess>();
    std::string log;
    EXPECT_TRUE(router->start(
        {"--model", test_model_path(), "--policy", "cache_aware", "--heartbeat-timeout-ms", "1500",
         "--instance", prefill_.url(), "--instance", decode_.url()},
        log, 0, "route"))
        << log;
    EXPECT_TRUE(wait_eligible(*router, 2));
    return router;
  }

  // The handoff the router would send, straight to the prefill instance.
  HttpResult hand_off(const std::string& prompt, int port, int lease_ms = 30000,
                      const std::string& curl_flags = "") {
    const json body = {
        {"prompt", prompt},
        {"max_tokens", 1},
        {"temperature", 0},
        {"infergrid_prefill_handoff",
         {{"transfer_to", "127.0.0.1:" + std::to_string(port)}, {"lease_ms", lease_ms}}}};
    return curl(prefill_.url() + "/v1/completions", body.dump(), curl_flags);
  }

  std::string name_;
  ServerProcess prefill_, decode_, unified_;
  int decode_transfer_port_ = 0;
};

TEST_F(KvTransferProcessTest, APromptPrefilledOnAnotherInstanceStreamsItsBlocksOverTcp) {
  auto router = start_router();
  const std::string prompt = handoff_prompt("theta");
  const Routed first = complete(*router, prompt, "", 24);
  ASSERT_EQ(first.status, 200) << first.body.dump();
  EXPECT_EQ(first.instance(), decode_.url()) << first.record.dump();
  EXPECT_EQ(text_of(first.body), text_of(complete(unified_, prompt, "", 24).body));
  const json& prefill = first.record["attempts"][0]["prefill"];
  ASSERT_TRUE(prefill.is_object()) << first.record.dump();
  EXPECT_EQ(prefill["path"], "tcp");
  EXPECT_EQ(prefill["outcome"], "HTTP 200");
  EXPECT_TRUE(prefill["transfer"]["ok"].get<bool>()) << prefill.dump();
  const int prompt_tokens = first.body["usage"]["prompt_tokens"].get<int>();
  ASSERT_GT(prompt_tokens, 512);
  const int blocks = prompt_tokens / 16;
  EXPECT_EQ(prefill["transfer"]["blocks_accepted"].get<int>(), blocks) << prefill.dump();
  // The decode instance computed none of the full blocks: it loaded them all.
  EXPECT_EQ(first.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), blocks * 16);
  EXPECT_EQ(metric_of(decode_, "infergrid_kv_transfer_loaded_blocks_total"), blocks);
  EXPECT_EQ(
      metric(curl(router->url() + "/metrics").body, "infergrid_route_kv_transfer_blocks_total")
          .value_or(0),
      blocks);
  expect_idle(prefill_, decode_);

  // The next turn: the decode instance holds most of it now, so no handoff.
  const Routed again = complete(*router, prompt + "and then", "", 24);
  ASSERT_EQ(again.status, 200);
  EXPECT_EQ(again.instance(), decode_.url());
  EXPECT_FALSE(again.record["attempts"][0].contains("prefill")) << again.record.dump();
  EXPECT_EQ(text_of(again.body), text_of(complete(unified_, prompt + "and then", "", 24).body));
}

TEST_F(KvTransferProcessTest, APrefillInstanceKilledMidTransferLeavesTheDecodeInstanceToFinish) {
  auto router = start_router();
  // Long enough that the transfer is still going when the kill comes.
  const std::string prompt = handoff_prompt("iota", 160);
  std::thread killer([&] {
    eventually(
        [&] { return metric_of(decode_, "infergrid_kv_transfer_received_blocks_total") > 0; }, 60s);
    prefill_.signal(SIGKILL);
  });
  const Routed routed = complete(*router, prompt, "", 8);
  killer.join();
  ASSERT_EQ(routed.status, 200) << routed.body.dump();
  EXPECT_EQ(routed.instance(), decode_.url());
  EXPECT_EQ(text_of(routed.body), text_of(complete(unified_, prompt, "", 8).body));
  const json& prefill = routed.record["attempts"][0]["prefill"];
  ASSERT_TRUE(prefill.is_object()) << routed.record.dump();
  EXPECT_NE(prefill["outcome"], "HTTP 200") << "the kill came after the transfer ended";
  // What did arrive was loaded (it is a verified prefix), the rest computed; nothing is held.
  EXPECT_TRUE(eventually([&] {
    return metric_of(decode_, "infergrid_kv_transfer_connections") == 0 &&
           metric_of(decode_, "infergrid_kv_transfer_held_blocks") == 0 &&
           metric_of(decode_, "infergrid_num_requests_running") == 0;
  })) << curl(decode_.url() + "/metrics").body;
  EXPECT_GE(metric_of(decode_, "infergrid_kv_transfer_broken_sessions_total"), 1);
}

TEST_F(KvTransferProcessTest, AClientThatAbortsMidTransferLeavesNothingPinnedOrHeld) {
  const std::string prompt = handoff_prompt("kappa", 160);
  // The client gives up 300 ms in, while the prefill and its transfer are running.
  const HttpResult aborted = hand_off(prompt, decode_transfer_port_, 500, "-m 0.3");
  EXPECT_NE(aborted.status, 200);
  // The prefill instance stops the request and its transfer; the blocks the decode instance
  // got expire with their lease.
  expect_idle(prefill_, decode_);
  EXPECT_GE(metric_of(prefill_, "infergrid_kv_transfer_sessions_failed_total"), 1);
}

TEST_F(KvTransferProcessTest, ACorruptedFrameIsDroppedAndItsBlocksAreComputedNeverUsed) {
  const int listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(listen_fd, 4), 0);
  socklen_t len = sizeof(a);
  ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&a), &len);
  // 200 KB in: well inside the stream of block frames, past the hello and the first blocks.
  // Between the prefill and the decode instance.
  std::thread proxy([&] { byte_flipping_proxy(listen_fd, decode_transfer_port_, 200000); });
  const std::string prompt = handoff_prompt("lambda");
  const HttpResult handed = hand_off(prompt, ntohs(a.sin_port));
  proxy.join();
  ::close(listen_fd);
  ASSERT_EQ(handed.status, 200) << handed.body;
  const json transfer = json::parse(handed.body)["infergrid_transfer"];
  EXPECT_TRUE(transfer["ok"].get<bool>()) << transfer.dump();
  EXPECT_EQ(transfer["blocks_rejected"], 1) << transfer.dump();
  EXPECT_EQ(metric_of(decode_, "infergrid_kv_transfer_rejected_blocks_total"), 1);

  // The decode instance loads the blocks before the damaged one and computes from there.
  const json body = {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}};
  const HttpResult decoded = curl(decode_.url() + "/v1/completions", body.dump());
  ASSERT_EQ(decoded.status, 200) << decoded.body;
  const json answer = json::parse(decoded.body);
  EXPECT_EQ(text_of(answer), text_of(complete(unified_, prompt, "", 24).body));
  const int cached = answer["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
  const int prompt_tokens = answer["usage"]["prompt_tokens"].get<int>();
  EXPECT_GT(cached, 0);
  EXPECT_LT(cached, prompt_tokens / 16 * 16) << "the damaged block was used";
  // The blocks after the damaged one were not loaded (a prefix cannot skip one): they expire.
}

TEST_F(KvTransferProcessTest, BadTransferTargetsAreRefusedWithTheFieldNamed) {
  for (const std::string& target :
       {std::string("\"nowhere\""), std::string("\"host:99999\""),
        std::string("{\"transfer_to\":5}"), std::string("{\"transfer_to\":\"h:1\",\"lease\":1}")}) {
    const std::string body =
        R"({"prompt":"hi","max_tokens":1,"infergrid_prefill_handoff":)" +
        (target.front() == '{' ? target : std::string("{\"transfer_to\":") + target + "}") + "}";
    const HttpResult r = curl(prefill_.url() + "/v1/completions", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_NE(r.body.find("infergrid_prefill_handoff"), std::string::npos) << r.body;
  }
  // An instance without a DRAM tier has nothing to stream from.
  const HttpResult no_tier = curl(
      unified_.url() + "/v1/completions",
      R"({"prompt":"hi","max_tokens":1,"infergrid_prefill_handoff":{"transfer_to":"127.0.0.1:1"}})");
  EXPECT_EQ(no_tier.status, 400) << no_tier.body;
  // A receiver that is not there: the prefill still answers, saying the transfer failed.
  const HttpResult unreachable = hand_off(handoff_prompt("mu", 2), 1);
  ASSERT_EQ(unreachable.status, 200) << unreachable.body;
  EXPECT_FALSE(json::parse(unreachable.body)["infergrid_transfer"]["ok"].get<bool>());
  expect_idle(prefill_, decode_);
}

// --- two hosts: network namespaces joined by a veth pair -----------------------------------

int run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

// Two network namespaces, A (10.77.0.1) and B (10.77.0.2), joined by a veth pair; removed at
// destruction (after the processes in them are gone).
struct NamespacePair {
  std::string a, b;
  bool ok = false;
  std::string why;
  NamespacePair() {
    const std::string tag = std::to_string(::getpid());
    a = "igxa" + tag;
    b = "igxb" + tag;
    run("ip netns del " + a);
    run("ip netns del " + b);
    if (run("ip netns add " + a) != 0 || run("ip netns add " + b) != 0) {
      why = "this machine does not allow network namespaces (ip netns add failed)";
      return;
    }
    ok = run("ip -n " + a + " link add va type veth peer name vb netns " + b) == 0 &&
         run("ip -n " + a + " addr add 10.77.0.1/24 dev va") == 0 &&
         run("ip -n " + b + " addr add 10.77.0.2/24 dev vb") == 0 &&
         run("ip -n " + a + " link set va up") == 0 && run("ip -n " + b + " link set vb up") == 0 &&
         run("ip -n " + a + " link set lo up") == 0 && run("ip -n " + b + " link set lo up") == 0;
    if (!ok) why = "no veth pair between network namespaces on this machine";
  }
  ~NamespacePair() {
    run("ip netns del " + a);
    run("ip netns del " + b);
  }
  std::vector<std::string> in(const std::string& ns) const { return {"ip", "netns", "exec", ns}; }
};

// curl run inside a namespace.
HttpResult ns_curl(const std::string& ns, const std::string& url, const std::string& body = "") {
  const auto dir = std::filesystem::temp_directory_path();
  const std::string tag = std::to_string(::getpid());
  const std::string body_file = (dir / ("ig_ns_body_" + tag)).string();
  const std::string request_file = (dir / ("ig_ns_request_" + tag)).string();
  std::string command = "ip netns exec " + ns + " curl -s -m 120 -o " + body_file +
                        " -w '%{http_code}' -H 'Content-Type: application/json' ";
  if (!body.empty()) {
    FILE* f = std::fopen(request_file.c_str(), "wb");
    std::fwrite(body.data(), 1, body.size(), f);
    std::fclose(f);
    command += "--data-binary @" + request_file + " ";
  }
  command += "'" + url + "'";
  HttpResult out;
  FILE* p = ::popen(command.c_str(), "r");
  std::array<char, 64> code{};
  if (p != nullptr && std::fgets(code.data(), code.size(), p) != nullptr) {
    out.status = std::atoi(code.data());
  }
  if (p != nullptr) ::pclose(p);
  FILE* f = std::fopen(body_file.c_str(), "rb");
  if (f != nullptr) {
    std::array<char, 65536> buf{};
    size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.body.append(buf.data(), n);
    std::fclose(f);
  }
  std::filesystem::remove(body_file);
  std::filesystem::remove(request_file);
  return out;
}

TEST(KvTransferAcrossHostsTest, TheSameGreedyTokensWhenThePromptIsPrefilledOnAnotherHost) {
  ASSERT_FALSE(test_model_path().empty());
  NamespacePair hosts;
  if (!hosts.ok) GTEST_SKIP() << hosts.why;
  const std::string name = shm_name("xferns");
  remove_segments(name);
  // Host A: the prefill instance and the router; host B: the decode instance.
  ServerProcess prefill, decode, router, unified;
  std::string log;
  prefill.set_launcher(hosts.in(hosts.a));
  ASSERT_TRUE(prefill.start(
      test_server_args({"--kv-dram-bytes", "64MiB", "--kv-dram-name", name, "--role", "prefill"}),
      log))
      << log;
  decode.set_launcher(hosts.in(hosts.b));
  decode.set_host("10.77.0.2");
  ASSERT_TRUE(decode.start(test_server_args({"--role", "decode", "--kv-transfer-port", "0"}), log))
      << log;
  router.set_launcher(hosts.in(hosts.a));
  ASSERT_TRUE(router.start(
      {"--model", test_model_path(), "--policy", "cache_aware", "--heartbeat-timeout-ms", "1500",
       "--instance", prefill.url(), "--instance", decode.url()},
      log, 0, "route"))
      << log;
  ASSERT_TRUE(unified.start(test_server_args({}), log)) << log;
  ASSERT_TRUE(eventually([&] {
    const json listed =
        json::parse(ns_curl(hosts.a, router.url() + "/route/instances").body, nullptr, false);
    int eligible = 0;
    if (listed.is_object()) {
      for (const auto& inst : listed["instances"]) eligible += inst["eligible"].get<bool>();
    }
    return eligible == 2;
  })) << "the router in namespace A does not reach both instances";

  for (const char* tag : {"nu", "xi"}) {
    const std::string prompt = handoff_prompt(tag);
    const json request = {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}};
    const HttpResult routed = ns_curl(hosts.a, router.url() + "/v1/completions", request.dump());
    ASSERT_EQ(routed.status, 200) << routed.body;
    const json answer = json::parse(routed.body);
    const HttpResult direct = curl(unified.url() + "/v1/completions", request.dump());
    EXPECT_EQ(text_of(answer), text_of(json::parse(direct.body)));
    const int prompt_tokens = answer["usage"]["prompt_tokens"].get<int>();
    EXPECT_EQ(answer["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(),
              prompt_tokens / 16 * 16)
        << "the decode instance computed blocks the prefill instance had sent";
  }
  const std::string decode_metrics = ns_curl(hosts.b, decode.url() + "/metrics").body;
  EXPECT_GT(metric(decode_metrics, "infergrid_kv_transfer_received_blocks_total").value_or(0), 0);
  EXPECT_EQ(metric(decode_metrics, "infergrid_kv_transfer_held_blocks").value_or(-1), 0);
  const std::string prefill_metrics = ns_curl(hosts.a, prefill.url() + "/metrics").body;
  EXPECT_EQ(metric(prefill_metrics, "infergrid_kv_transfer_inflight_blocks").value_or(-1), 0);
  remove_segments(name);
}

}  // namespace
}  // namespace infergrid::testing
