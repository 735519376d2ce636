//===- Executor.cpp - running a program's commands ------------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Runtime.h"

namespace fmoe::runtime {

namespace {

/// Frees the executor's temporaries whatever happens.
struct Temporaries {
  Backend &backend;
  std::vector<void *> live;
  ~Temporaries() {
    for (void *p : live)
      if (p)
        backend.deallocate(p);
  }
};

std::string describe(const format::Buffer &b, int64_t numel) {
  return std::string(b.name) + " (" + b.dtype + ", " + std::to_string(numel) +
         " elements)";
}

} // namespace

void execute(const CompiledModule &module, const format::Program &program,
             Backend &backend, const std::vector<BufferRef> &inputs,
             const std::vector<BufferRef> &outputs, int64_t tokens,
             Communicator *communicator,
             const OutputAllocator &allocateOutput) {
  if (tokens < 0)
    throw Error("token count must be >= 0, got " + std::to_string(tokens));
  std::vector<BufferRef> bound(program.buffers.size());
  size_t nextIn = 0, nextOut = 0;
  Temporaries temps{backend, std::vector<void *>(program.buffers.size())};
  // Output buffers still to be obtained from allocateOutput: index into
  // `outputs`, or -1.
  std::vector<int64_t> lazyOutput(program.buffers.size(), -1);
  for (size_t i = 0; i < program.buffers.size(); ++i) {
    const format::Buffer &b = program.buffers[i];
    BufferRef ref;
    int64_t numel = bufferNumel(b, tokens);
    if (b.role == "temp") {
      // Allocated at its first use (below), freed after its last: only the
      // temporaries live at a time occupy memory.
      ref.dtype = parseDType(b.dtype);
      ref.numel = numel;
    } else {
      const std::vector<BufferRef> &given =
          b.role == "input" ? inputs : outputs;
      size_t &next = b.role == "input" ? nextIn : nextOut;
      if (next >= given.size())
        throw Error(std::string(program.name) + " program of '" +
                    module.origin() + "' expects more " + b.role +
                    "s: missing " + describe(b, numel));
      ref = given[next++];
      if (ref.dtype != parseDType(b.dtype) || ref.numel != numel)
        throw Error(std::string(program.name) + " program of '" +
                    module.origin() + "': " + b.role + " " + b.name +
                    " should be " + describe(b, numel) + ", got " +
                    std::string(dtypeName(ref.dtype)) + " with " +
                    std::to_string(ref.numel) + " elements");
      if (numel && !ref.data) {
        if (b.role == "output" && allocateOutput)
          lazyOutput[i] = int64_t(nextOut) - 1;
        else
          throw Error(std::string(program.name) + ": " + b.role + " " + b.name +
                      " has no data");
      }
    }
    ref.rows = b.rows.eval(tokens);
    ref.cols = b.cols;
    bound[i] = ref;
  }
  if (nextIn != inputs.size() || nextOut != outputs.size())
    throw Error(std::string(program.name) + " program of '" + module.origin() +
                "' takes " + std::to_string(nextIn) + " inputs and " +
                std::to_string(nextOut) + " outputs, got " +
                std::to_string(inputs.size()) + " and " +
                std::to_string(outputs.size()));

  Execution execution;
  execution.communicator = communicator;
  int64_t lastExchangeOut = -1; // buffer of the last exchange's offsets
  auto obtainOutput = [&](size_t i) {
    BufferRef &o = bound[i];
    o.data = allocateOutput(size_t(lazyOutput[i]), o);
    lazyOutput[i] = -1;
    if (!o.data)
      throw Error(std::string(program.name) + ": no memory for output " +
                  program.buffers[i].name);
  };
  std::vector<BufferRef> args;
  std::vector<bool> allocated(program.buffers.size(), false);
  for (const format::Command &cmd : program.commands) {
    args.clear();
    for (const format::Operand &o : cmd.args) {
      if (o.buffer == format::Operand::kTokens) {
        BufferRef t;
        t.isTokens = true;
        t.numel = tokens;
        args.push_back(t);
        continue;
      }
      if (!allocated[o.buffer] && program.buffers[o.buffer].role == "temp") {
        allocated[o.buffer] = true;
        BufferRef &t = bound[o.buffer];
        if (t.numel)
          t.data = temps.live[o.buffer] =
              backend.allocate(t.numel * dtypeSize(t.dtype));
      }
      if (lazyOutput[o.buffer] >= 0)
        obtainOutput(o.buffer);
      args.push_back(bound[o.buffer]);
    }
    execution.undoesLastExchange = lastExchangeOut >= 0 &&
                                   cmd.args.size() == 4 &&
                                   cmd.args[1].buffer == lastExchangeOut;
    backend.run(module.module(), cmd, args, tokens, execution);
    execution.undoesLastExchange = false;
    // An exchange tells the host how many rows arrived: later commands on
    // its output offsets can size their work by it (BufferRef::knownTotal).
    if (execution.exchangedRows >= 0 && cmd.args.size() == 4 &&
        cmd.args[3].buffer != format::Operand::kTokens) {
      bound[cmd.args[3].buffer].knownTotal = execution.exchangedRows;
      execution.exchangedRows = -1;
      lastExchangeOut = cmd.args[3].buffer;
    }
    for (int64_t r : cmd.release) {
      if (temps.live[r]) {
        backend.deallocate(temps.live[r]);
        temps.live[r] = nullptr;
        bound[r].data = nullptr; // a (wrong) later use fails, never dangles
      }
    }
  }
  for (size_t i = 0; i < bound.size(); ++i)
    if (lazyOutput[i] >= 0)
      obtainOutput(i);
}

} // namespace fmoe::runtime
