//===- Runtime.h - load and execute compiled fmoe modules -------*- C++ -*-===//
//
// Part of fmoe. No MLIR and no PyTorch here: the runtime loads the module file
// written by fmoe-compile (fmoe/Support/ModuleFormat.h), checks it, and runs
// its programs on a Backend (CPU reference kernels, or CUDA).
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_RUNTIME_RUNTIME_H
#define FMOE_RUNTIME_RUNTIME_H

#include "fmoe/Support/ModuleFormat.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fmoe::runtime {

/// Every runtime failure: a bad module, a bad argument, a failed CUDA call.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

enum class DType { F32, BF16, F16, I32 };
DType parseDType(std::string_view name);
std::string_view dtypeName(DType t);
size_t dtypeSize(DType t);

/// A flat buffer the runtime reads or writes (owned by the caller or by the
/// executor).
struct BufferRef {
  void *data = nullptr;
  int64_t numel = 0;
  DType dtype = DType::F32;
  int64_t rows = 0; ///< rows x cols = numel, from the module's description
  int64_t cols = 1;
  /// This argument is the token count T (`numel` holds it), not a buffer.
  bool isTokens = false;
};

/// A loaded and validated compiled module.
class CompiledModule {
public:
  /// Reads and validates `path`; throws Error with the reason otherwise.
  static std::shared_ptr<CompiledModule> load(const std::string &path);
  /// Validates the bytes of a module; `origin` names it in errors.
  static std::shared_ptr<CompiledModule> fromBytes(std::string_view bytes,
                                                   const std::string &origin);

  const format::Module &module() const { return mod; }
  const std::string &origin() const { return name; }
  /// The program of that kind ("forward" or "backward"); throws if absent.
  const format::Program &program(std::string_view kind) const;
  bool hasProgram(std::string_view kind) const;
  /// A configuration value of the (single) layer, e.g. "num_experts".
  std::string config(std::string_view key) const;
  int64_t configInt(std::string_view key) const;

private:
  format::Module mod;
  std::string name;
};

/// The ranks of an expert-parallel group, as the runtime's exchanges see
/// them. The PyTorch extension implements it over a torch.distributed
/// process group.
class Communicator {
public:
  virtual ~Communicator();
  virtual int64_t rank() const = 0;
  virtual int64_t size() const = 0;
  /// All-to-all with variable sizes: sendBytes[r] bytes of `send` (in rank
  /// order) go to rank r; recvBytes[r] bytes from rank r land in `recv` (in
  /// rank order). Blocks until done.
  virtual void allToAll(const void *send, const std::vector<int64_t> &sendBytes,
                        void *recv, const std::vector<int64_t> &recvBytes) = 0;
  /// `bytes` bytes at `data` on rank `root` are copied to `data` on every
  /// rank. Blocks until done.
  virtual void broadcast(void *data, int64_t bytes, int64_t root) = 0;
  /// The sum over the ranks of `count` elements of `type` at `data` lands
  /// in `data` on rank `root`; the other ranks' `data` may be overwritten.
  /// Blocks until done.
  virtual void reduceSum(void *data, int64_t count, DType type,
                         int64_t root) = 0;
};

/// What the commands of one execute() call share (one per call, so that
/// several threads may run programs on one backend).
struct Execution {
  /// The group the program's exchanges run over (null when the layer is not
  /// distributed).
  Communicator *communicator = nullptr;
  /// R, the rows the program's exchange received (sizes of the expert side,
  /// and the grids of its kernels); -1 until known.
  int64_t received = -1;
  /// The rows the last all-to-all command received (known on the host, as
  /// the exchange needs the counts there); execute() takes it as R.
  int64_t exchangedRows = -1;
  /// What the last all-to-all learned on the host: its counts (indexed
  /// [peer * local + expert]) and the offsets it wrote. execute() sets
  /// undoesLastExchange when the next command's input offsets are that
  /// exchange's output offsets: an exchange undoing it (forward then
  /// reverse) knows its own counts from these, without a host
  /// synchronisation or a count exchange.
  struct ExchangeRecord {
    bool valid = false;
    bool reverse = false;
    std::vector<int32_t> sendCounts, recvCounts, outOffsets;
  } lastExchange;
  bool undoesLastExchange = false;
  /// Set while an exchange runs whose output is sized by the rows it
  /// receives (R): the exchange calls it with R once the counts are known,
  /// and gets the output's memory.
  std::function<void *(int64_t rows)> allocateReceived;
};

/// Where commands run. A backend owns its memory and its execution stream.
class Backend {
public:
  virtual ~Backend();
  virtual std::string_view name() const = 0;
  virtual void *allocate(size_t bytes) = 0;
  virtual void deallocate(void *ptr) = 0;
  /// Runs one command on buffers bound in the command's argument order.
  /// `tokens` is T.
  virtual void run(const format::Module &module, const format::Command &cmd,
                   const std::vector<BufferRef> &args, int64_t tokens,
                   Execution &execution) = 0;
};

/// Attributes of a command, as the module file spells them: the value of
/// `name` (null when absent); as an integer (Error when absent); as an
/// integer with a fallback; as a flag ("true", or a unit attribute).
const std::string *findAttr(const format::Command &cmd, std::string_view name);
int64_t intAttr(const format::Command &cmd, std::string_view name);
int64_t intAttrOr(const format::Command &cmd, std::string_view name,
                  int64_t fallback);
/// A comma-separated integer list ("0,1,1"); empty when absent.
std::vector<int64_t> intListAttr(const format::Command &cmd,
                                 std::string_view name);
bool boolAttr(const format::Command &cmd, std::string_view name);

/// The element count of buffer `b` for `tokens` tokens and `received` rows
/// received by the program's exchange (Error when the size needs them and
/// `received` is -1).
int64_t bufferNumel(const format::Buffer &b, int64_t tokens,
                    int64_t received = -1);

/// Provides the memory of output `index` (in the program's output order) for
/// `ref` (its dtype and size filled in) when the program first writes it.
using OutputAllocator = std::function<void *(size_t index, const BufferRef &)>;

/// Runs `program` with caller-owned inputs and outputs (in the program's
/// buffer order: inputs first, then outputs). Temporaries are allocated on
/// the backend at their first use and freed after their last. Outputs whose
/// data is null are obtained from `allocateOutput` at their first use (or at
/// the end, for one no command writes), so that they do not occupy memory
/// while earlier commands run; an output with as many rows as an exchange
/// receives must be passed so (its size is -1 or the exact one). Checks
/// every argument's dtype and size and throws Error naming the expected and
/// the actual.
void execute(const CompiledModule &module, const format::Program &program,
             Backend &backend, const std::vector<BufferRef> &inputs,
             const std::vector<BufferRef> &outputs, int64_t tokens,
             Communicator *communicator = nullptr,
             const OutputAllocator &allocateOutput = nullptr);

/// The CPU backend: a reference implementation of every command. GEMMs go
/// through `CpuGemm` (row-major, fp32 accumulate): C[m,n] (+)= A[m,k] B
/// where B is [k,n] (`transB` false) or [n,k] (`transB` true). The default
/// is a portable loop; the PyTorch extension installs an ATen one.
struct CpuGemm {
  using Fn =
      std::function<void(int64_t m, int64_t n, int64_t k, const float *a,
                         int64_t lda, const float *b, int64_t ldb, bool transB,
                         float *c, int64_t ldc, bool accumulate)>;
  static void set(Fn fn);
  static const Fn &get();
};
std::unique_ptr<Backend> createCpuBackend();

/// An optional provider of library commands for the CUDA backend (the
/// PyTorch extension installs one that runs bf16 grouped GEMMs through
/// torch's CUTLASS-based grouped GEMM). Called with the library function's
/// base name (no dtype suffix); returns false to let the backend's own
/// kernels run the command.
struct CudaLibraryHook {
  using Fn =
      std::function<bool(std::string_view function, const format::Command &cmd,
                         const std::vector<BufferRef> &args, void *stream)>;
  static void set(Fn fn);
  static const Fn &get();
};

/// An optional provider of device memory for the CUDA backend's temporaries
/// (the PyTorch extension installs torch's caching allocator: the runtime
/// then shares torch's cached memory, keeps it mapped across host
/// synchronisations, and follows torch's CUDA-graph memory pools). Without
/// one, the backend allocates stream-ordered (cuMemAllocAsync). A backend
/// keeps the provider it was created with.
struct CudaAllocatorHook {
  /// Memory of `bytes` bytes for use in the order of `stream`.
  using Allocate = std::function<void *(size_t bytes, void *stream)>;
  /// Returns memory from Allocate once the work queued so far on that
  /// stream is done with it.
  using Release = std::function<void(void *ptr)>;
  static void set(Allocate allocate, Release release);
  static const Allocate &allocate();
  static const Release &release();
};

/// The CUDA backend (PTX through the driver API, grouped GEMMs reading their
/// group sizes on the device) on `stream` (a CUstream; null = the legacy
/// default stream). Throws Error when this build has no CUDA support or no
/// GPU is present.
std::unique_ptr<Backend> createCudaBackend(int device, void *stream);
bool cudaBackendAvailable();

} // namespace fmoe::runtime

#endif // FMOE_RUNTIME_RUNTIME_H
