//===- Executor.cpp - running a program's commands ------------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Runtime.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace fmoe::runtime {

namespace {

/// FMOE_HOST_TIMING=1: the host time of every command (the backend's run,
/// allocations included) and of the binding before them, per (program,
/// target) over the process: calls, total, median and largest call (the
/// first call of a module also loads it), printed to stderr at exit. For
/// finding where the host spends a step (bench/host_overhead.py); off, it
/// costs one branch per command.
class HostTiming {
public:
  static HostTiming *get() {
    static HostTiming *timing = [] {
      const char *v = std::getenv("FMOE_HOST_TIMING");
      return v && *v && std::string(v) != "0" ? new HostTiming : nullptr;
    }();
    return timing;
  }
  void add(const std::string &program, const std::string &what, double us) {
    std::lock_guard<std::mutex> lock(mutex);
    entries[{program, what}].push_back(us);
  }
  static double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::micro>(
               std::chrono::steady_clock::now() - t0)
        .count();
  }

private:
  HostTiming() {
    std::atexit([] { get()->print(); });
  }
  void print() {
    std::lock_guard<std::mutex> lock(mutex);
    std::fprintf(stderr, "fmoe host timing (FMOE_HOST_TIMING): program, "
                         "target, calls, total us, median us, max us\n");
    for (auto &[key, us] : entries) {
      double total = 0;
      for (double v : us)
        total += v;
      std::sort(us.begin(), us.end());
      std::fprintf(stderr, "  %-9s %-44s %8zu %12.1f %9.2f %10.1f\n",
                   key.first.c_str(), key.second.c_str(), us.size(), total,
                   us[us.size() / 2], us.back());
    }
  }
  std::mutex mutex;
  std::map<std::pair<std::string, std::string>, std::vector<double>> entries;
};

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
  HostTiming *timing = HostTiming::get();
  auto started = std::chrono::steady_clock::now();
  if (tokens < 0)
    throw Error("token count must be >= 0, got " + std::to_string(tokens));
  std::string where =
      std::string(program.name) + " program of '" + module.origin() + "'";
  const std::vector<format::Buffer> &buffers = program.buffers;

  // R, the rows the program's exchange receives: known from an input that
  // has R rows (a backward's saved values), else once the exchange ran.
  int64_t received = -1;
  {
    size_t in = 0;
    for (const format::Buffer &b : buffers) {
      if (b.role != "input")
        continue;
      if (in >= inputs.size())
        break; // reported below
      const BufferRef &given = inputs[in++];
      if (!b.rows.dependsOnReceived() || b.rows.divisor != 1 || !b.cols)
        continue;
      int64_t rows = given.numel / b.cols;
      int64_t rest = rows - b.rows.perToken * tokens - b.rows.constant;
      int64_t r = rest / b.rows.perReceived;
      if (given.numel % b.cols || rest % b.rows.perReceived || r < 0 ||
          (received >= 0 && r != received))
        throw Error(where + ": input " + b.name + " has " +
                    std::to_string(given.numel) +
                    " elements, which match no received row count" +
                    (received >= 0 ? " (the other inputs say " +
                                         std::to_string(received) + " rows)"
                                   : std::string()));
      received = r;
    }
  }

  std::vector<BufferRef> bound(buffers.size());
  size_t nextIn = 0, nextOut = 0;
  Temporaries temps{backend, std::vector<void *>(buffers.size())};
  // Output buffers still to be obtained from allocateOutput: index into
  // `outputs`, or -1.
  std::vector<int64_t> lazyOutput(buffers.size(), -1);
  for (size_t i = 0; i < buffers.size(); ++i) {
    const format::Buffer &b = buffers[i];
    bool sized = !b.rows.dependsOnReceived() || received >= 0;
    int64_t numel = sized ? b.rows.eval(tokens, received) * b.cols : -1;
    BufferRef ref;
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
        throw Error(where + " expects more " + b.role + "s: missing " +
                    (sized ? describe(b, numel) : b.name));
      ref = given[next++];
      bool lazy = b.role == "output" && allocateOutput && !ref.data;
      // A lazily allocated output may leave its size open (-1).
      bool sizeOk = !sized || ref.numel == numel || (lazy && ref.numel < 0);
      if (ref.dtype != parseDType(b.dtype) || !sizeOk)
        throw Error(where + ": " + b.role + " " + b.name + " should be " +
                    (sized ? describe(b, numel) : b.name) + ", got " +
                    std::string(dtypeName(ref.dtype)) + " with " +
                    std::to_string(ref.numel) + " elements");
      if (lazy) {
        ref.numel = numel; // -1 until R is known
        if (numel != 0)
          lazyOutput[i] = int64_t(next) - 1;
      } else if (!sized) {
        throw Error(where + ": output " + b.name +
                    " has as many rows as the exchange receives; pass it "
                    "without data and an OutputAllocator");
      } else if (numel && !ref.data) {
        throw Error(where + ": " + b.role + " " + b.name + " has no data");
      }
    }
    ref.rows = sized ? b.rows.eval(tokens, received) : -1;
    ref.cols = b.cols;
    bound[i] = ref;
  }
  if (nextIn != inputs.size() || nextOut != outputs.size())
    throw Error(where + " takes " + std::to_string(nextIn) + " inputs and " +
                std::to_string(nextOut) + " outputs, got " +
                std::to_string(inputs.size()) + " and " +
                std::to_string(outputs.size()));

  // Gives buffer i its memory (a temporary from the backend, an output from
  // allocateOutput), sizing it now if it depends on R.
  std::vector<bool> allocated(buffers.size(), false);
  auto allocate = [&](size_t i) {
    const format::Buffer &b = buffers[i];
    BufferRef &ref = bound[i];
    allocated[i] = true;
    if (ref.numel < 0) {
      if (received < 0)
        throw Error(where + ": " + b.name +
                    " is sized by the rows an exchange receives, but is used "
                    "before any exchange");
      ref.rows = b.rows.eval(tokens, received);
      ref.numel = ref.rows * b.cols;
    }
    if (b.role == "temp") {
      if (ref.numel)
        ref.data = temps.live[i] =
            backend.allocate(ref.numel * dtypeSize(ref.dtype));
    } else if (lazyOutput[i] >= 0) {
      size_t index = size_t(lazyOutput[i]);
      lazyOutput[i] = -1;
      if (ref.numel) {
        ref.data = allocateOutput(index, ref);
        if (!ref.data)
          throw Error(where + ": no memory for output " + b.name);
      }
    }
  };
  auto pending = [&](size_t i) {
    return !allocated[i] && (buffers[i].role == "temp" || lazyOutput[i] >= 0);
  };

  if (timing)
    timing->add(program.name, "(binding)", HostTiming::since(started));
  Execution execution;
  execution.communicator = communicator;
  int64_t lastExchangeOut = -1; // buffer of the last exchange's offsets
  std::vector<BufferRef> args;
  for (const format::Command &cmd : program.commands) {
    // An exchange whose output is sized by R allocates it itself, once the
    // counts tell how many rows arrive.
    int64_t deferred = -1;
    bool exchange =
        cmd.kind == "call" && cmd.target.rfind("fmoe_rt_all_to_all", 0) == 0;
    if (exchange && cmd.args.size() == 4 && cmd.args[2].buffer >= 0 &&
        pending(size_t(cmd.args[2].buffer)) &&
        bound[cmd.args[2].buffer].numel < 0)
      deferred = cmd.args[2].buffer;
    auto commandStarted = std::chrono::steady_clock::now();
    args.clear();
    for (const format::Operand &o : cmd.args) {
      if (o.buffer == format::Operand::kTokens) {
        BufferRef t;
        t.isTokens = true;
        t.numel = tokens;
        args.push_back(t);
        continue;
      }
      if (o.buffer != deferred && pending(size_t(o.buffer)))
        allocate(size_t(o.buffer));
      args.push_back(bound[o.buffer]);
    }
    execution.allocateReceived = nullptr;
    if (deferred >= 0)
      execution.allocateReceived = [&, deferred](int64_t rows) -> void * {
        received = rows;
        allocate(size_t(deferred));
        return bound[deferred].data;
      };
    execution.received = received;
    execution.undoesLastExchange = lastExchangeOut >= 0 &&
                                   cmd.args.size() == 4 &&
                                   cmd.args[1].buffer == lastExchangeOut;
    backend.run(module.module(), cmd, args, tokens, execution);
    execution.undoesLastExchange = false;
    if (deferred >= 0 && !allocated[deferred])
      throw Error(where + ": " + cmd.target + " did not allocate " +
                  buffers[deferred].name);
    // A forward exchange tells R (the backward's must agree with the saved
    // values).
    if (exchange && execution.exchangedRows >= 0 && !boolAttr(cmd, "reverse")) {
      if (received < 0)
        received = execution.exchangedRows;
      else if (received != execution.exchangedRows)
        throw Error(where + ": the exchange received " +
                    std::to_string(execution.exchangedRows) +
                    " rows, the saved values have " + std::to_string(received));
    }
    if (execution.exchangedRows >= 0 && cmd.args.size() == 4 &&
        cmd.args[3].buffer != format::Operand::kTokens) {
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
    if (timing)
      timing->add(program.name, cmd.target, HostTiming::since(commandStarted));
  }
  for (size_t i = 0; i < bound.size(); ++i)
    if (lazyOutput[i] >= 0)
      allocate(i);
}

} // namespace fmoe::runtime
