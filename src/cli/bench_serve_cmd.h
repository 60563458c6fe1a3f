// `infergrid bench serve`: the command-line face of the load generator (src/bench/serve_bench.h).
// main() makes two calls: add_bench_serve_command() while building the parser, and
// run_bench_serve_if_parsed() after parsing; the flags' storage lives in this file so that main
// need not know them.
#pragma once

#include <CLI/CLI.hpp>

namespace infergrid {

// Registers `serve` under the given `bench` command and returns it. Call once.
CLI::App* add_bench_serve_command(CLI::App& bench_cmd);

// When `bench serve` was given, runs it and returns the exit code: 0 when at least one request
// succeeded, 1 on a setup error or when every request failed. Returns -1 when not given.
int run_bench_serve_if_parsed();

}  // namespace infergrid
