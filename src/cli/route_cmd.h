// `infergrid route`: the KV-aware global router in front of `infergrid serve` instances (see
// router/router_server.h), and runs until SIGTERM/SIGINT.
#pragma once

#include <CLI/CLI.hpp>

namespace infergrid {

CLI::App* add_route_command(CLI::App& app);
// Runs the command if it was parsed; returns its exit code, or -1 if it was not.
int run_route_if_parsed();

}  // namespace infergrid
