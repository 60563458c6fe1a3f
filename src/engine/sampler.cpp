#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace infergrid {

Sampler::Sampler(int n_vocab, const SamplingParams& params) : params_(params), rng_(params.seed) {
  candidates_.resize(static_cast<size_t>(n_vocab));
  penalty_counts_.assign(static_cast<size_t>(n_vocab), 0);
}

void Sampler::advance(int n_samples) {
  if (params_.temperature <= 0.0f) return;  // greedy draws nothing
  // sample() draws exactly one uniform per call; the distribution's bounds do not change how
  // many values it takes from the engine.
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int i = 0; i < n_samples; ++i) (void)uniform(rng_);
}

int32_t Sampler::argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void Sampler::apply_penalties(std::span<const int32_t> history) {
  const bool any = params_.repetition_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                   params_.frequency_penalty != 0.0f;
  if (!any || params_.penalty_last_n == 0 || history.empty()) return;
  size_t n = history.size();
  if (params_.penalty_last_n > 0) n = std::min(n, static_cast<size_t>(params_.penalty_last_n));
  const auto recent = history.subspan(history.size() - n);
  for (int32_t id : recent) {
    if (id >= 0 && static_cast<size_t>(id) < penalty_counts_.size()) ++penalty_counts_[id];
  }
  for (int32_t id : recent) {
    if (id < 0 || static_cast<size_t>(id) >= penalty_counts_.size()) continue;
    const int count = penalty_counts_[id];
    if (count == 0) continue;  // already applied for this id
    float& logit = candidates_[id].logit;
    // llama.cpp's convention: divide positive logits, multiply negative ones.
    logit = logit > 0 ? logit / params_.repetition_penalty : logit * params_.repetition_penalty;
    logit -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
    penalty_counts_[id] = 0;
  }
}

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history,
                        std::span<const uint64_t> allowed) {
  const size_t n_vocab = std::min(logits.size(), candidates_.size());
  for (size_t i = 0; i < n_vocab; ++i) candidates_[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
  apply_penalties(history);
  for (const auto& [id, bias] : params_.logit_bias) {
    if (id >= 0 && static_cast<size_t>(id) < n_vocab) candidates_[id].logit += bias;
  }
  if (!allowed.empty()) {
    for (size_t i = 0; i < n_vocab; ++i) {
      if (!((allowed[i >> 6] >> (i & 63)) & 1)) candidates_[i].logit = -INFINITY;
    }
  }

  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (params_.temperature <= 0.0f) {
    return std::min_element(candidates_.begin(), candidates_.begin() + n_vocab, by_logit)->id;
  }

  size_t n = n_vocab;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    n = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + n, candidates_.begin() + n_vocab,
                      by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.begin() + n, by_logit);
  }

  // Banned and masked tokens sort last; they are never drawn while any other token is left.
  while (n > 1 && candidates_[n - 1].logit == -INFINITY) --n;
  const float max_logit = candidates_[0].logit;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    candidates_[i].p = std::exp((candidates_[i].logit - max_logit) / params_.temperature);
    sum += candidates_[i].p;
  }
  for (size_t i = 0; i < n; ++i) candidates_[i].p = static_cast<float>(candidates_[i].p / sum);

  if (params_.top_p < 1.0f) {
    double cumulative = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cumulative += candidates_[i].p;
      if (cumulative >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (params_.min_p > 0.0f) {
    const float threshold = params_.min_p * candidates_[0].p;
    size_t keep = 1;
    while (keep < n && candidates_[keep].p >= threshold) ++keep;
    n = keep;
  }

  double total = 0;
  for (size_t i = 0; i < n; ++i) total += candidates_[i].p;
  std::uniform_real_distribution<double> uniform(0.0, total);
  const double r = uniform(rng_);
  double cumulative = 0;
  for (size_t i = 0; i < n; ++i) {
    cumulative += candidates_[i].p;
    if (r < cumulative) return candidates_[i].id;
  }
  return candidates_[n - 1].id;
}

}  // namespace infergrid
