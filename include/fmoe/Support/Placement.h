//===- Placement.h - expert placement strategies ----------------*- C++ -*-===//
//
// Part of fmoe. Plain C++ (no MLIR): used by the placement pass, the Python
// package and the runtime alike.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_SUPPORT_PLACEMENT_H
#define FMOE_SUPPORT_PLACEMENT_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fmoe {

enum class PlacementStrategy { Contiguous, RoundRobin, Balanced };

/// "contiguous", "round-robin" or "balanced".
std::optional<PlacementStrategy> parsePlacementStrategy(std::string_view name);

/// Rank of every expert. Every rank holds numExperts / worldSize experts.
/// `load` (one figure per expert) is used by Balanced only. On failure
/// returns an empty vector and sets `error`.
std::vector<int64_t> placeExperts(int64_t numExperts, int64_t worldSize,
                                  PlacementStrategy strategy,
                                  const std::vector<double> &load,
                                  std::string &error);

/// The experts in the order their rows are laid out for the exchange: rank
/// by rank, each rank's experts by ascending id (which is also their local
/// weight slot on that rank). Shadowed experts (replicated on every rank)
/// are left out of their owner's block and come last, in `shadow`'s order:
/// their rows stay on the rank that routed them.
std::vector<int64_t> expertGroupOrder(const std::vector<int64_t> &rankOf,
                                      int64_t worldSize,
                                      const std::vector<int64_t> &shadow = {});

/// The local weight slot of every expert on its rank (its rank in ascending
/// id among the experts of that rank).
std::vector<int64_t> localSlots(const std::vector<int64_t> &rankOf,
                                int64_t worldSize);

/// The `count` experts with the largest load, heaviest first (ties: lower
/// id first). Empty with `error` set when count is out of [0, experts).
std::vector<int64_t> hottestExperts(const std::vector<double> &load,
                                    int64_t count, std::string &error);

/// Parses a comma-separated list of distinct expert ids in [0, numExperts)
/// ("" is the empty list). Shadowing every expert is refused: then nothing
/// would be expert-parallel.
bool parseExpertList(std::string_view text, int64_t numExperts,
                     std::vector<int64_t> &experts, std::string &error);

/// Parses whitespace-separated non-negative numbers, one per expert.
bool parseLoadProfile(std::string_view text, int64_t numExperts,
                      std::vector<double> &load, std::string &error);

} // namespace fmoe

#endif // FMOE_SUPPORT_PLACEMENT_H
