// The embedded default model: a small Llama-architecture model trained on public-domain English
// (models/MODEL_CARD.md), linked into the binary and written out on first use (no download),
// so `infergrid generate` and `infergrid serve` work with no arguments.
#pragma once

#include <span>
#include <string>

#include "core/status.h"

namespace infergrid {

// The GGUF bytes linked into this binary.
std::span<const unsigned char> embedded_default_model();
// $INFERGRID_DEFAULT_MODEL if set, else $XDG_CACHE_HOME (or ~/.cache)/infergrid/<name>.gguf,
// where the name carries a hash of the embedded bytes (a new binary never reads an old copy).
std::string default_model_path();
// Returns the path to use: `requested` when given, else the default model, written if absent
// (or, for the cached copy, if it differs from the embedded bytes).
Result<std::string> resolve_model_path(const std::string& requested);

}  // namespace infergrid
