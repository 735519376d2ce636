//===- fmoe-module-check.cpp - validate and summarise a .fmoe file --------===//
//
// Part of fmoe. Needs no MLIR: it is what the runtime's loader sees. Prints a
// summary of a compiled module, or why the file is refused (exit code 1).
//
//===----------------------------------------------------------------------===//

#include "fmoe/Support/ModuleFormat.h"

#include <fstream>
#include <iostream>
#include <sstream>

int main(int argc, char **argv) {
  if (argc != 2) {
    std::cerr << "usage: fmoe-module-check <module.fmoe>\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::cerr << "fmoe-module-check: cannot open '" << argv[1] << "'\n";
    return 1;
  }
  std::stringstream bytes;
  bytes << in.rdbuf();
  fmoe::format::Module m;
  std::string error;
  if (!fmoe::format::parse(bytes.str(), m, error)) {
    std::cerr << "fmoe-module-check: " << argv[1] << ": " << error << "\n";
    return 1;
  }
  std::cout << "module version " << m.version << " target " << m.target
            << " ptx " << m.ptx.size() << " bytes\n";
  for (const auto &[k, v] : m.config)
    std::cout << "config " << k << " = " << v << "\n";
  for (const auto &p : m.programs) {
    std::cout << "program " << p.name << " @" << p.function << ": "
              << p.buffers.size() << " buffers, " << p.commands.size()
              << " commands\n";
    for (const auto &c : p.commands)
      std::cout << "  " << c.kind << " " << c.target << " (" << c.op << ")\n";
  }
  return 0;
}
