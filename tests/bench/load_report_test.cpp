// Report math on data whose answers are known, and the /metrics text a server may send.
#include "bench/load_report.h"

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace infergrid {
namespace {

RequestRecord ok_record(double ttft_s, double e2e_s, int completion_tokens,
                        int prompt_tokens = 10) {
  RequestRecord r;
  r.success = true;
  r.ttft_s = ttft_s;
  r.e2e_s = e2e_s;
  r.completion_tokens = completion_tokens;
  r.requested_output_tokens = completion_tokens;
  r.prompt_tokens = prompt_tokens;
  r.usage_reported = true;
  return r;
}

RequestRecord failed_record(const std::string& error) {
  RequestRecord r;
  r.error = error;
  return r;
}

TEST(LoadReport, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> v = {10, 1, 9, 2, 8, 3, 7, 4, 6, 5};  // order must not matter
  EXPECT_DOUBLE_EQ(percentile(v, 50), 5.5);
  EXPECT_DOUBLE_EQ(percentile(v, 90), 9.1);
  EXPECT_DOUBLE_EQ(percentile(v, 99), 9.91);
  EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 100), 10);
  EXPECT_DOUBLE_EQ(percentile({42}, 99), 42);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
  const Distribution d = summarize_distribution(v);
  EXPECT_EQ(d.count, 10u);
  EXPECT_DOUBLE_EQ(d.mean, 5.5);
}

TEST(LoadReport, TpotExcludesTheFirstTokenAndNeedsTwoTokens) {
  EXPECT_DOUBLE_EQ(ok_record(0.5, 2.5, 5).tpot_s(), 0.5);  // (2.5 - 0.5) / 4
  EXPECT_LT(ok_record(0.5, 0.5, 1).tpot_s(), 0);
}

TEST(LoadReport, SummaryCountsThroughputGoodputAndErrors) {
  std::vector<RequestRecord> records = {
      ok_record(0.1, 1.1, 11),  // TPOT 100 ms
      ok_record(0.2, 0.7, 11),  // TPOT 50 ms
      ok_record(0.4, 0.9, 11),  // TTFT too slow for the SLO below
      ok_record(0.1, 0.1, 1),   // no TPOT: meets any TPOT objective
      failed_record("HTTP 500: boom"), failed_record("HTTP 500: boom"), failed_record("timed out"),
  };
  records[0].itl_s = {0.1, 0.1};
  records[1].itl_s = {0.05};
  SloOptions slo;
  slo.ttft_ms = 300;
  slo.tpot_ms = 60;
  const LoadReport r = summarize(records, 2.0, slo);
  EXPECT_EQ(r.n_requests, 7u);
  EXPECT_EQ(r.n_success, 4u);
  EXPECT_EQ(r.n_failed, 3u);
  EXPECT_EQ(r.first_errors, (std::vector<std::string>{"HTTP 500: boom", "timed out"}));
  EXPECT_EQ(r.completion_tokens, 34);
  EXPECT_EQ(r.prompt_tokens, 40);
  EXPECT_DOUBLE_EQ(r.request_throughput, 2.0);
  EXPECT_DOUBLE_EQ(r.output_throughput, 17.0);
  EXPECT_DOUBLE_EQ(r.total_token_throughput, 37.0);
  EXPECT_EQ(r.n_good, 2u);  // records 1 and 3
  ASSERT_TRUE(r.goodput.has_value());
  EXPECT_DOUBLE_EQ(*r.goodput, 1.0);
  EXPECT_EQ(r.ttft_ms.count, 4u);
  EXPECT_NEAR(r.ttft_ms.mean, 200, 1e-9);
  EXPECT_EQ(r.tpot_ms.count, 3u);
  EXPECT_NEAR(r.tpot_ms.p50, 50, 1e-9);
  EXPECT_EQ(r.itl_ms.count, 3u);
  EXPECT_NEAR(r.itl_ms.p50, 100, 1e-9);
  EXPECT_NEAR(r.e2e_ms.p99, 1094, 1e-6);  // 900 + 0.97 * (1100 - 900)

  const auto j = nlohmann::json::parse(r.to_json());
  EXPECT_EQ(j["successful"], 4);
  EXPECT_EQ(j["failed"], 3);
  EXPECT_DOUBLE_EQ(j["goodput"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["ttft_ms"]["mean"].get<double>(), r.ttft_ms.mean);
  EXPECT_TRUE(j["metrics_check"].is_null());
  EXPECT_NE(r.to_text().find("timed out"), std::string::npos);
}

TEST(LoadReport, NoSloMeansNoGoodput) {
  const LoadReport r = summarize({ok_record(0.1, 1.0, 4)}, 1.0, SloOptions{});
  EXPECT_FALSE(r.goodput.has_value());
  EXPECT_TRUE(nlohmann::json::parse(r.to_json())["goodput"].is_null());
}

TEST(LoadReport, ShortOutputsAreFlagged) {
  RequestRecord r = ok_record(0.1, 1.0, 4);
  r.requested_output_tokens = 8;
  EXPECT_EQ(summarize({r}, 1.0, SloOptions{}).n_short_output, 1u);
}

RequestRecord turn_record(int turn, double ttft_s, int prompt_tokens, int cached_tokens) {
  RequestRecord r = ok_record(ttft_s, ttft_s + 0.5, 4, prompt_tokens);
  r.turn = turn;
  r.cached_tokens = cached_tokens;
  return r;
}

TEST(LoadReport, TtftIsSplitIntoFirstAndReturningTurns) {
  std::vector<RequestRecord> records = {
      turn_record(1, 0.4, 100, 0),   turn_record(1, 0.2, 100, 0),
      turn_record(2, 0.1, 200, 150), turn_record(3, 0.05, 300, 250),
      turn_record(2, 0.03, 210, 0),  failed_record("HTTP 500: boom"),  // a failed turn 1
  };
  RequestRecord failed_returning = failed_record("not sent");
  failed_returning.turn = 4;
  records.push_back(failed_returning);
  const LoadReport r = summarize(records, 1.0, SloOptions{});
  EXPECT_TRUE(r.has_returning_turns);
  EXPECT_EQ(r.ttft_ms.count, 5u);
  EXPECT_EQ(r.ttft_first_turn_ms.count, 2u);
  EXPECT_NEAR(r.ttft_first_turn_ms.mean, 300, 1e-9);
  EXPECT_NEAR(r.ttft_first_turn_ms.p50, 300, 1e-9);
  EXPECT_EQ(r.ttft_returning_turn_ms.count, 3u);  // failures have no TTFT
  EXPECT_NEAR(r.ttft_returning_turn_ms.mean, 60, 1e-9);
  EXPECT_NEAR(r.ttft_returning_turn_ms.p50, 50, 1e-9);
  EXPECT_NEAR(r.ttft_returning_turn_ms.p90, 90, 1e-9);  // 50 + 0.8 * (100 - 50)
  EXPECT_NEAR(r.ttft_returning_turn_ms.p99, 99, 1e-9);
  EXPECT_EQ(r.prompt_tokens_returning, 710);
  EXPECT_EQ(r.cached_tokens_returning, 400);

  const auto j = nlohmann::json::parse(r.to_json());
  EXPECT_EQ(j["ttft_first_turn_ms"]["count"], 2);
  EXPECT_DOUBLE_EQ(j["ttft_first_turn_ms"]["mean"].get<double>(), r.ttft_first_turn_ms.mean);
  EXPECT_EQ(j["ttft_returning_turn_ms"]["count"], 3);
  for (const char* field : {"mean", "p50", "p90", "p99"}) {
    EXPECT_TRUE(j["ttft_returning_turn_ms"][field].is_number()) << field;
  }
  EXPECT_DOUBLE_EQ(j["ttft_returning_turn_ms"]["p90"].get<double>(), r.ttft_returning_turn_ms.p90);
  EXPECT_EQ(j["prompt_tokens_returning"], 710);
  EXPECT_EQ(j["cached_tokens_returning"], 400);

  const std::string text = r.to_text();
  const size_t first = text.find("\nTTFT first turns ");
  const size_t returning = text.find("\nTTFT returning turns ");
  ASSERT_NE(first, std::string::npos) << text;
  ASSERT_NE(returning, std::string::npos) << text;
  EXPECT_LT(text.find("\nE2E "), first);  // under the existing rows
  EXPECT_LT(first, returning);
  const std::string row = text.substr(returning + 1, text.find('\n', returning + 1) - returning);
  EXPECT_NE(row.find(" 3 "), std::string::npos) << row;
  EXPECT_NE(row.find("60.00"), std::string::npos) << row;
}

TEST(LoadReport, SingleTurnWorkloadsHaveNoReturningTurns) {
  const LoadReport r = summarize({ok_record(0.1, 1.0, 4), ok_record(0.3, 1.0, 4)}, 1.0, {});
  EXPECT_FALSE(r.has_returning_turns);
  EXPECT_EQ(r.ttft_first_turn_ms.count, 2u);
  EXPECT_NEAR(r.ttft_first_turn_ms.mean, r.ttft_ms.mean, 1e-9);
  EXPECT_EQ(r.ttft_returning_turn_ms.count, 0u);
  const auto j = nlohmann::json::parse(r.to_json());
  EXPECT_TRUE(j["ttft_returning_turn_ms"].is_null());
  EXPECT_EQ(j["ttft_first_turn_ms"]["count"], 2);
  EXPECT_EQ(j["prompt_tokens_returning"], 0);
  EXPECT_EQ(j["cached_tokens_returning"], 0);
  EXPECT_EQ(r.to_text().find("returning"), std::string::npos);
  // Nothing measured at all: both splits are null, not zero latency.
  const auto empty = nlohmann::json::parse(summarize({}, 0, {}).to_json());
  EXPECT_TRUE(empty["ttft_first_turn_ms"].is_null());
  EXPECT_TRUE(empty["ttft_returning_turn_ms"].is_null());
}

TEST(PrometheusText, ReadsTheThreeCountersSummedOverLabels) {
  const std::string text =
      "# HELP infergrid_request_success_total Requests finished successfully.\n"
      "# TYPE infergrid_request_success_total counter\n"
      "infergrid_request_success_total{finish_reason=\"length\"} 12\n"
      "infergrid_request_success_total{finish_reason=\"stop\"} 3\n"
      "# TYPE infergrid_prompt_tokens_total counter\n"
      "infergrid_prompt_tokens_total{model=\"a \\\"quoted} name\"} 1.5e3 1700000000000\n"
      "infergrid_generation_tokens_total 640\r\n"
      "infergrid_generation_tokens_created 1700000000\n"
      "infergrid_time_to_first_token_seconds_bucket{le=\"+Inf\"} 15\n"
      "not a sample line\n"
      "   \n";
  const ServerCounters c = parse_prometheus_counters(text);
  ASSERT_TRUE(c.request_success && c.prompt_tokens && c.generation_tokens);
  EXPECT_DOUBLE_EQ(*c.request_success, 15);
  EXPECT_DOUBLE_EQ(*c.prompt_tokens, 1500);
  EXPECT_DOUBLE_EQ(*c.generation_tokens, 640);
}

TEST(PrometheusText, MissingCountersAreAbsentNotZero) {
  const ServerCounters c = parse_prometheus_counters("process_cpu_seconds_total 3\n");
  EXPECT_FALSE(c.request_success.has_value());
  EXPECT_FALSE(c.prompt_tokens.has_value());
  EXPECT_FALSE(c.generation_tokens.has_value());
  EXPECT_FALSE(parse_prometheus_counters("").request_success.has_value());
}

TEST(PrometheusText, FallsBackToVllmNames) {
  const ServerCounters c = parse_prometheus_counters(
      "vllm:request_success_total{finished_reason=\"length\",model_name=\"m\"} 4.0\n"
      "vllm:prompt_tokens_total{model_name=\"m\"} 400.0\n"
      "vllm:generation_tokens_total{model_name=\"m\"} 64.0\n");
  EXPECT_EQ(c.request_success, 4.0);
  EXPECT_EQ(c.prompt_tokens, 400.0);
  EXPECT_EQ(c.generation_tokens, 64.0);
}

TEST(PrometheusText, DeltasNeedBothReadings) {
  MetricsCheck check;
  check.before = parse_prometheus_counters("infergrid_prompt_tokens_total 100\n");
  EXPECT_FALSE(check.delta(&ServerCounters::prompt_tokens).has_value());
  check.after = parse_prometheus_counters(
      "infergrid_prompt_tokens_total 350\ninfergrid_request_success_total 2\n");
  EXPECT_EQ(check.delta(&ServerCounters::prompt_tokens), 250.0);
  EXPECT_FALSE(check.delta(&ServerCounters::request_success).has_value());
}

// The server's KV-cache series become the report's KV-cache section: deltas of counters over
// the run, gauges as they stand after it, one row per tier the server has.
TEST(PrometheusText, KvCacheSectionShowsTierDeltasAndOccupancy) {
  const auto page = [](int hits, int read, int blocks) {
    return fmt::format(
        "infergrid_prompt_tokens_total 10\n"
        "infergrid_computed_tokens_total {}\n"
        "infergrid_prefix_cache_hit_tokens_total {}\n"
        "infergrid_kv_tier_hit_tokens_total {}\n"
        "infergrid_preemptions_total 1\n"
        "infergrid_kv_blocks_total 128\n"
        "infergrid_kv_dram_hits_total {}\n"
        "infergrid_kv_dram_misses_total 4\n"
        "infergrid_kv_dram_read_bytes_total {}\n"
        "infergrid_kv_dram_written_bytes_total 2048\n"
        "infergrid_kv_dram_blocks_dropped_total 0\n"
        "infergrid_kv_dram_evicted_total 0\n"
        "infergrid_kv_dram_blocks {}\n"
        "infergrid_kv_dram_used_bytes 3145728\n"
        "infergrid_kv_dram_capacity_bytes 268435456\n",
        100 + hits * 16, hits * 16, hits * 16, hits, read, blocks);
  };
  LoadReport report;
  report.metrics.emplace();
  report.metrics->before = parse_prometheus_counters(page(2, 1000, 5));
  report.metrics->after = parse_prometheus_counters(page(12, 9000, 40));
  EXPECT_EQ(report.metrics->kv_delta("infergrid_kv_dram_hits_total"), 10.0);
  EXPECT_EQ(report.metrics->kv_after("infergrid_kv_dram_blocks"), 40.0);
  EXPECT_FALSE(report.metrics->kv_delta("infergrid_kv_disk_hits_total").has_value());
  const std::string text = report.to_text();
  EXPECT_NE(text.find("KV cache (server /metrics, during the run): 160 tokens computed, 160 "
                      "prompt tokens from the prefix cache (160 of them loaded from a tier), 0 "
                      "preemptions"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  dram         10        0          8000"), std::string::npos) << text;
  EXPECT_EQ(text.find("  disk "), std::string::npos) << text;  // no disk tier on that server
  const auto j = nlohmann::json::parse(report.to_json());
  EXPECT_EQ(j["metrics_check"]["kv_cache"]["tiers"]["dram"]["hits"], 10.0);
  EXPECT_EQ(j["metrics_check"]["kv_cache"]["tiers"]["dram"]["blocks_after"], 40.0);
  EXPECT_EQ(j["metrics_check"]["kv_cache"]["tier_hit_tokens"], 160.0);
  EXPECT_FALSE(j["metrics_check"]["kv_cache"]["tiers"].contains("disk"));

  // Another server (no infergrid series): no section, no error.
  LoadReport other;
  other.metrics.emplace();
  other.metrics->before = parse_prometheus_counters("vllm:prompt_tokens_total 1\n");
  other.metrics->after = parse_prometheus_counters("vllm:prompt_tokens_total 2\n");
  EXPECT_EQ(other.to_text().find("KV cache"), std::string::npos);
  EXPECT_TRUE(nlohmann::json::parse(other.to_json())["metrics_check"]["kv_cache"].is_null());
}

}  // namespace
}  // namespace infergrid
