// Logging goes through spdlog; this sets the process-wide format and level once at startup.
// Log output goes to stderr so that generated text on stdout stays clean.
#pragma once

#include <string>

#include <spdlog/spdlog.h>

namespace infergrid {

// level: "trace", "debug", "info", "warn", "error", "off".
void init_logging(const std::string& level);

}  // namespace infergrid
