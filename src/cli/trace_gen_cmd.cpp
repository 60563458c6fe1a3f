#include "cli/trace_gen_cmd.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "bench/trace_gen.h"

namespace infergrid {

namespace {

TraceGenOptions options;
std::string kind = "multi-tenant";
std::string output;
CLI::App* command = nullptr;

}  // namespace

void add_trace_gen_command(CLI::App& bench) {
  command = bench.add_subcommand("trace-gen", "Write a synthetic Mooncake-format JSONL trace");
  command->add_option("--kind", kind, "multi-tenant or multi-turn")->capture_default_str();
  command->add_option("-o,--output", output, "File to write (default: stdout)");
  command->add_option("--requests", options.requests)->capture_default_str();
  command->add_option("--rate", options.rate_per_s, "Mean requests per second")
      ->capture_default_str();
  command->add_option("--seed", options.seed)->capture_default_str();
  command->add_option("--tenants", options.tenants)->capture_default_str();
  command->add_option("--zipf", options.zipf_s, "Tenant popularity exponent")
      ->capture_default_str();
  command->add_option("--prefix-blocks", options.prefix_blocks)->capture_default_str();
  command->add_option("--suffix-blocks", options.suffix_blocks)->capture_default_str();
  command->add_option("--turns", options.turns)->capture_default_str();
  command->add_option("--turn-blocks", options.turn_blocks)->capture_default_str();
  command->add_option("--answer-blocks", options.answer_blocks)->capture_default_str();
  command->add_option("--think-time-s", options.think_time_s)->capture_default_str();
  command->add_option("--output-length", options.output_length)->capture_default_str();
  command->add_option("--burst-factor", options.burst_factor)->capture_default_str();
  command->add_option("--burst-every-s", options.burst_every_s)->capture_default_str();
  command->add_option("--burst-s", options.burst_s, "0: no bursts")->capture_default_str();
}

int run_trace_gen_if_parsed() {
  if (command == nullptr || !command->parsed()) return -1;
  if (kind == "multi-tenant") {
    options.kind = TraceKind::kMultiTenant;
  } else if (kind == "multi-turn") {
    options.kind = TraceKind::kMultiTurn;
  } else {
    std::fprintf(stderr, "infergrid bench trace-gen: --kind '%s': use multi-tenant or multi-turn\n",
                 kind.c_str());
    return 1;
  }
  auto trace = generate_trace(options);
  if (!trace.is_ok()) {
    std::fprintf(stderr, "infergrid bench trace-gen: %s\n", trace.status().to_string().c_str());
    return 1;
  }
  const std::string text = trace_to_jsonl(*trace);
  if (output.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  std::ofstream file(output, std::ios::binary);
  file.write(text.data(), static_cast<std::streamsize>(text.size()));
  if (!file) {
    std::fprintf(stderr, "infergrid bench trace-gen: cannot write %s\n", output.c_str());
    return 1;
  }
  return 0;
}

}  // namespace infergrid
