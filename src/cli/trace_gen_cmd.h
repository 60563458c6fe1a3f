// `infergrid bench trace-gen`: writes a synthetic Mooncake-format trace (bench/trace_gen.h).
#pragma once

#include <CLI/CLI.hpp>

namespace infergrid {

void add_trace_gen_command(CLI::App& bench);
// Runs the command if it was parsed; returns its exit code, or -1 if it was not.
int run_trace_gen_if_parsed();

}  // namespace infergrid
