// `infergrid serve`: loads a model (the embedded default when none is given), starts the
// serving engine and the OpenAI-compatible HTTP server, and runs until SIGTERM/SIGINT.
#pragma once

#include <CLI/CLI.hpp>

namespace infergrid {

CLI::App* add_serve_command(CLI::App& app);
// Runs the command if it was parsed; returns its exit code, or -1 if it was not.
int run_serve_if_parsed();

}  // namespace infergrid
