#include "cli/model_eval_cmd.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/default_model.h"
#include "kernels/cpu_backend.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace infergrid {

namespace {

int fail(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.to_string().c_str());
  return 1;
}

Result<std::vector<int32_t>> parse_token_ids(const std::string& text, int n_vocab) {
  std::string cleaned = text;
  std::replace(cleaned.begin(), cleaned.end(), ',', ' ');
  std::istringstream in(cleaned);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    char* end = nullptr;
    const long id = std::strtol(word.c_str(), &end, 10);
    if (end == word.c_str() || *end != '\0') {
      return make_error(StatusCode::kInvalidArgument, "--tokens: '{}' is not a token id", word);
    }
    if (id < 0 || id >= n_vocab) {
      return make_error(StatusCode::kInvalidArgument,
                        "--tokens: id {} is outside the vocabulary [0, {})", id, n_vocab);
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  if (ids.empty()) return Status(StatusCode::kInvalidArgument, "--tokens: no token ids given");
  return ids;
}

Result<std::unique_ptr<Model>> load_model(const std::string& name) {
  IG_ASSIGN_OR_RETURN(std::string path, resolve_model_path(name));
  return Model::load(path);
}

}  // namespace

int run_model_eval(const ModelEvalArgs& args) {
  auto model = load_model(args.model);
  if (!model.is_ok()) return fail(model.status());
  const ModelConfig& c = (*model)->config();
  auto tokens = parse_token_ids(args.tokens, c.n_vocab);
  if (!tokens.is_ok()) return fail(tokens.status());
  const int n = static_cast<int>(tokens->size());
  CpuBackend backend(args.threads);
  KvCache cache(c, n, args.kv_cache_type);
  ForwardScratch scratch(c, n);
  auto logits = (*model)->forward(backend, cache, scratch, *tokens, 0, Model::Logits::kAll);
  if (!logits.is_ok()) return fail(logits.status());
  const int k = args.all_logits ? c.n_vocab : std::clamp(args.top_k, 1, c.n_vocab);
  nlohmann::json out = {{"model", c.model_name}, {"n_vocab", c.n_vocab}, {"positions", {}}};
  std::vector<int> order(static_cast<size_t>(c.n_vocab));
  for (int t = 0; t < n; ++t) {
    const float* row = logits->data() + static_cast<size_t>(t) * c.n_vocab;
    nlohmann::json position = {{"position", t}, {"token", (*tokens)[t]}};
    if (args.all_logits) {
      position["logits"] = std::vector<float>(row, row + c.n_vocab);
    } else {
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [row](int a, int b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      nlohmann::json top = nlohmann::json::array();
      for (int i = 0; i < k; ++i) top.push_back({{"id", order[i]}, {"logit", row[order[i]]}});
      position["top"] = top;
    }
    out["positions"].push_back(position);
  }
  if (args.json) {
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  for (const auto& position : out["positions"]) {
    std::printf("pos %d token %d:", position["position"].get<int>(), position["token"].get<int>());
    if (args.all_logits) {
      for (float v : position["logits"]) std::printf(" %.6g", v);
    } else {
      for (const auto& entry : position["top"]) {
        std::printf(" %d=%.6g", entry["id"].get<int>(), entry["logit"].get<float>());
      }
    }
    std::printf("\n");
  }
  return 0;
}

int run_model_perplexity(const PerplexityArgs& args) {
  auto model = load_model(args.model);
  if (!model.is_ok()) return fail(model.status());
  const ModelConfig& c = (*model)->config();
  auto tokenizer = Tokenizer::from_gguf((*model)->gguf());
  if (!tokenizer.is_ok()) return fail(tokenizer.status());
  std::ifstream in(args.file, std::ios::binary);
  if (!in) return fail(Status(StatusCode::kNotFound, "cannot read " + args.file));
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const int n_ctx = args.ctx;
  if (n_ctx < 8 || n_ctx > c.n_ctx_train) {
    return fail(make_error(StatusCode::kInvalidArgument, "--ctx {} must be in [8, {}]", n_ctx,
                           c.n_ctx_train));
  }
  const bool add_bos = (*tokenizer)->add_bos() && (*tokenizer)->bos_id() >= 0;
  std::vector<int32_t> tokens = (*tokenizer)->encode(text, add_bos, false);
  // As llama-perplexity: whole windows only, and at least two of them.
  if (static_cast<int64_t>(tokens.size()) < 2 * static_cast<int64_t>(n_ctx)) {
    return fail(make_error(StatusCode::kInvalidArgument,
                           "{} tokenizes to {} tokens; perplexity with --ctx {} needs at least {}",
                           args.file, tokens.size(), n_ctx, 2 * n_ctx));
  }
  const int n_chunks = static_cast<int>(tokens.size() / n_ctx);
  const int first_scored = n_ctx / 2;
  const int batch = std::clamp(args.batch, 1, n_ctx);
  CpuBackend backend(args.threads);
  KvCache cache(c, n_ctx, args.kv_cache_type);
  ForwardScratch scratch(c, batch);
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  std::fprintf(stderr, "perplexity: %zu tokens, %d chunks of %d, scoring positions %d..%d\n",
               tokens.size(), n_chunks, n_ctx, first_scored, n_ctx - 2);
  for (int chunk = 0; chunk < n_chunks; ++chunk) {
    std::vector<int32_t> window(tokens.begin() + static_cast<int64_t>(chunk) * n_ctx,
                                tokens.begin() + static_cast<int64_t>(chunk + 1) * n_ctx);
    // Each window starts a fresh sequence at BOS, as llama-perplexity's do.
    if (add_bos) window[0] = (*tokenizer)->bos_id();
    for (int start = 0; start < n_ctx; start += batch) {
      const int len = std::min(batch, n_ctx - start);
      auto logits = (*model)->forward(backend, cache, scratch,
                                      std::span<const int32_t>(window).subspan(start, len), start,
                                      Model::Logits::kAll);
      if (!logits.is_ok()) return fail(logits.status());
      for (int i = 0; i < len; ++i) {
        const int pos = start + i;
        if (pos < first_scored || pos + 1 >= n_ctx) continue;
        const float* row = logits->data() + static_cast<size_t>(i) * c.n_vocab;
        const float max = *std::max_element(row, row + c.n_vocab);
        double sum = 0;
        for (int v = 0; v < c.n_vocab; ++v) sum += std::exp(static_cast<double>(row[v]) - max);
        const double token_nll = std::log(sum) + max - row[window[pos + 1]];
        nll += token_nll;
        nll2 += token_nll * token_nll;
        ++count;
      }
    }
    std::printf("[%d]%.4f%s", chunk + 1, std::exp(nll / count), chunk + 1 < n_chunks ? "," : "\n");
    std::fflush(stdout);
  }
  const double mean = nll / count;
  const double var = std::max(0.0, nll2 / count - mean * mean);
  const double ppl = std::exp(mean);
  const double err = count > 1 ? ppl * std::sqrt(var / (count - 1)) : 0.0;
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, err);
  return 0;
}

}  // namespace infergrid
