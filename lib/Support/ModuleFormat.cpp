//===- ModuleFormat.cpp - the compiled module file (.fmoe) ----------------===//
//
// Part of fmoe. A line-oriented text format: easy to read in a diff or a bug
// report, trivial to parse without dependencies, and closed by a checksum so
// that a truncated or corrupted file is refused rather than misread.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Support/ModuleFormat.h"

#include <charconv>
#include <sstream>

namespace fmoe::format {

uint64_t checksum(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

static std::string sizeStr(const SizeExpr &s) {
  return std::to_string(s.perToken) + " " + std::to_string(s.constant) + " " +
         std::to_string(s.divisor) + " " + std::to_string(s.perReceived);
}

std::string serialize(const Module &m) {
  std::ostringstream os;
  os << kMagic << " " << m.version << "\n";
  os << "target " << m.target << "\n";
  for (const auto &[k, v] : m.config)
    os << "config " << k << " " << v << "\n";
  for (const Program &p : m.programs) {
    os << "program " << p.name << " " << p.function << "\n";
    for (const Buffer &b : p.buffers)
      os << "buffer " << b.name << " " << b.dtype << " " << b.role << " "
         << sizeStr(b.rows) << " " << b.cols
         << (b.clobbered ? " clobbered" : "") << "\n";
    for (const Command &c : p.commands) {
      os << c.kind << " " << c.target << "\n";
      os << "  op " << c.op << "\n";
      for (const auto &[k, v] : c.attrs)
        os << "  attr " << k << " " << v << "\n";
      os << "  args";
      for (const Operand &a : c.args)
        os << " "
           << (a.buffer == Operand::kTokens ? std::string("T")
                                            : std::to_string(a.buffer));
      os << "\n";
      if (c.kind == "launch")
        os << "  grid " << sizeStr(c.grid) << "\n  block " << c.block << "\n";
      if (!c.release.empty()) {
        os << "  release";
        for (int64_t r : c.release)
          os << " " << r;
        os << "\n";
      }
      os << "end\n";
    }
    os << "endprogram\n";
  }
  os << "ptx " << m.ptx.size() << "\n" << m.ptx << "\n";
  std::string body = os.str();
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(checksum(body)));
  return body + "checksum " + hex + "\n";
}

namespace {

/// Reads the file line by line, remembering the line number for errors.
class Reader {
public:
  explicit Reader(std::string_view text) : text(text) {}

  bool next(std::string_view &line) {
    if (pos >= text.size())
      return false;
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos)
      end = text.size();
    line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lineNo;
    return true;
  }
  std::string_view take(size_t n) {
    std::string_view s = text.substr(pos, n);
    pos += n;
    return s;
  }
  size_t remaining() const { return pos < text.size() ? text.size() - pos : 0; }
  int lineNo = 0;

private:
  std::string_view text;
  size_t pos = 0;
};

std::string_view word(std::string_view &rest) {
  size_t s = rest.find_first_not_of(' ');
  if (s == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(s);
  size_t e = rest.find(' ');
  std::string_view w = rest.substr(0, e);
  rest = e == std::string_view::npos ? std::string_view() : rest.substr(e + 1);
  return w;
}

bool toInt(std::string_view s, int64_t &v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

bool readSize(std::string_view &rest, SizeExpr &s) {
  return toInt(word(rest), s.perToken) && toInt(word(rest), s.constant) &&
         toInt(word(rest), s.divisor) && s.divisor > 0 &&
         toInt(word(rest), s.perReceived);
}

} // namespace

bool parse(std::string_view bytes, Module &m, std::string &error) {
  m = Module();
  // The checksum line closes the file; anything else means it was cut short
  // or altered.
  size_t at = bytes.rfind("checksum ");
  if (at == std::string_view::npos || (at != 0 && bytes[at - 1] != '\n')) {
    error = "not a complete fmoe module: the closing checksum line is missing "
            "(truncated file?)";
    return false;
  }
  std::string_view tail = bytes.substr(at + 9);
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r'))
    tail.remove_suffix(1);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(checksum(bytes.substr(0, at))));
  if (tail != hex) {
    error = "fmoe module checksum mismatch (file corrupted): stored " +
            std::string(tail) + ", computed " + hex;
    return false;
  }
  Reader r(bytes.substr(0, at));
  std::string_view line;
  auto fail = [&](const std::string &what) {
    error = "fmoe module, line " + std::to_string(r.lineNo) + ": " + what;
    return false;
  };
  if (!r.next(line))
    return fail("empty file");
  std::string_view rest = line;
  if (word(rest) != kMagic)
    return fail("not an fmoe module (bad magic)");
  if (!toInt(word(rest), m.version))
    return fail("bad version");
  if (m.version != kVersion)
    return fail("module format version " + std::to_string(m.version) +
                " is not supported (this build reads version " +
                std::to_string(kVersion) + "); recompile the module");
  Program *prog = nullptr;
  Command *cmd = nullptr;
  bool sawPtx = false;
  while (r.next(line)) {
    rest = line;
    std::string_view key = word(rest);
    if (cmd) {
      if (key == "end") {
        cmd = nullptr;
      } else if (key == "op") {
        cmd->op = std::string(word(rest));
      } else if (key == "attr") {
        std::string k(word(rest));
        cmd->attrs.emplace_back(k, std::string(rest));
      } else if (key == "args") {
        for (std::string_view w = word(rest); !w.empty(); w = word(rest)) {
          Operand o;
          if (w != "T" && (!toInt(w, o.buffer) || o.buffer < 0 ||
                           o.buffer >= (int64_t)prog->buffers.size()))
            return fail("bad command argument '" + std::string(w) + "'");
          cmd->args.push_back(o);
        }
      } else if (key == "grid") {
        if (!readSize(rest, cmd->grid))
          return fail("bad grid");
      } else if (key == "block") {
        if (!toInt(word(rest), cmd->block) || cmd->block <= 0)
          return fail("bad block size");
      } else if (key == "release") {
        for (std::string_view w = word(rest); !w.empty(); w = word(rest)) {
          int64_t b;
          if (!toInt(w, b) || b < 0 || b >= (int64_t)prog->buffers.size())
            return fail("bad released buffer '" + std::string(w) + "'");
          cmd->release.push_back(b);
        }
      } else {
        return fail("unknown command field '" + std::string(key) + "'");
      }
      continue;
    }
    if (key == "target") {
      m.target = std::string(word(rest));
    } else if (key == "config") {
      std::string k(word(rest));
      m.config.emplace_back(k, std::string(rest));
    } else if (key == "program") {
      m.programs.emplace_back();
      prog = &m.programs.back();
      prog->name = std::string(word(rest));
      prog->function = std::string(word(rest));
    } else if (key == "endprogram") {
      if (!prog)
        return fail("endprogram outside a program");
      prog = nullptr;
    } else if (key == "buffer") {
      if (!prog)
        return fail("buffer outside a program");
      Buffer b;
      b.name = std::string(word(rest));
      b.dtype = std::string(word(rest));
      b.role = std::string(word(rest));
      if (b.dtype != "f32" && b.dtype != "bf16" && b.dtype != "f16" &&
          b.dtype != "i32")
        return fail("unknown dtype '" + b.dtype + "'");
      if (b.role != "input" && b.role != "output" && b.role != "temp")
        return fail("unknown buffer role '" + b.role + "'");
      if (!readSize(rest, b.rows) || !toInt(word(rest), b.cols) || b.cols < 1)
        return fail("bad buffer size");
      if (std::string_view flag = word(rest); flag == "clobbered")
        b.clobbered = true;
      else if (!flag.empty())
        return fail("unknown buffer flag '" + std::string(flag) + "'");
      if (b.clobbered && b.role != "input")
        return fail("only an input can be clobbered");
      prog->buffers.push_back(b);
    } else if (key == "launch" || key == "call") {
      if (!prog)
        return fail("command outside a program");
      prog->commands.emplace_back();
      cmd = &prog->commands.back();
      cmd->kind = std::string(key);
      cmd->target = std::string(word(rest));
    } else if (key == "ptx") {
      int64_t n;
      if (!toInt(word(rest), n) || n < 0 || (size_t)n > r.remaining())
        return fail("bad ptx size");
      m.ptx = std::string(r.take(n));
      sawPtx = true;
      r.next(line); // the newline after the PTX text
    } else if (!key.empty()) {
      return fail("unknown entry '" + std::string(key) + "'");
    }
  }
  if (cmd || prog)
    return fail("unterminated program or command");
  if (!sawPtx)
    return fail("no ptx section");
  if (m.target.empty())
    return fail("no target");
  return true;
}

} // namespace fmoe::format
