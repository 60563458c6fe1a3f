// The embedded default model: a small synthetic model produced deterministically on first use
// (no download), so `infergrid generate` and `infergrid serve` work with no arguments.
#pragma once

#include <string>

#include "core/status.h"

namespace infergrid {

// $INFERGRID_DEFAULT_MODEL if set, else $XDG_CACHE_HOME (or ~/.cache)/infergrid/<name>.gguf.
std::string default_model_path();
// Returns the path to use: `requested` when given, else the default model, created if absent.
Result<std::string> resolve_model_path(const std::string& requested);

}  // namespace infergrid
