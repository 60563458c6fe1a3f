// `infergrid bench serve` against a real `infergrid serve` on loopback: what the load generator
// counts (requests, prompt and generated tokens from usage) must equal what the server counted
// in its /metrics over the same run.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "integration/server_process.h"

namespace infergrid::testing {
namespace {

using nlohmann::json;

struct BenchRun {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

BenchRun run_bench(const std::string& args) {
  const auto err_file =
      std::filesystem::temp_directory_path() / ("ig_bench_serve_err_" + std::to_string(::getpid()));
  const std::string command = std::string(INFERGRID_BINARY) + " bench serve --no-progress " + args +
                              " 2>" + err_file.string();
  BenchRun r;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    r.out.append(buffer.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (FILE* f = std::fopen(err_file.c_str(), "rb")) {
    while ((n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) r.err.append(buffer.data(), n);
    std::fclose(f);
  }
  std::filesystem::remove(err_file);
  return r;
}

// The whitespace-separated words of the first line of `text` that starts with `label`.
std::vector<std::string> row(const std::string& text, const std::string& label) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(label, 0) != 0) continue;
    std::istringstream words(line.substr(label.size()));
    std::vector<std::string> out;
    std::string w;
    while (words >> w) out.push_back(w);
    return out;
  }
  return {};
}

class BenchServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(test_model_path().empty());
    std::string log;
    ASSERT_TRUE(server_.start({"--model", test_model_path(), "--served-model-name", "tiny",
                               "--threads", "1", "--kv-cache-bytes", "64MiB"},
                              log))
        << log;
  }

  // Runs the bench with --check-metrics --json and checks client totals against the server's
  // deltas, and against the server's absolute counters (this server served nothing else).
  json run_and_check(const std::string& args, int expected_requests, int output_len) {
    const BenchRun run = run_bench("--url " + server_.url() + " --check-metrics --json " + args);
    EXPECT_EQ(run.exit_code, 0) << run.err << run.out;
    const json report = json::parse(run.out, nullptr, false);
    EXPECT_FALSE(report.is_discarded()) << run.out << run.err;
    if (report.is_discarded()) return report;
    EXPECT_EQ(report["model"], "tiny");
    EXPECT_EQ(report["successful"], expected_requests) << report["errors"];
    EXPECT_EQ(report["failed"], 0);
    // ignore_eos makes every answer exactly max_tokens long.
    EXPECT_EQ(report["completion_tokens"], expected_requests * output_len);
    EXPECT_EQ(report["short_outputs"], 0);
    EXPECT_GT(report["prompt_tokens"].get<int64_t>(), 0);
    EXPECT_EQ(report["ttft_ms"]["count"], expected_requests);

    const json& check = report["metrics_check"];
    EXPECT_TRUE(check["error"].is_null()) << check["error"];
    for (const char* counter : {"request_success", "prompt_tokens", "generation_tokens"}) {
      EXPECT_EQ(check["server_delta"][counter].get<double>(),
                check["client"][counter].get<double>())
          << counter;
    }
    EXPECT_EQ(check["client"]["prompt_tokens"], report["prompt_tokens"]);

    const auto metrics = curl(server_.url() + "/metrics");
    EXPECT_EQ(metric(metrics.body, "infergrid_request_success_total"),
              check["server_after"]["request_success"].get<double>());
    return report;
  }

  ServerProcess server_;
};

TEST_F(BenchServeTest, SharedPrefixClientTotalsEqualServerMetrics) {
  const auto output = std::filesystem::temp_directory_path() /
                      ("ig_bench_serve_report_" + std::to_string(::getpid()) + ".json");
  const json report = run_and_check(
      "--workload shared-prefix --num-requests 12 --concurrency 3 --tenants 2 --prefix-len 200 "
      "--input-len 20 --output-len 8 --output " +
          output.string(),
      12, 8);
  // --output writes the same report.
  std::ifstream in(output);
  const json saved = json::parse(in, nullptr, false);
  std::filesystem::remove(output);
  ASSERT_FALSE(saved.is_discarded());
  EXPECT_EQ(saved["successful"], report["successful"]);
  EXPECT_EQ(saved["completion_tokens"], report["completion_tokens"]);
}

TEST_F(BenchServeTest, MultiTurnChatAndPoissonArrivals) {
  constexpr int kConversations = 3, kTurns = 3;
  const json report = run_and_check(
      "--workload multi-turn --conversations " + std::to_string(kConversations) + " --turns " +
          std::to_string(kTurns) +
          " --input-len 15 --output-len 6 --prefix-len 50 --request-rate 50 --think-time-ms 5",
      kConversations * kTurns, 6);
  EXPECT_EQ(report["endpoint"], "chat");
  // Every turn after the first resends a history this server has seen.
  ASSERT_TRUE(report["ttft_returning_turn_ms"].is_object()) << report.dump(2);
  EXPECT_EQ(report["ttft_returning_turn_ms"]["count"], kConversations * (kTurns - 1));
  EXPECT_EQ(report["ttft_first_turn_ms"]["count"], kConversations);
  EXPECT_GT(report["prompt_tokens_returning"].get<int64_t>(), 0);
  EXPECT_LT(report["prompt_tokens_returning"].get<int64_t>(),
            report["prompt_tokens"].get<int64_t>());
  // The history of a returning turn is in the prefix cache (the pool holds all of it), and the
  // server reports it in usage.prompt_tokens_details.cached_tokens.
  EXPECT_GT(report["cached_tokens_returning"].get<int64_t>(), 0);
  EXPECT_LE(report["cached_tokens_returning"].get<int64_t>(),
            report["prompt_tokens_returning"].get<int64_t>());
}

TEST_F(BenchServeTest, TextReportShowsTheComparison) {
  const BenchRun run = run_bench("--url " + server_.url() +
                                 " --check-metrics --num-requests 4 --input-len 10 "
                                 "--output-len 4 --endpoint chat --slo-ttft-ms 60000");
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  EXPECT_EQ(row(run.out, "requests "),
            (std::vector<std::string>{"4", "ok,", "0", "failed,", "of", "4"}))
      << run.out;
  const auto goodput = row(run.out, "goodput");
  ASSERT_GE(goodput.size(), 5u) << run.out;
  EXPECT_EQ(std::vector<std::string>(goodput.begin() + 2, goodput.begin() + 5),
            (std::vector<std::string>{"(4", "of", "4"}));
  EXPECT_EQ(row(run.out, "TTFT").at(0), "4") << run.out;
  EXPECT_EQ(row(run.out, "successful requests"), (std::vector<std::string>{"4", "4"})) << run.out;
}

TEST(BenchServeCli, SetupErrorsAreClearAndNonZero) {
  const BenchRun no_trace = run_bench("--workload trace --model m");
  EXPECT_EQ(no_trace.exit_code, 1);
  EXPECT_NE(no_trace.err.find("--trace-file"), std::string::npos) << no_trace.err;
  const BenchRun bad_url = run_bench("--url https://127.0.0.1:1 --model m");
  EXPECT_EQ(bad_url.exit_code, 1);
  EXPECT_NE(bad_url.err.find("https"), std::string::npos) << bad_url.err;
  const BenchRun bad_workload = run_bench("--workload bursty");
  EXPECT_NE(bad_workload.exit_code, 0);
}

}  // namespace
}  // namespace infergrid::testing
