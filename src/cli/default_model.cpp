#include "cli/default_model.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>

#include "model/synth.h"

namespace infergrid {

namespace {
// Bump the version when the synthesizer's output changes, so stale caches are not reused.
constexpr const char* kDefaultModelName = "infergrid-default-v1-llama-10m-q8_0";
}  // namespace

std::string default_model_path() {
  if (const char* env = std::getenv("INFERGRID_DEFAULT_MODEL"); env != nullptr && *env) return env;
  std::filesystem::path dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg) {
    dir = xdg;
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home) {
    dir = std::filesystem::path(home) / ".cache";
  } else {
    dir = std::filesystem::temp_directory_path();
  }
  return (dir / "infergrid" / (std::string(kDefaultModelName) + ".gguf")).string();
}

Result<std::string> resolve_model_path(const std::string& requested) {
  if (!requested.empty()) return requested;
  const std::string path = default_model_path();
  if (std::filesystem::exists(path)) return path;
  spdlog::info("creating the default model at {}", path);
  SynthOptions options;
  options.arch = "llama";
  options.size = "10m";
  options.type = TensorType::kQ8_0;
  auto summary = synthesize_model(options, path);
  if (!summary.is_ok()) return summary.status().with_context("creating the default model");
  spdlog::info("default model: {}", summary->description);
  return path;
}

}  // namespace infergrid
