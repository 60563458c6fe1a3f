// The Jinja interpreter against Jinja2 itself: every case of the golden renders (real chat
// templates, byte for byte, errors included), plus the language features and the limits that
// keep a hostile template from hanging or crashing the server.
#include "model/jinja.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "golden_required.h"

namespace infergrid {
namespace {

using nlohmann::ordered_json;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// 2024-07-26 00:00:00 UTC, the date the golden renders fixed strftime_now to.
constexpr int64_t kGoldenNow = 1721952000;

TEST(Jinja, RendersEveryGoldenChatTemplateCaseAsJinja2Does) {
  const auto dir = std::filesystem::path(INFERGRID_SHARED_DIR) / "golden" / "chat-templates";
  if (!std::filesystem::exists(dir / "rendered.json")) {
    IG_GOLDEN_MISSING("no golden chat template renders in " << dir);
  }
  const auto golden = ordered_json::parse(read_file(dir / "rendered.json"));
  const auto& cases = golden.at("cases");
  ASSERT_EQ(cases.size(), 35u);
  JinjaOptions options;
  options.now = [] { return kGoldenNow; };
  int errors_expected = 0;
  for (const auto& c : cases) {
    const std::string name =
        c.at("template").get<std::string>() + "/" + c.at("conversation").get<std::string>();
    auto parsed =
        JinjaTemplate::parse(read_file(dir / (c.at("template").get<std::string>() + ".jinja")));
    ASSERT_TRUE(parsed.is_ok()) << name << ": " << parsed.status().to_string();
    ordered_json context = {{"messages", c.at("messages")},
                            {"add_generation_prompt", c.at("add_generation_prompt")},
                            {"bos_token", c.at("bos_token")},
                            {"eos_token", c.at("eos_token")}};
    auto rendered = parsed->render(context, options);
    if (c.contains("error")) {
      ++errors_expected;
      ASSERT_FALSE(rendered.is_ok()) << name;
      EXPECT_EQ(rendered.status().code(), StatusCode::kInvalidArgument) << name;
      EXPECT_EQ(rendered.status().message(), c.at("error").get<std::string>()) << name;
    } else {
      ASSERT_TRUE(rendered.is_ok()) << name << ": " << rendered.status().to_string();
      EXPECT_EQ(*rendered, c.at("rendered").get<std::string>()) << name;
    }
  }
  EXPECT_EQ(errors_expected, 2);
}

std::string render(const std::string& source,
                   const ordered_json& context = ordered_json::object()) {
  auto t = JinjaTemplate::parse(source);
  if (!t.is_ok()) return "PARSE ERROR: " + t.status().message();
  auto out = t->render(context);
  if (!out.is_ok()) return "ERROR: " + out.status().message();
  return *out;
}

TEST(Jinja, WhitespaceControlFollowsTrimAndLstripBlocks) {
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(render("a   {{- 'x' -}}   b"), "axb");
  EXPECT_EQ(render("{# note #}\nx"), "x");
  EXPECT_EQ(render("  {%+ if true %}y{% endif %}"), "  y");
  EXPECT_EQ(render("{% raw %}{{ not rendered }}{% endraw %}"), "{{ not rendered }}");
  EXPECT_EQ(render("line\n"), "line");  // one trailing newline is dropped, as Jinja2 does
}

TEST(Jinja, ExpressionsHavePythonSemantics) {
  EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}"),
            "3 -4 2 3.5 1024");
  EXPECT_EQ(render("{{ 1 + 2.5 }} {{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }}"),
            "3.5 a1None ababab [1, 2]");
  EXPECT_EQ(render("{{ 'abcdef'[1:4] }} {{ 'abcdef'[::-1] }} {{ [1,2,3][-1] }} {{ 'héllo'[1] }}"),
            "bcd fedcba 3 é");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }}"),
            "True True True");
  EXPECT_EQ(render("{{ none or 'x' }} {{ 0 and 1 }} {{ 'y' if false }}{{ 1 if 1 else 2 }}"),
            "x 0 1");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [true, none]} }}"), "{'a': 1, 'b': [True, None]}");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }} {{ '  x y '.split() }} {{ ' t '.strip() }}."),
            "['a', 'b', '', 'c'] ['x', 'y'] t.");
  EXPECT_EQ(render("{{ 'Hello'.startswith('He') }} {{ 'x.py'.endswith(('.md', '.py')) }}"),
            "True True");
  EXPECT_EQ(render("{{ 1 / 0 }}").rfind("ERROR: chat template: line 1:", 0), 0u);
  EXPECT_EQ(render("{{ 9223372036854775807 + 1 }}"),
            "ERROR: chat template: line 1: integer overflow");
}

TEST(Jinja, LoopsScopesNamespacesAndMacros) {
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}"
                   "{% endfor %}"),
            "11,22,33");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in range(10) if x is odd %}{% if x > 6 %}{% break %}{% endif %}{{ x }}"
                   "{% endfor %}"),
            "135");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  // A set inside a loop stays in the loop; a namespace carries the value out.
  EXPECT_EQ(render("{% set x = 1 %}{% set ns = namespace(y=1) %}{% for i in [5] %}{% set x = i %}"
                   "{% set ns.y = i %}{% endfor %}{{ x }} {{ ns.y }}"),
            "1 5");
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('Ann') }} {{ greet('Bo', punct='?') }}"),
            "Hi Ann! Hi Bo?");
  EXPECT_EQ(render("{% set block %}in {{ 1 + 1 }}{% endset %}[{{ block }}]"), "[in 2]");
  EXPECT_EQ(render("{{ loop_var is defined }} {{ none is none }} {{ 4 is divisibleby 2 }}"),
            "False True True");
}

TEST(Jinja, FiltersRealTemplatesUse) {
  const ordered_json context = {
      {"tools",
       {{{"type", "function"}, {"function", {{"name", "get_weather"}}}}, {{"type", "other"}}}},
      {"d", {{"b", "é"}, {"a", 1.5}}}};
  EXPECT_EQ(render("{{ tools | selectattr('type', 'equalto', 'function') | map(attribute="
                   "'function.name') | join(', ') }}",
                   context),
            "get_weather");
  EXPECT_EQ(render("{{ d | tojson }}|{{ d | tojson(indent=2) }}", context),
            "{\"b\": \"é\", \"a\": 1.5}|{\n  \"b\": \"é\",\n  \"a\": 1.5\n}");
  EXPECT_EQ(render("{{ [3, 1, 2] | sort | list }} {{ [1, 1, 2] | unique | list }} {{ 'ab' | "
                   "upper }} {{ x | default('dflt') }} {{ [1, 2] | length }} {{ ' s ' | trim }}"),
            "[1, 2, 3] [1, 2] AB dflt 2 s");
  EXPECT_EQ(render("{{ [1, 2, 3] | reject('odd') | list }} {{ d | dictsort | first }}", context),
            "[2] ['a', 1.5]");
  EXPECT_EQ(render("{{ 'x' | nosuchfilter }}"),
            "ERROR: chat template: line 1: no filter named 'nosuchfilter'");
}

TEST(Jinja, TemplateErrorsAreTheTemplatesOwnMessage) {
  EXPECT_EQ(render("{{ raise_exception('Roles must alternate') }}"), "ERROR: Roles must alternate");
  JinjaOptions options;
  options.now = [] { return kGoldenNow; };
  auto t = JinjaTemplate::parse("{{ strftime_now('%d %b %Y') }}");
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(*t->render(ordered_json::object(), options), "26 Jul 2024");
}

TEST(Jinja, MalformedAndHostileTemplatesFailCleanly) {
  for (const char* source : {"{% if x %}", "{% for %}", "{{ ", "{{ 1 + }}", "{% endfor %}",
                             "{% set %}", "{{ 'unterminated }}", "{% macro m( %}{% endmacro %}",
                             "{% unknowntag %}", "{{ a[ }}", "{{ (((1 }}", "{% raw %}x"}) {
    auto t = JinjaTemplate::parse(source);
    EXPECT_FALSE(t.is_ok()) << source;
    if (!t.is_ok()) {
      EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << source;
    }
  }
  std::string deep(5000, '(');
  EXPECT_FALSE(JinjaTemplate::parse("{{ " + deep + " }}").is_ok());
  std::string nots, minuses;
  for (int i = 0; i < 100000; ++i) nots += "not ";
  for (int i = 0; i < 100000; ++i) minuses += "- ";
  EXPECT_FALSE(JinjaTemplate::parse("{{ " + nots + "1 }}").is_ok());
  EXPECT_FALSE(JinjaTemplate::parse("{{ " + minuses + "1 }}").is_ok());
  // Endless work is cut off, not run.
  EXPECT_NE(render("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}"
                   "{% endfor %}")
                .find("ran too long"),
            std::string::npos);
  EXPECT_NE(
      render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("nested too deeply"),
      std::string::npos);
  EXPECT_NE(render("{{ 'x' * 1000000000 }}").find("too long"), std::string::npos);
  // Arbitrary bytes never crash the parser or renderer.
  uint64_t state = 42;
  const std::string alphabet = "{}%#-+()[]'\",.|:~ abcxyz019 if for in set endif endfor not\n";
  for (int i = 0; i < 3000; ++i) {
    std::string source;
    const int n = static_cast<int>(state % 60);
    for (int k = 0; k < n; ++k) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      source += alphabet[(state >> 33) % alphabet.size()];
    }
    auto t = JinjaTemplate::parse(source);
    if (t.is_ok()) (void)t->render({{"messages", ordered_json::array()}});
  }
}

}  // namespace
}  // namespace infergrid
