// infergrid route --planner on real processes: a load whose TTFT misses its SLO while decode
// has room converts one decode instance to prefill (once: the cooldown and the last-decode
// rule hold it there); a load within both SLOs converts nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "golden_required.h"
#include "integration/router_helpers.h"
#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

class PlannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(test_model_path().empty());
    name_ = "planner" + std::to_string(::getpid());
    remove_segments();
    const std::vector<std::string> dram = {"--kv-dram-bytes", "64MiB", "--kv-dram-name", name_};
    for (const char* role : {"prefill", "decode", "decode"}) {
      auto inst = std::make_unique<ServerProcess>();
      auto flags = dram;
      flags.insert(flags.end(), {"--role", role});
      std::string log;
      ASSERT_TRUE(inst->start(test_server_args(flags), log)) << log;
      instances_.push_back(std::move(inst));
    }
  }
  void TearDown() override { remove_segments(); }
  void remove_segments() {
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
      if (entry.path().filename().string().starts_with("infergrid-kv-" + name_ + "-")) {
        std::filesystem::remove(entry.path());
      }
    }
  }

  std::unique_ptr<ServerProcess> start_router(const std::string& slo_ttft_ms,
                                              const std::string& slo_tpot_ms) {
    std::vector<std::string> args = {"--model",
                                     test_model_path(),
                                     "--heartbeat-timeout-ms",
                                     "1500",
                                     "--planner",
                                     "--slo-ttft-ms",
                                     slo_ttft_ms,
                                     "--slo-tpot-ms",
                                     slo_tpot_ms,
                                     "--planner-interval-ms",
                                     "200",
                                     "--planner-hold",
                                     "3",
                                     "--planner-cooldown-ms",
                                     "60000",
                                     "--planner-min-samples",
                                     "3",
                                     "--planner-window-ms",
                                     "60000"};
    for (auto& inst : instances_) args.insert(args.end(), {"--instance", inst->url()});
    auto router = std::make_unique<ServerProcess>();
    std::string log;
    EXPECT_TRUE(router->start(args, log, 0, "route")) << log;
    EXPECT_TRUE(wait_eligible(*router, 3));
    return router;
  }

  static void stream_some(const ServerProcess& router, int n) {
    for (int i = 0; i < n; ++i) {
      const json body = {{"prompt", "Tell me about the river number " + std::to_string(i)},
                         {"max_tokens", 8},
                         {"temperature", 0},
                         {"stream", true}};
      const HttpResult r = curl(router.url() + "/v1/completions", body.dump());
      ASSERT_EQ(r.status, 200) << r.body;
      ASSERT_NE(r.body.find("[DONE]"), std::string::npos) << r.body;
    }
  }

  static int roles(const ServerProcess& router, const std::string& role) {
    int n = 0;
    const json listed = instances_of(router);  // (a temporary would die before the loop)
    for (const auto& inst : listed["instances"]) n += inst["role"] == role;
    return n;
  }

  static double conversions(const ServerProcess& router, const std::string& to) {
    const std::string m = curl(router.url() + "/metrics").body;
    return metric(m, "infergrid_route_planner_conversions_total{to=\"" + to + "\",result=\"ok\"}")
        .value_or(-1);
  }

  std::string name_;
  std::vector<std::unique_ptr<ServerProcess>> instances_;
};

TEST_F(PlannerTest, ATtftOverItsSloWithRoomInDecodeConvertsOneDecodeInstanceToPrefill) {
  auto router = start_router("1", "100000");  // every TTFT misses; no TPOT does
  stream_some(*router, 6);
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (roles(*router, "prefill") < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(roles(*router, "prefill"), 2) << curl(router->url() + "/route/planner").body;
  EXPECT_EQ(roles(*router, "decode"), 1);
  EXPECT_EQ(conversions(*router, "prefill"), 1);
  // The instance itself says so (and tells the next router that connects).
  int prefill_instances = 0;
  for (const auto& inst : instances_) {
    const json role = json::parse(curl(inst->url() + "/admin/role").body, nullptr, false);
    prefill_instances += role.value("role", "") == "prefill";
  }
  EXPECT_EQ(prefill_instances, 2);
  // More of the same load: no second conversion (cooldown; the last decode instance stays).
  stream_some(*router, 6);
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(conversions(*router, "prefill"), 1);
  EXPECT_EQ(roles(*router, "decode"), 1);
  const json state = json::parse(curl(router->url() + "/route/planner").body, nullptr, false);
  EXPECT_EQ(state.value("last_decision", ""), "hold") << state.dump();
}

TEST_F(PlannerTest, ALoadWithinBothSlosConvertsNothing) {
  auto router = start_router("100000", "100000");
  stream_some(*router, 6);
  std::this_thread::sleep_for(2500ms);  // a dozen intervals
  stream_some(*router, 4);
  std::this_thread::sleep_for(1000ms);
  EXPECT_EQ(conversions(*router, "prefill"), 0);
  EXPECT_EQ(conversions(*router, "decode"), 0);
  EXPECT_EQ(roles(*router, "prefill"), 1);
  EXPECT_EQ(roles(*router, "decode"), 2);
  const std::string m = curl(router->url() + "/metrics").body;
  EXPECT_GE(metric(m, "infergrid_route_planner_decisions_total{decision=\"hold\"}").value_or(0),
            10);
  const json state = json::parse(curl(router->url() + "/route/planner").body, nullptr, false);
  EXPECT_NE(state.value("last_reason", "").find("within SLOs"), std::string::npos) << state.dump();
}

TEST(RoleSwitchTest, AnInstanceRefusesARoleItCannotTakeAndReportsTheOneItHas) {
  ServerProcess instance;
  std::string log;
  ASSERT_TRUE(instance.start(test_server_args({"--role", "decode"}), log)) << log;
  EXPECT_EQ(json::parse(curl(instance.url() + "/admin/role").body)["role"], "decode");
  // No DRAM tier: it cannot hand KV off as a prefill instance.
  const HttpResult refused = curl(instance.url() + "/admin/role", R"({"role":"prefill"})");
  EXPECT_EQ(refused.status, 400) << refused.body;
  for (const char* bad : {"", "{}", R"({"role":5})", R"({"role":"leader"})", "[1]"}) {
    EXPECT_EQ(curl(instance.url() + "/admin/role", bad, "-X POST").status, 400) << bad;
  }
  const HttpResult unified = curl(instance.url() + "/admin/role", R"({"role":"unified"})");
  ASSERT_EQ(unified.status, 200) << unified.body;
  EXPECT_EQ(json::parse(unified.body)["previous"], "decode");
  EXPECT_EQ(json::parse(curl(instance.url() + "/admin/role").body)["role"], "unified");
}

}  // namespace
}  // namespace infergrid::testing
