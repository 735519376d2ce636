//===- PlacementTest.cpp - expert placement strategies --------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Support/Placement.h"

#include <gtest/gtest.h>

using namespace fmoe;

namespace {

std::vector<int64_t> place(int64_t e, int64_t w, PlacementStrategy s,
                           std::vector<double> load = {}) {
  std::string error;
  auto r = placeExperts(e, w, s, load, error);
  EXPECT_TRUE(error.empty()) << error;
  return r;
}

TEST(Placement, ParsesStrategyNames) {
  EXPECT_EQ(parsePlacementStrategy("contiguous"),
            PlacementStrategy::Contiguous);
  EXPECT_EQ(parsePlacementStrategy("round-robin"),
            PlacementStrategy::RoundRobin);
  EXPECT_EQ(parsePlacementStrategy("balanced"), PlacementStrategy::Balanced);
  EXPECT_FALSE(parsePlacementStrategy("random").has_value());
}

TEST(Placement, ContiguousIsFastMoEs) {
  // Global expert e lives on rank e / num_expert.
  EXPECT_EQ(place(8, 4, PlacementStrategy::Contiguous),
            (std::vector<int64_t>{0, 0, 1, 1, 2, 2, 3, 3}));
  EXPECT_EQ(place(3, 1, PlacementStrategy::Contiguous),
            (std::vector<int64_t>{0, 0, 0}));
}

TEST(Placement, RoundRobin) {
  EXPECT_EQ(place(8, 4, PlacementStrategy::RoundRobin),
            (std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 3}));
}

TEST(Placement, BalancedSpreadsTheHeavyExperts) {
  // The two heaviest experts must not share a rank, and every rank holds
  // exactly two experts.
  auto r = place(4, 2, PlacementStrategy::Balanced, {1, 2, 3, 10});
  EXPECT_EQ(r, (std::vector<int64_t>{0, 1, 1, 0}));
  auto skew =
      place(8, 4, PlacementStrategy::Balanced, {100, 90, 1, 1, 1, 1, 80, 70});
  std::vector<double> rankLoad(4, 0);
  std::vector<int> held(4, 0);
  std::vector<double> load{100, 90, 1, 1, 1, 1, 80, 70};
  for (int e = 0; e < 8; ++e) {
    rankLoad[skew[e]] += load[e];
    ++held[skew[e]];
  }
  for (int r = 0; r < 4; ++r) {
    EXPECT_EQ(held[r], 2);
    EXPECT_LE(rankLoad[r], 101);
  }
}

TEST(Placement, BalancedIsDeterministicOnTies) {
  auto a = place(6, 3, PlacementStrategy::Balanced, {1, 1, 1, 1, 1, 1});
  auto b = place(6, 3, PlacementStrategy::Balanced, {1, 1, 1, 1, 1, 1});
  EXPECT_EQ(a, b);
}

TEST(Placement, RejectsBadInput) {
  std::string error;
  EXPECT_TRUE(
      placeExperts(6, 4, PlacementStrategy::Contiguous, {}, error).empty());
  EXPECT_NE(error.find("multiple of world_size"), std::string::npos);
  error.clear();
  EXPECT_TRUE(
      placeExperts(4, 2, PlacementStrategy::Balanced, {1, 2}, error).empty());
  EXPECT_NE(error.find("load figure for each of the 4 experts"),
            std::string::npos);
}

TEST(Placement, GroupOrderIsRankMajor) {
  EXPECT_EQ(expertGroupOrder({0, 1, 0, 1}, 2),
            (std::vector<int64_t>{0, 2, 1, 3}));
  EXPECT_EQ(expertGroupOrder({1, 0, 0, 1}, 2),
            (std::vector<int64_t>{1, 2, 0, 3}));
}

TEST(Placement, LoadProfileParsing) {
  std::vector<double> load;
  std::string error;
  EXPECT_TRUE(parseLoadProfile("1 2.5\n3\t4", 4, load, error));
  EXPECT_EQ(load, (std::vector<double>{1, 2.5, 3, 4}));
  EXPECT_FALSE(parseLoadProfile("1 2 x 4", 4, load, error));
  EXPECT_NE(error.find("'x'"), std::string::npos);
  EXPECT_FALSE(parseLoadProfile("1 -2 3 4", 4, load, error));
  EXPECT_FALSE(parseLoadProfile("1 2 3", 4, load, error));
  EXPECT_NE(error.find("3 entries"), std::string::npos);
}

TEST(Placement, ShadowedExpertsComeLastInTheGroupOrder) {
  // Contiguous over 2 ranks, expert 1 (rank 0) and expert 2 (rank 1)
  // shadowed: each rank block loses its shadowed expert.
  std::vector<int64_t> rankOf{0, 0, 1, 1};
  EXPECT_EQ(expertGroupOrder(rankOf, 2, {2, 1}),
            (std::vector<int64_t>{0, 3, 2, 1}));
  EXPECT_EQ(expertGroupOrder(rankOf, 2), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(localSlots({1, 0, 1, 0}, 2), (std::vector<int64_t>{0, 0, 1, 1}));
}

TEST(Placement, HottestExperts) {
  std::string error;
  EXPECT_EQ(hottestExperts({1, 5, 5, 2}, 2, error),
            (std::vector<int64_t>{1, 2})); // ties: lower id first
  EXPECT_TRUE(hottestExperts({1, 5, 5, 2}, 0, error).empty());
  EXPECT_TRUE(error.empty());
  EXPECT_TRUE(hottestExperts({1, 5}, 2, error).empty());
  EXPECT_NE(error.find("cannot shadow 2 of 2 experts"), std::string::npos);
}

TEST(Placement, ParsesExpertLists) {
  std::vector<int64_t> experts;
  std::string error;
  EXPECT_TRUE(parseExpertList("3,0", 4, experts, error));
  EXPECT_EQ(experts, (std::vector<int64_t>{3, 0}));
  EXPECT_TRUE(parseExpertList("", 4, experts, error));
  EXPECT_TRUE(experts.empty());
  for (const char *bad : {"4", "-1", "1,,2", "x", "1,1", "0,1,2,3"})
    EXPECT_FALSE(parseExpertList(bad, 4, experts, error)) << bad;
  EXPECT_NE(error.find("cannot shadow all 4 experts"), std::string::npos);
}

} // namespace
