#include "cli/bench_serve_cmd.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "bench/serve_bench.h"

namespace infergrid {

namespace {

// CLI11 binds flags to storage that must outlive parsing; main() only sees the two functions in
// the header, so the storage is this one object.
struct BenchServeFlags {
  CLI::App* command = nullptr;
  ServeBenchOptions options;
  std::string workload = "random";
  std::string endpoint = "completions";
  double temperature = 0;
  CLI::Option* temperature_flag = nullptr;
  bool json = false;
  std::string output_file;
};

BenchServeFlags& flags() {
  static BenchServeFlags f;
  return f;
}

int fail(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.to_string().c_str());
  return 1;
}

}  // namespace

CLI::App* add_bench_serve_command(CLI::App& bench_cmd) {
  BenchServeFlags& f = flags();
  ServeBenchOptions& o = f.options;
  WorkloadOptions& w = o.workload;
  CLI::App* cmd = bench_cmd.add_subcommand(
      "serve",
      "Load-test any OpenAI-compatible server (ours, llama.cpp, vLLM): TTFT/TPOT/ITL/E2E "
      "percentiles, throughput, goodput");
  f.command = cmd;

  cmd->add_option("--url", o.url, "Server base URL")->capture_default_str()->group("Server");
  cmd->add_option("--model", o.model, "Model name to send (default: first id of GET /v1/models)")
      ->group("Server");
  cmd->add_option("--endpoint", f.endpoint, "completions or chat (multi-turn always uses chat)")
      ->capture_default_str()
      ->check(CLI::IsMember({"completions", "chat"}))
      ->group("Server");
  cmd->add_option("--timeout-s", o.timeout_s, "Per-request timeout in seconds")
      ->capture_default_str()
      ->group("Server");
  f.temperature_flag =
      cmd->add_option("--temperature", f.temperature, "Sampling temperature (default: 0, greedy)")
          ->group("Server");
  cmd->add_flag("--check-metrics", o.check_metrics,
                "Compare client totals with the server's GET /metrics counters over the run")
      ->group("Server");

  cmd->add_option("--workload", f.workload, "random, shared-prefix, multi-turn or trace")
      ->capture_default_str()
      ->check(CLI::IsMember({"random", "shared-prefix", "multi-turn", "trace"}))
      ->group("Workload");
  cmd->add_option("--trace-file", w.trace_file,
                  "Mooncake JSONL trace (timestamp ms, input_length, output_length, hash_ids of "
                  "512-token blocks)")
      ->group("Workload");
  cmd->add_option("--num-requests", w.num_requests,
                  "Requests (default 100; trace: every line; multi-turn: conversations x turns)")
      ->group("Workload");
  cmd->add_option("--input-len", w.input_len,
                  "Words (about tokens) per prompt, question, or user turn")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--output-len", w.output_len, "Output tokens per request")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--range-ratio", w.range_ratio, "Lengths uniform in [len*(1-r), len*(1+r)]")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--tenants", w.tenants, "Distinct system prompts (shared-prefix, multi-turn)")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--prefix-len", w.prefix_len,
                  "Words per system prompt (default: 1024 for shared-prefix, none for multi-turn)")
      ->group("Workload");
  cmd->add_option("--conversations", w.conversations, "Multi-turn conversations")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--turns", w.turns, "Turns per conversation")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--think-time-ms", o.think_time_ms,
                  "Multi-turn: pause between an answer and the next turn")
      ->capture_default_str()
      ->group("Workload");
  cmd->add_option("--seed", w.seed, "Seed for prompts, lengths and arrivals")
      ->capture_default_str()
      ->group("Workload");

  cmd->add_option("--concurrency", o.concurrency,
                  "Closed loop: requests in flight (default 8); with --request-rate or a trace: "
                  "a cap (default none)")
      ->group("Arrivals");
  cmd->add_option("--request-rate", o.request_rate,
                  "Open loop: Poisson arrivals per second (multi-turn: conversation starts)")
      ->group("Arrivals");
  cmd->add_option("--time-scale", o.time_scale, "Trace: send at timestamp x this")
      ->capture_default_str()
      ->group("Arrivals");

  cmd->add_option("--slo-ttft-ms", o.slo.ttft_ms, "Goodput objective for TTFT")->group("Report");
  cmd->add_option("--slo-tpot-ms", o.slo.tpot_ms, "Goodput objective for TPOT")->group("Report");
  cmd->add_flag("--json", f.json, "Print the report as JSON on stdout instead of a table")
      ->group("Report");
  cmd->add_option("--output", f.output_file, "Also write the JSON report to this file")
      ->group("Report");
  cmd->add_flag("!--no-progress", o.progress, "No progress line on stderr")->group("Report");
  return cmd;
}

int run_bench_serve_if_parsed() {
  BenchServeFlags& f = flags();
  if (f.command == nullptr || !f.command->parsed()) return -1;
  ServeBenchOptions options = f.options;
  auto kind = parse_workload_kind(f.workload);
  if (!kind.is_ok()) return fail(kind.status());
  options.workload.kind = *kind;
  options.endpoint = f.endpoint == "chat" ? ApiEndpoint::kChat : ApiEndpoint::kCompletions;
  if (f.temperature_flag->count() > 0) options.temperature = f.temperature;

  auto report = run_serve_bench(options);
  if (!report.is_ok()) return fail(report.status());
  const std::string json = report->to_json();
  if (!f.output_file.empty()) {
    std::ofstream out(f.output_file, std::ios::binary | std::ios::trunc);
    out << json << '\n';
    if (!out) {
      return fail(make_error(StatusCode::kIoError, "cannot write '{}'", f.output_file));
    }
  }
  if (f.json) {
    std::printf("%s\n", json.c_str());
  } else {
    std::fputs(report->to_text().c_str(), stdout);
  }
  if (report->n_success == 0) {
    std::fprintf(stderr, "error: no request succeeded\n");
    return 1;
  }
  return 0;
}

}  // namespace infergrid
