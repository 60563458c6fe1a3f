#include "engine/generator.h"

#include "core/clock.h"

namespace infergrid {

Generator::Generator(const Model& model, const Tokenizer& tokenizer, Backend& backend,
                     int max_context, int max_batch_tokens, KvType kv_type)
    : model_(model),
      tokenizer_(tokenizer),
      backend_(backend),
      cache_(model.config(), max_context, kv_type),
      scratch_(model.config(), std::min(max_batch_tokens, max_context)) {
  history_.reserve(static_cast<size_t>(max_context));
}

Result<GenerateStats> Generator::generate_tokens(std::span<const int32_t> prompt,
                                                 const GenerateOptions& options,
                                                 const TokenCallback& on_token) {
  GenerateStats stats;
  stats.prompt_tokens = static_cast<int>(prompt.size());
  if (prompt.empty()) return Status(StatusCode::kInvalidArgument, "the prompt is empty");
  if (static_cast<int>(prompt.size()) >= max_context()) {
    return make_error(StatusCode::kOutOfRange,
                      "the prompt has {} tokens, the context holds {} (raise --ctx-size)",
                      prompt.size(), max_context());
  }
  history_.assign(prompt.begin(), prompt.end());
  Sampler sampler(model_.config().n_vocab, options.sampling);

  const auto prefill_start = Clock::now();
  IG_ASSIGN_OR_RETURN(std::span<const float> logits,
                      model_.forward(backend_, cache_, scratch_, prompt, 0, Model::Logits::kLast));
  stats.prefill_seconds = seconds_since(prefill_start);
  stats.finish_reason = "length";

  const auto decode_start = Clock::now();
  for (int i = 0; i < options.max_tokens; ++i) {
    const int32_t token = sampler.sample(logits, history_);
    history_.push_back(token);
    ++stats.generated_tokens;
    if (options.stop_at_eog && tokenizer_.is_eog(token)) {
      stats.finish_reason = "stop";
      break;
    }
    if (!on_token(token)) {
      stats.finish_reason = "stop";
      break;
    }
    if (i + 1 == options.max_tokens) break;
    const int position = static_cast<int>(history_.size()) - 1;
    if (position >= max_context()) break;  // context full: finish_reason stays "length"
    IG_ASSIGN_OR_RETURN(logits, model_.forward(backend_, cache_, scratch_,
                                               std::span<const int32_t>(&history_.back(), 1),
                                               position, Model::Logits::kLast));
  }
  stats.decode_seconds = seconds_since(decode_start);
  return stats;
}

Result<GenerateStats> Generator::generate(std::string_view prompt, const GenerateOptions& options,
                                          const TextCallback& on_text) {
  const std::vector<int32_t> tokens = tokenizer_.encode(prompt, /*add_special=*/true,
                                                        /*parse_special=*/true);
  StreamingDecoder decoder(tokenizer_);
  bool keep_going = true;
  auto result = generate_tokens(tokens, options, [&](int32_t token) {
    const std::string text = decoder.push(token);
    if (!text.empty()) keep_going = on_text(text);
    return keep_going;
  });
  const std::string rest = decoder.flush();
  if (result.is_ok() && !rest.empty()) on_text(rest);
  return result;
}

}  // namespace infergrid
