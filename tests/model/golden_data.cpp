#include "model/golden_data.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#ifndef INFERGRID_SHARED_DIR
#define INFERGRID_SHARED_DIR ""
#endif

namespace infergrid {

std::vector<int32_t> GoldenLogits::all_tokens() const {
  std::vector<int32_t> tokens = prompt_tokens;
  tokens.insert(tokens.end(), greedy_tokens.begin(), greedy_tokens.end());
  return tokens;
}

std::string golden_dir() {
  const std::string shared = INFERGRID_SHARED_DIR;
  if (shared.empty()) return "";
  const std::filesystem::path dir = std::filesystem::path(shared) / "golden";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return "";
  return dir.string();
}

std::string golden_model_path(const std::string& name) {
  const std::string dir = golden_dir();
  if (dir.empty()) return "";
  const std::filesystem::path path = std::filesystem::path(dir) / "models" / (name + ".gguf");
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec) ? path.string() : "";
}

std::optional<GoldenLogits> load_golden(const std::string& name) {
  const std::string dir = golden_dir();
  if (dir.empty()) return std::nullopt;
  const std::filesystem::path path = std::filesystem::path(dir) / "logits" / (name + ".json");
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    GoldenLogits g;
    g.prompt_tokens = j.at("prompt_tokens").get<std::vector<int32_t>>();
    g.greedy_tokens = j.at("greedy_tokens").get<std::vector<int32_t>>();
    g.logits = j.at("logits").get<std::vector<std::vector<float>>>();
    if (g.logits.size() != g.prompt_tokens.size() + g.greedy_tokens.size()) {
      throw std::runtime_error("expected one logit row per token");
    }
    for (const auto& row : g.logits) {
      if (row.size() != g.logits.front().size()) throw std::runtime_error("ragged logit rows");
    }
    if (j.contains("n_vocab") && !g.logits.empty() &&
        j.at("n_vocab").get<size_t>() != g.logits.front().size()) {
      throw std::runtime_error("rows do not have n_vocab entries");
    }
    return g;
  } catch (const std::exception& e) {
    throw std::runtime_error("golden " + path.string() + ": " + e.what());
  }
}

}  // namespace infergrid
