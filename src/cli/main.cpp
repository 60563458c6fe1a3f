// infergrid: one binary, one subcommand per job. Each subcommand parses its flags here and
// calls into the library layers; errors are reported on stderr with a non-zero exit code.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/bench_serve_cmd.h"
#include "cli/default_model.h"
#include "cli/kv_cache_type_option.h"
#include "cli/model_build_cmd.h"
#include "cli/model_eval_cmd.h"
#include "cli/route_cmd.h"
#include "cli/serve_cmd.h"
#include "cli/trace_gen_cmd.h"
#include "core/cpu_features.h"
#include "core/logging.h"
#include "engine/generator.h"
#include "kernels/cpu_backend.h"
#include "model/gguf.h"
#include "model/model.h"
#include "model/quantize.h"
#include "model/synth.h"
#include "model/tokenizer.h"
#include "perf/decode_bench.h"
#include "perf/engine_bench.h"
#include "perf/grammar_bench.h"
#include "perf/tier_bench.h"
#include "perf/transfer_bench.h"

namespace infergrid {
namespace {

int fail(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.to_string().c_str());
  return 1;
}

struct GenerateArgs {
  std::string model;
  std::string prompt = "Once upon a time";
  int max_tokens = 64;
  int threads = 0;
  int ctx_size = 2048;
  int batch_size = 256;
  bool greedy = false;
  bool stats = true;
  KvType kv_cache_type = kDefaultKvType;
  SamplingParams sampling;
};

int run_generate(const GenerateArgs& args) {
  auto resolved = resolve_model_path(args.model);
  if (!resolved.is_ok()) return fail(resolved.status());
  const std::string path = *resolved;
  auto model = Model::load(path);
  if (!model.is_ok()) return fail(model.status());
  auto tokenizer = Tokenizer::from_gguf((*model)->gguf());
  if (!tokenizer.is_ok()) return fail(tokenizer.status().with_context(path));
  CpuBackend backend(args.threads);
  spdlog::info("{}", (*model)->describe());
  spdlog::info("backend {} (cpu: {})", backend.name(), cpu_features().describe());
  const int ctx = std::min(args.ctx_size, (*model)->config().n_ctx_train);
  backend.reserve(std::min(args.batch_size, ctx), (*model)->config().max_matmul_cols());
  Generator generator(**model, **tokenizer, backend, ctx, args.batch_size, args.kv_cache_type);
  GenerateOptions options;
  options.max_tokens = args.max_tokens;
  options.sampling = args.greedy ? SamplingParams::greedy() : args.sampling;
  std::fwrite(args.prompt.data(), 1, args.prompt.size(), stdout);
  std::fflush(stdout);
  auto stats = generator.generate(args.prompt, options, [](std::string_view text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputc('\n', stdout);
  if (!stats.is_ok()) return fail(stats.status());
  if (args.stats) {
    const GenerateStats& s = *stats;
    std::fprintf(
        stderr,
        "\nprompt: %d tokens in %.3f s (%.1f tokens/s) | generated: %d tokens, %.2f "
        "tokens/s | finish: %s\n",
        s.prompt_tokens, s.prefill_seconds, s.prompt_tokens / std::max(1e-9, s.prefill_seconds),
        s.generated_tokens,
        s.generated_tokens > 1 ? (s.generated_tokens - 1) / std::max(1e-9, s.decode_seconds) : 0.0,
        s.finish_reason.c_str());
  }
  return 0;
}

int run_inspect(const std::string& path, bool show_all_tensors) {
  auto file = GgufFile::open(path);
  if (!file.is_ok()) return fail(file.status());
  const GgufFile& f = **file;
  std::printf(
      "file: %s\nGGUF version %u, %zu bytes, alignment %llu, %zu metadata entries, %zu tensors\n\n",
      path.c_str(), f.version(), f.file_size(), static_cast<unsigned long long>(f.alignment()),
      f.metadata().size(), f.tensors().size());
  std::printf("metadata:\n");
  for (const auto& [key, value] : f.metadata()) {
    std::printf("  %-45s %s\n", key.c_str(), value.to_display_string().c_str());
  }
  std::printf("\ntensors:\n");
  size_t shown = 0;
  uint64_t total_bytes = 0;
  int64_t total_params = 0;
  for (const auto& t : f.tensors()) {
    total_bytes += t.n_bytes;
    total_params += t.n_elements();
    if (!show_all_tensors && shown >= 24) continue;
    ++shown;
    std::string dims;
    for (int64_t d : t.dims) dims += (dims.empty() ? "" : " x ") + std::to_string(d);
    std::printf("  %-36s %-6s [%s] %llu bytes\n", t.name.c_str(),
                tensor_type_name(t.raw_type).c_str(), dims.c_str(),
                static_cast<unsigned long long>(t.n_bytes));
  }
  if (shown < f.tensors().size()) {
    std::printf("  ... %zu more (--all to list every tensor)\n", f.tensors().size() - shown);
  }
  std::printf("\n%.2fM parameters, %.1f MiB of tensor data\n", total_params / 1e6,
              total_bytes / 1048576.0);
  auto model = Model::from_gguf(std::move(file).value());
  if (model.is_ok()) {
    std::printf("model: %s\n", (*model)->describe().c_str());
  } else {
    std::printf("not loadable as a model: %s\n", model.status().to_string().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace infergrid

int main(int argc, char** argv) {
  using namespace infergrid;
  CLI::App app{"infergrid: LLM inference and serving on heterogeneous compute"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags such as --log-level may follow the subcommand
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->default_val("warn");

  // generate
  GenerateArgs gen;
  auto* generate =
      app.add_subcommand("generate", "Generate text from a prompt, streamed to stdout");
  generate->add_option("-m,--model", gen.model,
                       "GGUF model file (default: the embedded default model)");
  generate->add_option("-p,--prompt", gen.prompt, "Prompt text")->capture_default_str();
  generate->add_option("-n,--max-tokens", gen.max_tokens, "Tokens to generate")
      ->capture_default_str();
  generate->add_option("-t,--threads", gen.threads, "Threads (default: all cores)");
  generate->add_option("-c,--ctx-size", gen.ctx_size, "Context size in tokens")
      ->capture_default_str();
  generate->add_option("-b,--batch-size", gen.batch_size, "Prompt tokens per forward pass")
      ->capture_default_str();
  generate->add_option("--temp", gen.sampling.temperature, "Temperature (0 = greedy)")
      ->capture_default_str();
  generate->add_option("--top-k", gen.sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  generate->add_option("--top-p", gen.sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  generate->add_option("--min-p", gen.sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  generate
      ->add_option("--repeat-penalty", gen.sampling.repetition_penalty,
                   "Repetition penalty (1 = off)")
      ->capture_default_str();
  generate
      ->add_option("--repeat-last-n", gen.sampling.penalty_last_n, "Tokens the penalty looks back")
      ->capture_default_str();
  generate->add_option("--presence-penalty", gen.sampling.presence_penalty)->capture_default_str();
  generate->add_option("--frequency-penalty", gen.sampling.frequency_penalty)
      ->capture_default_str();
  generate->add_option("-s,--seed", gen.sampling.seed, "Random seed")->capture_default_str();
  generate->add_flag("--greedy", gen.greedy, "Greedy decoding (same as --temp 0)");
  add_kv_cache_type_option(*generate, gen.kv_cache_type);
  generate->add_flag("!--no-stats", gen.stats, "Do not print timing statistics to stderr");

  // model synth / inspect / eval / perplexity
  auto* model_cmd = app.add_subcommand("model", "Create, inspect and evaluate GGUF model files");
  model_cmd->require_subcommand(1);
  model_cmd->fallthrough();
  SynthOptions synth;
  std::string synth_out;
  std::string synth_type = "q8_0";
  int synth_threads = 0;
  auto* synth_cmd =
      model_cmd->add_subcommand("synth", "Write a synthetic GGUF model with random weights");
  synth_cmd
      ->add_option("--arch", synth.arch, "llama, llama2, mistral, qwen2, qwen3, mixtral, qwen3moe")
      ->capture_default_str();
  synth_cmd->add_option("--size", synth.size, "1m, 10m, 100m, 1b (parameters)")
      ->capture_default_str();
  synth_cmd
      ->add_option("--type", synth_type,
                   "a weight type: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl, q2_k, "
                   "q3_k, q4_k, q5_k, q6_k, iq4_xs")
      ->capture_default_str();
  synth_cmd->add_option("-o,--out", synth_out, "Output file")->required();
  synth_cmd->add_option("--seed", synth.seed)->capture_default_str();
  synth_cmd->add_flag("--tied", synth.tied_output,
                      "Tie the output projection to the token embedding");
  synth_cmd->add_option("--n-embd", synth.n_embd);
  synth_cmd->add_option("--n-layer", synth.n_layer);
  synth_cmd->add_option("--n-head", synth.n_head);
  synth_cmd->add_option("--n-head-kv", synth.n_head_kv);
  synth_cmd->add_option("--n-ff", synth.n_ff);
  synth_cmd->add_option("--n-vocab", synth.n_vocab);
  synth_cmd->add_option("--n-ctx", synth.n_ctx);
  synth_cmd->add_option("--n-expert", synth.n_expert, "Experts per layer (MoE archs; default 8)");
  synth_cmd->add_option("--n-expert-used", synth.n_expert_used, "Experts per token (default 2)");
  synth_cmd->add_option("--n-ff-expert", synth.n_ff_expert,
                        "Each expert's hidden size (default n_ff / 4)");
  synth_cmd->add_option("-t,--threads", synth_threads);
  auto* default_cmd = model_cmd->add_subcommand(
      "default", "Create the embedded default model if missing and print its path");
  std::string inspect_path;
  bool inspect_all = false;
  auto* inspect_cmd =
      model_cmd->add_subcommand("inspect", "Print a GGUF file's metadata and tensors");
  inspect_cmd->add_option("file", inspect_path, "GGUF file")->required();
  inspect_cmd->add_flag("--all", inspect_all, "List every tensor");
  std::string quantize_in, quantize_out, quantize_type;
  QuantizeOptions quantize;
  auto* quantize_cmd = model_cmd->add_subcommand(
      "quantize", "Rewrite a GGUF model in another quantization, as llama-quantize does");
  quantize_cmd->add_option("input", quantize_in, "GGUF file (F32, F16 or BF16 weights)")
      ->required();
  quantize_cmd->add_option("output", quantize_out, "GGUF file to write")->required();
  quantize_cmd->add_option("type", quantize_type, quantize_target_names())->required();
  quantize_cmd->add_flag("--allow-requantize", quantize.allow_requantize,
                         "Accept already-quantized tensors (dequantized first; loses accuracy)");
  quantize_cmd->add_option("-t,--threads", quantize.n_threads);
  ModelEvalArgs eval;
  auto* eval_cmd =
      model_cmd->add_subcommand("eval", "Print the logits at each position of a token sequence");
  eval_cmd->add_option("-m,--model", eval.model, "GGUF file (default: the embedded model)");
  eval_cmd->add_option("--tokens", eval.tokens, "Token ids, e.g. \"1 300 301\"")->required();
  eval_cmd->add_option("--top-k", eval.top_k, "Logits printed per position")->capture_default_str();
  eval_cmd->add_flag("--all-logits", eval.all_logits, "Print every logit of every position");
  eval_cmd->add_flag("--json", eval.json, "One JSON object on stdout");
  eval_cmd->add_option("-t,--threads", eval.threads);
  add_kv_cache_type_option(*eval_cmd, eval.kv_cache_type);
  PerplexityArgs ppl;
  auto* ppl_cmd = model_cmd->add_subcommand(
      "perplexity", "Perplexity of a text file, computed as llama-perplexity does");
  ppl_cmd->add_option("-m,--model", ppl.model, "GGUF file (default: the embedded model)");
  ppl_cmd->add_option("-f,--file", ppl.file, "Text file")->required();
  ppl_cmd->add_option("-c,--ctx", ppl.ctx, "Window size in tokens")->capture_default_str();
  ppl_cmd->add_option("-b,--batch", ppl.batch, "Tokens per forward pass")->capture_default_str();
  ppl_cmd->add_option("-t,--threads", ppl.threads);
  add_kv_cache_type_option(*ppl_cmd, ppl.kv_cache_type);
  TrainTokenizerArgs train_tok;
  auto* train_tok_cmd = model_cmd->add_subcommand(
      "train-tokenizer", "Train a byte-level BPE vocabulary on a text file (a vocabulary GGUF)");
  train_tok_cmd->add_option("--corpus", train_tok.corpus, "Text file")->required();
  train_tok_cmd->add_option("--vocab-size", train_tok.vocab_size, "Tokens in all")
      ->capture_default_str();
  train_tok_cmd->add_option("-o,--out", train_tok.out, "Vocabulary GGUF to write")->required();
  EncodeCorpusArgs encode;
  auto* encode_cmd = model_cmd->add_subcommand(
      "encode", "Tokenize a text file paragraph by paragraph into uint32 ids (training data)");
  encode_cmd->add_option("--vocab", encode.vocab, "GGUF with a vocabulary")->required();
  encode_cmd->add_option("--in", encode.in, "Text file, paragraphs separated by blank lines")
      ->required();
  encode_cmd->add_option("-o,--out", encode.out, "Binary file to write")->required();
  encode_cmd->add_flag("--parse-special", encode.parse_special,
                       "Read control-token texts such as <|im_start|> as their ids");
  ImportModelArgs import_args;
  auto* import_cmd = model_cmd->add_subcommand(
      "import", "Write an F32 GGUF from safetensors weights (GGUF names) and a vocabulary GGUF");
  import_cmd->add_option("--tensors", import_args.tensors, "safetensors file")->required();
  import_cmd->add_option("--vocab", import_args.vocab, "Vocabulary GGUF")->required();
  import_cmd->add_option("-o,--out", import_args.out, "GGUF file to write")->required();

  // bench decode
  auto* bench_cmd = app.add_subcommand("bench", "Benchmarks");
  bench_cmd->require_subcommand(1);
  bench_cmd->fallthrough();
  std::string bench_model;
  int bench_threads = 0;
  bool bench_json = false;
  DecodeBenchOptions bench_options;
  auto* decode_cmd =
      bench_cmd->add_subcommand("decode", "Prefill and batch-1 decode speed vs memory bandwidth");
  decode_cmd->add_option("-m,--model", bench_model, "GGUF model file (default: the default model)");
  decode_cmd->add_option("--prompt-tokens", bench_options.prompt_tokens)->capture_default_str();
  decode_cmd->add_option("--gen-tokens", bench_options.gen_tokens)->capture_default_str();
  decode_cmd->add_option("--batch-size", bench_options.batch_tokens)->capture_default_str();
  decode_cmd->add_option("--repetitions", bench_options.repetitions)->capture_default_str();
  decode_cmd->add_option("-t,--threads", bench_threads);
  add_kv_cache_type_option(*decode_cmd, bench_options.kv_type);
  decode_cmd->add_flag("--json", bench_json, "Print JSON instead of text");

  GrammarBenchOptions grammar_bench;
  auto* grammar_cmd = bench_cmd->add_subcommand(
      "grammar", "Constrained decoding: the grammar's cost per token next to a decode step");
  grammar_cmd->add_option("-m,--model", bench_model,
                          "GGUF model whose decode step is the reference (default: the default "
                          "model)");
  grammar_cmd
      ->add_option("--vocab", grammar_bench.vocabularies,
                   "GGUF files whose vocabularies are measured too")
      ->check(CLI::ExistingFile);
  grammar_cmd->add_option("--generations", grammar_bench.generations)->capture_default_str();
  grammar_cmd->add_option("-t,--threads", bench_threads);

  EngineBenchOptions engine_bench;
  auto* engine_cmd = bench_cmd->add_subcommand(
      "engine",
      "Serving engine: batched decode throughput, prefix-cache TTFT, chunked-prefill ITL");
  engine_cmd->add_option("-m,--model", bench_model, "GGUF model file (default: the default model)");
  engine_cmd
      ->add_option("--modes", engine_bench.modes,
                   "throughput, prefix, chunked, tier-codec, kv-type")
      ->capture_default_str()
      ->delimiter(',');
  engine_cmd->add_option("--concurrency", engine_bench.concurrency)
      ->capture_default_str()
      ->delimiter(',');
  engine_cmd->add_option("--decode-steps", engine_bench.decode_steps)->capture_default_str();
  engine_cmd->add_option("--prefix-requests", engine_bench.prefix_requests)->capture_default_str();
  engine_cmd->add_option("--prefix-tokens", engine_bench.prefix_tokens)->capture_default_str();
  engine_cmd->add_option("--suffix-tokens", engine_bench.suffix_tokens)->capture_default_str();
  engine_cmd->add_option("--streams", engine_bench.streams)->capture_default_str();
  engine_cmd->add_option("--long-prompt-tokens", engine_bench.long_prompt_tokens)
      ->capture_default_str();
  engine_cmd->add_option("--codec-prompts", engine_bench.codec_prompts)->capture_default_str();
  engine_cmd->add_option("--codec-prompt-tokens", engine_bench.codec_prompt_tokens)
      ->capture_default_str();
  engine_cmd->add_option("--codec-generate", engine_bench.codec_generate)->capture_default_str();
  engine_cmd->add_option("--kv-type-sequences", engine_bench.kv_type_sequences)
      ->capture_default_str();
  engine_cmd->add_option("--kv-type-context", engine_bench.kv_type_context)->capture_default_str();
  engine_cmd->add_option("--max-batch-tokens", engine_bench.max_batch_tokens)
      ->capture_default_str();
  engine_cmd->add_option("-t,--threads", bench_threads);
  add_kv_cache_type_option(*engine_cmd, engine_bench.kv_type);
  engine_cmd->add_flag("--json", bench_json, "Print JSON instead of text");

  TierBenchOptions tier_bench;
  auto* tiers_cmd = bench_cmd->add_subcommand(
      "tiers", "KV tier load bandwidth (DRAM, SSD) next to the raw bandwidth of each medium");
  tiers_cmd->add_option("--block-bytes", tier_bench.block_bytes)->capture_default_str();
  tiers_cmd->add_option("--blocks", tier_bench.blocks)->capture_default_str();
  tiers_cmd->add_option("--dir", tier_bench.disk_dir, "Directory on the disk to measure");

  TransferBenchOptions transfer_bench;
  auto* transfer_cmd = bench_cmd->add_subcommand(
      "kv-transfer",
      "KV transfer between instances on loopback next to memcpy and raw TCP, and its tail "
      "after a prefill");
  transfer_cmd->add_option("--block-bytes", transfer_bench.block_bytes)->capture_default_str();
  transfer_cmd->add_option("--blocks", transfer_bench.blocks)->capture_default_str();
  transfer_cmd->add_option("--rounds", transfer_bench.rounds)->capture_default_str();
  transfer_cmd
      ->add_option("--prefill-ms-per-block", transfer_bench.prefill_ms_per_block,
                   "Pace of the blocks in the tail measurement")
      ->capture_default_str();

  add_bench_serve_command(*bench_cmd);
  add_trace_gen_command(*bench_cmd);
  add_serve_command(app);
  add_route_command(app);

  CLI11_PARSE(app, argc, argv);
  init_logging(log_level);

  if (generate->parsed()) return run_generate(gen);
  if (int rc = run_serve_if_parsed(); rc >= 0) return rc;
  if (int rc = run_route_if_parsed(); rc >= 0) return rc;
  if (int rc = run_bench_serve_if_parsed(); rc >= 0) return rc;
  if (int rc = run_trace_gen_if_parsed(); rc >= 0) return rc;
  if (synth_cmd->parsed()) {
    auto type = tensor_type_from_name(synth_type);
    if (!type || *type == TensorType::kQ8_K) {
      return fail(make_error(StatusCode::kInvalidArgument, "unknown tensor type '{}'", synth_type));
    }
    synth.type = *type;
    auto summary = synthesize_model(synth, synth_out, synth_threads);
    if (!summary.is_ok()) return fail(summary.status());
    std::printf("wrote %s: %s\n", summary->path.c_str(), summary->description.c_str());
    return 0;
  }
  if (inspect_cmd->parsed()) return run_inspect(inspect_path, inspect_all);
  if (quantize_cmd->parsed()) {
    auto target = parse_quantize_target(quantize_type);
    if (!target.is_ok()) return fail(target.status());
    quantize.target = *target;
    auto summary = quantize_model(quantize_in, quantize_out, quantize);
    if (!summary.is_ok()) return fail(summary.status().with_context(quantize_in));
    std::string types;
    for (const auto& [type, n] : summary->tensors_by_type) {
      types += fmt::format("{}{} {}", types.empty() ? "" : ", ", n, type);
    }
    std::printf("wrote %s: %s, %.1f MiB -> %.1f MiB (tensors: %s%s)\n", quantize_out.c_str(),
                file_type_name(*target), summary->input_bytes / 1048576.0,
                summary->output_bytes / 1048576.0, types.c_str(),
                summary->n_fallback
                    ? fmt::format("; {} fell back to another type", summary->n_fallback).c_str()
                    : "");
    return 0;
  }
  if (eval_cmd->parsed()) return run_model_eval(eval);
  if (ppl_cmd->parsed()) return run_model_perplexity(ppl);
  if (train_tok_cmd->parsed()) return run_train_tokenizer(train_tok);
  if (encode_cmd->parsed()) return run_encode_corpus(encode);
  if (import_cmd->parsed()) return run_import_model(import_args);
  if (default_cmd->parsed()) {
    auto path = resolve_model_path("");
    if (!path.is_ok()) return fail(path.status());
    std::printf("%s\n", path->c_str());
    return 0;
  }
  // The model a benchmark runs: --model, or the default model.
  auto load_bench_model = [&]() -> Result<std::unique_ptr<Model>> {
    IG_ASSIGN_OR_RETURN(std::string path, resolve_model_path(bench_model));
    return Model::load(path);
  };
  if (decode_cmd->parsed()) {
    auto model = load_bench_model();
    if (!model.is_ok()) return fail(model.status());
    CpuBackend backend(bench_threads);
    auto result = run_decode_bench(**model, backend, bench_options);
    if (!result.is_ok()) return fail(result.status());
    std::printf("%s\n", bench_json ? result->to_json().c_str() : result->to_text().c_str());
    return 0;
  }
  if (grammar_cmd->parsed()) {
    auto model = load_bench_model();
    if (!model.is_ok()) return fail(model.status());
    CpuBackend backend(bench_threads);
    auto report = run_grammar_bench(**model, backend, grammar_bench);
    if (!report.is_ok()) return fail(report.status());
    std::printf("%s", report->c_str());
    return 0;
  }
  if (transfer_cmd->parsed()) {
    auto report = run_transfer_bench(transfer_bench);
    if (!report.is_ok()) return fail(report.status());
    std::printf("%s", report->c_str());
    return 0;
  }
  if (tiers_cmd->parsed()) {
    auto report = run_tier_bench(tier_bench);
    if (!report.is_ok()) return fail(report.status());
    std::printf("%s", report->c_str());
    return 0;
  }
  if (engine_cmd->parsed()) {
    auto model = load_bench_model();
    if (!model.is_ok()) return fail(model.status());
    auto tokenizer = Tokenizer::from_gguf((*model)->gguf());
    if (!tokenizer.is_ok()) return fail(tokenizer.status());
    CpuBackend backend(bench_threads);
    auto result = run_engine_bench(**model, **tokenizer, backend, engine_bench);
    if (!result.is_ok()) return fail(result.status());
    std::printf("%s\n", bench_json ? result->json.c_str() : result->text.c_str());
    return 0;
  }
  return 0;
}
