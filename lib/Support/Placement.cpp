//===- Placement.cpp - expert placement strategies ------------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Support/Placement.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

namespace fmoe {

std::optional<PlacementStrategy> parsePlacementStrategy(std::string_view name) {
  if (name == "contiguous")
    return PlacementStrategy::Contiguous;
  if (name == "round-robin")
    return PlacementStrategy::RoundRobin;
  if (name == "balanced")
    return PlacementStrategy::Balanced;
  return std::nullopt;
}

std::vector<int64_t> placeExperts(int64_t numExperts, int64_t worldSize,
                                  PlacementStrategy strategy,
                                  const std::vector<double> &load,
                                  std::string &error) {
  if (numExperts < 1 || worldSize < 1 || numExperts % worldSize != 0) {
    error = "expects num_experts (" + std::to_string(numExperts) +
            ") to be a positive multiple of world_size (" +
            std::to_string(worldSize) + ")";
    return {};
  }
  int64_t local = numExperts / worldSize;
  std::vector<int64_t> rankOf(numExperts);
  switch (strategy) {
  case PlacementStrategy::Contiguous:
    for (int64_t e = 0; e < numExperts; ++e)
      rankOf[e] = e / local;
    return rankOf;
  case PlacementStrategy::RoundRobin:
    for (int64_t e = 0; e < numExperts; ++e)
      rankOf[e] = e % worldSize;
    return rankOf;
  case PlacementStrategy::Balanced:
    break;
  }
  if (static_cast<int64_t>(load.size()) != numExperts) {
    error = "balanced placement needs a load figure for each of the " +
            std::to_string(numExperts) + " experts, got " +
            std::to_string(load.size());
    return {};
  }
  // Longest-processing-time first, with every rank holding exactly `local`
  // experts: heaviest expert onto the least-loaded rank that has room; ties
  // go to the lower expert id and the lower rank, so every rank computes the
  // same placement from the same profile.
  std::vector<int64_t> byLoad(numExperts);
  std::iota(byLoad.begin(), byLoad.end(), 0);
  std::stable_sort(byLoad.begin(), byLoad.end(),
                   [&](int64_t a, int64_t b) { return load[a] > load[b]; });
  std::vector<double> rankLoad(worldSize, 0.0);
  std::vector<int64_t> held(worldSize, 0);
  for (int64_t e : byLoad) {
    int64_t best = -1;
    for (int64_t r = 0; r < worldSize; ++r)
      if (held[r] < local && (best < 0 || rankLoad[r] < rankLoad[best]))
        best = r;
    rankOf[e] = best;
    rankLoad[best] += load[e];
    ++held[best];
  }
  return rankOf;
}

std::vector<int64_t> expertGroupOrder(const std::vector<int64_t> &rankOf,
                                      int64_t worldSize,
                                      const std::vector<int64_t> &shadow) {
  std::vector<int64_t> order;
  order.reserve(rankOf.size());
  auto shadowed = [&](int64_t e) {
    return std::find(shadow.begin(), shadow.end(), e) != shadow.end();
  };
  for (int64_t r = 0; r < worldSize; ++r)
    for (int64_t e = 0; e < static_cast<int64_t>(rankOf.size()); ++e)
      if (rankOf[e] == r && !shadowed(e))
        order.push_back(e);
  order.insert(order.end(), shadow.begin(), shadow.end());
  return order;
}

std::vector<int64_t> localSlots(const std::vector<int64_t> &rankOf,
                                int64_t worldSize) {
  std::vector<int64_t> slot(rankOf.size()), held(worldSize, 0);
  for (size_t e = 0; e < rankOf.size(); ++e)
    slot[e] = held[rankOf[e]]++;
  return slot;
}

std::vector<int64_t> hottestExperts(const std::vector<double> &load,
                                    int64_t count, std::string &error) {
  int64_t n = static_cast<int64_t>(load.size());
  if (count < 0 || count >= n) {
    error = "cannot shadow " + std::to_string(count) + " of " +
            std::to_string(n) + " experts (expected 0 to " +
            std::to_string(n - 1) + ")";
    return {};
  }
  std::vector<int64_t> byLoad(n);
  std::iota(byLoad.begin(), byLoad.end(), 0);
  std::stable_sort(byLoad.begin(), byLoad.end(),
                   [&](int64_t a, int64_t b) { return load[a] > load[b]; });
  byLoad.resize(count);
  return byLoad;
}

bool parseExpertList(std::string_view text, int64_t numExperts,
                     std::vector<int64_t> &experts, std::string &error) {
  experts.clear();
  std::string item;
  std::istringstream in{std::string(text)};
  while (std::getline(in, item, ',')) {
    char *end = nullptr;
    long long e = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || end != item.c_str() + item.size() || e < 0 ||
        e >= numExperts) {
      error = "shadowed expert '" + item + "' is not an expert id in [0, " +
              std::to_string(numExperts) + ")";
      return false;
    }
    if (std::find(experts.begin(), experts.end(), e) != experts.end()) {
      error = "expert " + item + " is shadowed twice";
      return false;
    }
    experts.push_back(e);
  }
  if (static_cast<int64_t>(experts.size()) >= numExperts) {
    error = "cannot shadow all " + std::to_string(numExperts) +
            " experts: nothing would be expert-parallel";
    return false;
  }
  return true;
}

bool parseLoadProfile(std::string_view text, int64_t numExperts,
                      std::vector<double> &load, std::string &error) {
  load.clear();
  std::istringstream in{std::string(text)};
  std::string word;
  while (in >> word) {
    char *end = nullptr;
    double v = std::strtod(word.c_str(), &end);
    if (end != word.c_str() + word.size() || !std::isfinite(v) || v < 0) {
      error = "load profile entry " + std::to_string(load.size()) + " ('" +
              word + "') is not a non-negative number";
      return false;
    }
    load.push_back(v);
  }
  if (static_cast<int64_t>(load.size()) != numExperts) {
    error = "load profile has " + std::to_string(load.size()) +
            " entries, expected one per expert (" + std::to_string(numExperts) +
            ")";
    return false;
  }
  return true;
}

} // namespace fmoe
