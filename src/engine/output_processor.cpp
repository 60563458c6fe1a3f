#include "engine/output_processor.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/unicode_util.h"

namespace infergrid {

OutputProcessor::OutputProcessor(const Tokenizer& tokenizer, const RequestOptions& options,
                                 int max_context)
    : tokenizer_(tokenizer), options_(options), max_context_(max_context), decoder_(tokenizer) {
  for (const std::string& s : options_.stop) max_stop_bytes_ = std::max(max_stop_bytes_, s.size());
}

void OutputProcessor::flush(RequestEvent& event) {
  event.text += held_;
  event.text += decoder_.flush();
  held_.clear();
}

FinishReason OutputProcessor::on_token(GeneratedToken generated, int n_generated, int n_total,
                                       RequestEvent& event) {
  const int32_t token = generated.token;
  const bool eog = !options_.ignore_eos && tokenizer_.is_eog(token);
  const bool stop_token = std::find(options_.stop_token_ids.begin(), options_.stop_token_ids.end(),
                                    token) != options_.stop_token_ids.end();
  if (eog || stop_token) {
    event.stop_matched = tokenizer_.token_to_piece(token, true);
    flush(event);
    return FinishReason::kStop;
  }
  event.tokens.push_back(std::move(generated));

  // Stop strings are searched only where the new text can complete one.
  const size_t searched_from = held_.size();
  held_ += decoder_.push(token);
  for (const std::string& stop : options_.stop) {
    const size_t from = searched_from >= stop.size() ? searched_from - stop.size() + 1 : 0;
    const size_t at = held_.find(stop, from);
    if (at != std::string::npos) {
      event.text += held_.substr(0, at);
      event.stop_matched = stop;
      held_.clear();
      return FinishReason::kStop;
    }
  }
  if (n_generated >= options_.max_tokens || n_total >= max_context_) {
    flush(event);
    return FinishReason::kLength;
  }
  // Hold back what could still begin a stop string, without splitting a character.
  const size_t hold = max_stop_bytes_ > 0 ? max_stop_bytes_ - 1 : 0;
  const size_t sendable = held_.size() > hold ? held_.size() - hold : 0;
  const size_t ready = utf8_complete_prefix_length(std::string_view(held_).substr(0, sendable));
  event.text += held_.substr(0, ready);
  held_.erase(0, ready);
  return FinishReason::kNone;
}

void compute_logprobs(std::span<const float> logits, int32_t chosen, int top_n,
                      GeneratedToken& out) {
  float max_logit = -INFINITY;
  for (float l : logits) max_logit = std::max(max_logit, l);
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max_logit));
  const float log_z = max_logit + static_cast<float>(std::log(sum));
  out.logprob = logits[static_cast<size_t>(chosen)] - log_z;
  out.top.clear();
  if (top_n <= 0) return;
  top_n = std::min<int>(top_n, static_cast<int>(logits.size()));
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + top_n, ids.end(), [&](int32_t a, int32_t b) {
    return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)] ||
           (logits[static_cast<size_t>(a)] == logits[static_cast<size_t>(b)] && a < b);
  });
  for (int i = 0; i < top_n; ++i) {
    out.top.push_back({ids[static_cast<size_t>(i)], logits[static_cast<size_t>(ids[i])] - log_z});
  }
}

}  // namespace infergrid
