// The SSE parser must give the same events however the network splits the body.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "net/http_client.h"

namespace infergrid {
namespace {

struct Parsed {
  std::vector<std::string> events;
  bool done = false;
};

Parsed parse_in_pieces(const std::string& body, const std::vector<size_t>& cuts) {
  SseParser parser;
  Parsed p;
  size_t from = 0;
  for (size_t cut : cuts) {
    parser.feed(std::string_view(body).substr(from, cut - from), p.events);
    from = cut;
  }
  parser.feed(std::string_view(body).substr(from), p.events);
  p.done = parser.done();
  return p;
}

// An OpenAI-style stream with everything a server may legally send: comments (keep-alives),
// event/id fields, a multi-line data event, CRLF and bare-CR line ends, and bytes after [DONE].
const std::string kStream =
    ": keep-alive\r\n\r\n"
    "data: {\"choices\":[{\"text\":\"Hello\"}]}\r\n\r\n"
    "event: message\nid: 7\ndata: {\"choices\":[{\"text\":\" world\"}]}\n\n"
    "data: first line\ndata:second line\r\ndata:  two spaces\n\n"
    "retry: 100\r\r"
    "data: {\"usage\":{\"completion_tokens\":2}}\r\r"
    "data: [DONE]\n\n"
    "data: after done\n\n";

const std::vector<std::string> kExpected = {
    "{\"choices\":[{\"text\":\"Hello\"}]}",
    "{\"choices\":[{\"text\":\" world\"}]}",
    "first line\nsecond line\n two spaces",
    "{\"usage\":{\"completion_tokens\":2}}",
};

TEST(SseParser, WholeStreamGivesEventsAndStopsAtDone) {
  const Parsed p = parse_in_pieces(kStream, {});
  EXPECT_EQ(p.events, kExpected);
  EXPECT_TRUE(p.done);
}

TEST(SseParser, SameEventsWhereverTheBodyIsSplitOnce) {
  for (size_t cut = 0; cut <= kStream.size(); ++cut) {
    const Parsed p = parse_in_pieces(kStream, {cut});
    ASSERT_EQ(p.events, kExpected) << "split at byte " << cut;
    ASSERT_TRUE(p.done);
  }
}

TEST(SseParser, SameEventsWhereverTheBodyIsSplitTwice) {
  for (size_t a = 0; a <= kStream.size(); ++a) {
    for (size_t b = a; b <= kStream.size(); ++b) {
      const Parsed p = parse_in_pieces(kStream, {a, b});
      ASSERT_EQ(p.events, kExpected) << "split at bytes " << a << " and " << b;
    }
  }
}

TEST(SseParser, OneByteAtATime) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < kStream.size(); ++i) cuts.push_back(i);
  const Parsed p = parse_in_pieces(kStream, cuts);
  EXPECT_EQ(p.events, kExpected);
  EXPECT_TRUE(p.done);
}

TEST(SseParser, CrLfSplitBetweenCrAndLfIsOneLineEnd) {
  // If the LF after a CR were taken as a second line end, "a" would be dispatched early as its
  // own event and "b" would become a second event.
  const Parsed p = parse_in_pieces("data: a\r\ndata: b\r\n\r\n", {8});
  EXPECT_EQ(p.events, std::vector<std::string>{"a\nb"});
}

TEST(SseParser, EventsWithoutDataAndUnfinishedEventsAreNotDispatched) {
  SseParser parser;
  std::vector<std::string> events;
  parser.feed(": comment only\n\nevent: ping\n\nid: 3\n\ndata: pending", events);
  EXPECT_TRUE(events.empty());
  EXPECT_FALSE(parser.done());
  parser.feed("\n\n", events);
  EXPECT_EQ(events, std::vector<std::string>{"pending"});
}

TEST(SseParser, FieldWithoutColonAndEmptyDataGiveAnEmptyEvent) {
  const Parsed p = parse_in_pieces("data\n\ndata:\n\n", {});
  EXPECT_EQ(p.events, (std::vector<std::string>{"", ""}));
}

TEST(SseParser, DoneOnlyWhenTheWholeDataIsTheMarker) {
  const Parsed p = parse_in_pieces("data: [DONE] \n\ndata: [DONE]x\n\ndata: [DONE]\n\n", {});
  EXPECT_EQ(p.events, (std::vector<std::string>{"[DONE] ", "[DONE]x"}));
  EXPECT_TRUE(p.done);
}

}  // namespace
}  // namespace infergrid
