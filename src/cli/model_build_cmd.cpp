#include "cli/model_build_cmd.h"

#include <cstdio>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "model/bpe_trainer.h"
#include "model/gguf.h"
#include "model/model_import.h"
#include "model/tokenizer.h"

namespace infergrid {
namespace {

int fail(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.to_string().c_str());
  return 1;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(StatusCode::kNotFound, "cannot open '{}'", path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// ChatML as Qwen's and llama.cpp's chatml templates render it (no default system message).
constexpr const char* kChatMlTemplate =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

}  // namespace

int run_train_tokenizer(const TrainTokenizerArgs& args) {
  if (args.specials != "chatml") {
    return fail(make_error(StatusCode::kInvalidArgument,
                           "unknown special-token set '{}' (only chatml)", args.specials));
  }
  auto corpus = read_text(args.corpus);
  if (!corpus.is_ok()) return fail(corpus.status());
  BpeVocabSpec spec;
  spec.vocab_size = args.vocab_size;
  spec.pre = PreTokenizerType::kLlama3;
  spec.specials = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"};
  spec.bos_index = 0;
  spec.eos_index = 1;
  spec.eot_index = 3;
  auto vocab = train_bpe_vocab(*corpus, spec);
  if (!vocab.is_ok()) return fail(vocab.status());
  if (Status s = write_vocab_file(*vocab, kChatMlTemplate, args.out); !s.is_ok()) return fail(s);
  // One JSON line, so scripts (tools/train_default_model) read the special ids from it.
  const nlohmann::json summary = {{"out", args.out},
                                  {"tokens", vocab->tokens.size()},
                                  {"merges", vocab->merges.size()},
                                  {"corpus_bytes", corpus->size()},
                                  {"bos_id", vocab->bos_id},
                                  {"eos_id", vocab->eos_id},
                                  {"eot_id", vocab->eot_id}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}

int run_encode_corpus(const EncodeCorpusArgs& args) {
  auto file = GgufFile::open(args.vocab);
  if (!file.is_ok()) return fail(file.status());
  auto tokenizer = Tokenizer::from_gguf(**file);
  if (!tokenizer.is_ok()) return fail(tokenizer.status());
  auto text = read_text(args.in);
  if (!text.is_ok()) return fail(text.status());
  auto n_tokens = encode_corpus(**tokenizer, *text, args.out, args.parse_special);
  if (!n_tokens.is_ok()) return fail(n_tokens.status());
  std::printf("%s: %lld tokens from %zu bytes (%.2f bytes per token)\n", args.out.c_str(),
              static_cast<long long>(*n_tokens), text->size(),
              *n_tokens ? static_cast<double>(text->size()) / static_cast<double>(*n_tokens) : 0.0);
  return 0;
}

int run_import_model(const ImportModelArgs& args) {
  if (Status s = import_safetensors_model(args.tensors, args.vocab, args.out); !s.is_ok()) {
    return fail(s);
  }
  std::printf("%s: written\n", args.out.c_str());
  return 0;
}

}  // namespace infergrid
