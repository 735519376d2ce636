//===- ModuleFormat.h - the compiled module file (.fmoe) --------*- C++ -*-===//
//
// Part of fmoe. Plain C++ (no MLIR): the compiler writes this format and the
// runtime reads it. The layout is described in docs/module-format.md.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_SUPPORT_MODULEFORMAT_H
#define FMOE_SUPPORT_MODULEFORMAT_H

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fmoe::format {

/// Bumped whenever a reader of the previous version would misread a file.
constexpr int64_t kVersion = 3;
constexpr std::string_view kMagic = "fmoe-module";

/// A size that depends on the token count T and, after an expert-parallel
/// exchange, on the rows R it received: ceil((perToken*T + perReceived*R +
/// constant) / divisor).
struct SizeExpr {
  int64_t perToken = 0;
  int64_t constant = 0;
  int64_t divisor = 1;
  int64_t perReceived = 0;
  /// Whether the size needs R (known only once an exchange has run).
  bool dependsOnReceived() const { return perReceived != 0; }
  /// The size for T = tokens and R = received (pass 0 where the expression
  /// does not depend on R).
  int64_t eval(int64_t tokens, int64_t received) const {
    int64_t n = perToken * tokens + perReceived * received + constant;
    return (n + divisor - 1) / divisor;
  }
  bool operator==(const SizeExpr &o) const {
    return perToken == o.perToken && constant == o.constant &&
           divisor == o.divisor && perReceived == o.perReceived;
  }
};

/// One flat buffer of a program: `rows x cols` elements of `dtype`.
struct Buffer {
  std::string name;
  std::string dtype; // f32 | bf16 | f16 | i32
  std::string role;  // input | output | temp
  SizeExpr rows;
  int64_t cols = 1;
  /// An input the program overwrites (its memory reused once its last
  /// reader ran): a caller must not read it afterwards.
  bool clobbered = false;
};

/// Argument of a command: a buffer index, or the token count.
struct Operand {
  static constexpr int64_t kTokens = -1;
  int64_t buffer = kTokens;
};

struct Command {
  std::string kind;   // launch | call
  std::string target; // kernel entry (launch) or library function (call)
  std::string op;     // the semantic operation, e.g. fmoe.gate_route
  std::vector<std::pair<std::string, std::string>> attrs;
  std::vector<Operand> args;
  SizeExpr grid;                // launch only: blocks in x
  int64_t block = 0;            // launch only: threads per block
  std::vector<int64_t> release; // buffers whose last use is this command
};

struct Program {
  std::string name; // forward | backward
  std::string function;
  std::vector<Buffer> buffers;
  std::vector<Command> commands;
};

struct Module {
  int64_t version = kVersion;
  std::string target; // e.g. sm_90
  std::vector<std::pair<std::string, std::string>> config;
  std::vector<Program> programs;
  std::string ptx;
};

/// 64-bit FNV-1a, the integrity check of the file.
uint64_t checksum(std::string_view bytes);

/// The file's bytes, checksum included.
std::string serialize(const Module &module);

/// Parses and validates a file; on failure returns false and says why.
bool parse(std::string_view bytes, Module &module, std::string &error);

} // namespace fmoe::format

#endif // FMOE_SUPPORT_MODULEFORMAT_H
