#include "model/synth_vocab.h"

#include "model/bpe_trainer.h"

namespace infergrid {

Result<SynthVocab> make_synth_vocab(int n_vocab, const std::string& pre) {
  const PreTokenizerType type =
      pre == "qwen2" ? PreTokenizerType::kQwen2 : PreTokenizerType::kLlama3;
  IG_ASSIGN_OR_RETURN(TokenizerVocab vocab, make_default_bpe_vocab(n_vocab, type));
  vocab.pre = pre;
  return vocab;
}

void write_synth_vocab(GgufWriter& writer, const SynthVocab& vocab) {
  writer.set_string("tokenizer.ggml.model", vocab.model);
  if (!vocab.pre.empty()) writer.set_string("tokenizer.ggml.pre", vocab.pre);
  writer.set_string_array("tokenizer.ggml.tokens", vocab.tokens);
  if (!vocab.scores.empty()) writer.set_f32_array("tokenizer.ggml.scores", vocab.scores);
  if (!vocab.types.empty()) {
    std::vector<int32_t> types(vocab.types.size());
    for (size_t i = 0; i < types.size(); ++i) types[i] = static_cast<int32_t>(vocab.types[i]);
    writer.set_i32_array("tokenizer.ggml.token_type", types);
  }
  if (!vocab.merges.empty()) writer.set_string_array("tokenizer.ggml.merges", vocab.merges);
  auto set_id = [&writer](const char* key, int32_t id) {
    if (id >= 0) writer.set_u32(key, static_cast<uint32_t>(id));
  };
  set_id("tokenizer.ggml.bos_token_id", vocab.bos_id);
  set_id("tokenizer.ggml.eos_token_id", vocab.eos_id);
  set_id("tokenizer.ggml.unknown_token_id", vocab.unk_id);
  set_id("tokenizer.ggml.padding_token_id", vocab.pad_id);
  set_id("tokenizer.ggml.eot_token_id", vocab.eot_id);
  set_id("tokenizer.ggml.eom_token_id", vocab.eom_id);
  if (vocab.add_bos) writer.set_bool("tokenizer.ggml.add_bos_token", *vocab.add_bos);
  if (vocab.add_eos) writer.set_bool("tokenizer.ggml.add_eos_token", *vocab.add_eos);
}

}  // namespace infergrid
