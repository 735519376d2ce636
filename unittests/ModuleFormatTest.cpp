//===- ModuleFormatTest.cpp - the compiled module file --------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Support/ModuleFormat.h"

#include <gtest/gtest.h>

using namespace fmoe::format;

namespace {

Module sample() {
  Module m;
  m.target = "sm_90";
  m.config = {{"layer.num_experts", "8"}, {"layer.activation", "gelu"}};
  Program p;
  p.name = "forward";
  p.function = "layer";
  p.buffers.push_back({"input", "bf16", "input", {1, 0, 1}, 1024});
  // An input the program overwrites.
  p.buffers.push_back({"saved0", "bf16", "input", {2, 0, 1}, 4096, true});
  p.buffers.push_back({"counts", "i32", "temp", {0, 8, 1}, 1});
  p.buffers.push_back({"output", "bf16", "output", {1, 0, 1}, 1024});
  // An expert-side buffer: as many rows as the exchange receives.
  p.buffers.push_back({"h", "bf16", "temp", {0, 0, 1, 1}, 4096});
  Command c;
  c.kind = "launch";
  c.target = "layer_gate_route";
  c.op = "fmoe.gate_route";
  c.attrs = {{"top_k", "2"}, {"gate", "#fmoe<gate naive>"}};
  c.args = {{0}, {2}, {Operand::kTokens}};
  c.grid = {1, 0, 256};
  c.block = 256;
  c.release = {2};
  p.commands.push_back(c);
  Command call;
  call.kind = "call";
  call.target = "fmoe_rt_memset";
  call.op = "fmoe.dispatch";
  call.attrs = {{"byte", "255"}};
  call.args = {{3}};
  p.commands.push_back(call);
  m.programs.push_back(p);
  m.ptx =
      ".version 8.0\n.target sm_90\n.visible .entry layer_gate_route()\n{\n}\n";
  return m;
}

TEST(ModuleFormat, RoundTrips) {
  Module m = sample();
  std::string bytes = serialize(m);
  Module back;
  std::string error;
  ASSERT_TRUE(parse(bytes, back, error)) << error;
  EXPECT_EQ(back.version, kVersion);
  EXPECT_EQ(back.target, "sm_90");
  EXPECT_EQ(back.config, m.config);
  EXPECT_EQ(back.ptx, m.ptx);
  ASSERT_EQ(back.programs.size(), 1u);
  const Program &p = back.programs[0];
  EXPECT_EQ(p.function, "layer");
  ASSERT_EQ(p.buffers.size(), 5u);
  EXPECT_EQ(p.buffers[2].dtype, "i32");
  EXPECT_EQ(p.buffers[0].rows, (SizeExpr{1, 0, 1}));
  EXPECT_FALSE(p.buffers[0].clobbered);
  EXPECT_TRUE(p.buffers[1].clobbered);
  EXPECT_EQ(p.buffers[4].rows, (SizeExpr{0, 0, 1, 1}));
  EXPECT_TRUE(p.buffers[4].rows.dependsOnReceived());
  EXPECT_EQ(p.buffers[4].rows.eval(1000, 37), 37);
  ASSERT_EQ(p.commands.size(), 2u);
  EXPECT_EQ(p.commands[0].attrs, m.programs[0].commands[0].attrs);
  EXPECT_EQ(p.commands[0].args.back().buffer, Operand::kTokens);
  EXPECT_EQ(p.commands[0].grid.eval(1000, 0), 4); // ceil(1000 / 256)
  EXPECT_EQ(p.commands[0].release, std::vector<int64_t>{2});
  EXPECT_EQ(p.commands[1].kind, "call");
  // Serialising again gives the same bytes.
  EXPECT_EQ(serialize(back), bytes);
}

TEST(ModuleFormat, SizeExprEvaluates) {
  SizeExpr rows{2, 1, 1};
  EXPECT_EQ(rows.eval(0, 0), 1);
  EXPECT_EQ(rows.eval(7, 0), 15);
  EXPECT_EQ((SizeExpr{3, 0, 2}).eval(3, 0), 5);
  // ceil((T + 256 R) / 256) for T = 10, R = 3.
  EXPECT_EQ((SizeExpr{1, 0, 256, 256}).eval(10, 3), 4);
}

TEST(ModuleFormat, RefusesTruncatedFiles) {
  std::string bytes = serialize(sample());
  Module m;
  std::string error;
  for (size_t cut :
       {size_t(0), size_t(10), bytes.size() / 2, bytes.size() - 5}) {
    EXPECT_FALSE(parse(bytes.substr(0, cut), m, error)) << cut;
    EXPECT_FALSE(error.empty());
  }
}

TEST(ModuleFormat, RefusesCorruptedFiles) {
  std::string bytes = serialize(sample());
  bytes[bytes.find("gate_route")] = 'G';
  Module m;
  std::string error;
  EXPECT_FALSE(parse(bytes, m, error));
  EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
}

/// Re-closes `body` with a valid checksum, to test what the checksum alone
/// would not catch.
std::string withChecksum(const std::string &body) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(checksum(body)));
  return body + "checksum " + hex + "\n";
}

std::string bodyOf(const std::string &bytes) {
  return bytes.substr(0, bytes.rfind("checksum "));
}

TEST(ModuleFormat, RefusesOtherVersions) {
  std::string body = bodyOf(serialize(sample()));
  for (const char *other : {"2", "4"}) {
    std::string old = body;
    old.replace(0, old.find('\n'), std::string("fmoe-module ") + other);
    Module m;
    std::string error;
    EXPECT_FALSE(parse(withChecksum(old), m, error));
    EXPECT_NE(error.find(std::string("version ") + other + " is not supported"),
              std::string::npos)
        << error;
  }
}

TEST(ModuleFormat, RefusesBadContent) {
  std::string body = bodyOf(serialize(sample()));
  Module m;
  std::string error;
  std::string badMagic = "elf" + body.substr(body.find(' '));
  EXPECT_FALSE(parse(withChecksum(badMagic), m, error));
  EXPECT_NE(error.find("bad magic"), std::string::npos) << error;

  std::string badArg = body;
  badArg.replace(badArg.find("args 0 2 T"), 10, "args 0 9 T");
  EXPECT_FALSE(parse(withChecksum(badArg), m, error));
  EXPECT_NE(error.find("bad command argument '9'"), std::string::npos) << error;

  std::string badType = body;
  badType.replace(badType.find(" i32 "), 5, " i64 ");
  EXPECT_FALSE(parse(withChecksum(badType), m, error));
  EXPECT_NE(error.find("unknown dtype 'i64'"), std::string::npos) << error;

  std::string badFlag = body;
  badFlag.replace(badFlag.find(" clobbered"), 10, " shredded");
  EXPECT_FALSE(parse(withChecksum(badFlag), m, error));
  EXPECT_NE(error.find("unknown buffer flag 'shredded'"), std::string::npos)
      << error;

  std::string clobberedOutput = body;
  size_t out = clobberedOutput.find("buffer output bf16 output 1 0 1 0 1024");
  ASSERT_NE(out, std::string::npos) << body;
  clobberedOutput.insert(clobberedOutput.find('\n', out), " clobbered");
  EXPECT_FALSE(parse(withChecksum(clobberedOutput), m, error));
  EXPECT_NE(error.find("only an input can be clobbered"), std::string::npos)
      << error;
}

} // namespace
