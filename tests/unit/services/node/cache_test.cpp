// Unit tests of the cache tier's failover decision (services/node/store: cache_promotion): who
// becomes the primary from the cluster's rows and the set of nodes whose reports are alive.
#include <CppUTest/TestHarness.h>

#include <set>

#include "stacknode/node/cache.hpp"

using namespace stacknode::node;

namespace {

CacheState cluster(std::optional<std::int64_t> primary, std::vector<std::pair<std::int64_t, std::int64_t>> offsets) {
  CacheState state;
  state.cluster.primary = primary;
  state.cluster.epoch = 4;
  for (const auto& [node, offset] : offsets) {
    state.nodes.push_back({node, node == primary ? "primary" : "replica", offset, 4, 0});
  }
  return state;
}

}  // namespace

TEST_GROUP(CachePromotion){};

TEST(CachePromotion, ALiveUpToDatePrimaryStays) {
  CHECK_FALSE(cache_promotion(cluster(1, {{1, 900}, {2, 880}, {3, 900}}), {1, 2, 3}).has_value());
}

TEST(CachePromotion, ALostPrimaryGoesToTheLiveReplicaHoldingTheMost) {
  const auto chosen = cache_promotion(cluster(1, {{1, 900}, {2, 880}, {3, 890}}), {2, 3});
  CHECK(chosen.has_value());
  LONGS_EQUAL(3, *chosen);
}

TEST(CachePromotion, TiesGoToTheLowestId) {
  const auto chosen = cache_promotion(cluster(1, {{1, 900}, {3, 890}, {2, 890}}), {2, 3});
  LONGS_EQUAL(2, *chosen);
}

TEST(CachePromotion, ALivePrimaryStaysEvenWhenAReplicaReportedMoreSinceItsLastReport) {
  CHECK_FALSE(cache_promotion(cluster(1, {{1, 900}, {2, 914}, {3, 914}}), {1, 2, 3}).has_value());
}

TEST(CachePromotion, TheFirstPrimaryIsTheLowestLiveIdWhenAllAreEmpty) {
  const auto chosen = cache_promotion(cluster(std::nullopt, {{3, 0}, {2, 0}, {5, 0}}), {2, 3, 5});
  LONGS_EQUAL(2, *chosen);
}

TEST(CachePromotion, NobodyAliveMeansNoChange) {
  CHECK_FALSE(cache_promotion(cluster(1, {{1, 900}, {2, 880}}), {}).has_value());
  CHECK_FALSE(cache_promotion(cluster(std::nullopt, {}), {}).has_value());
}

TEST(CachePromotion, NodesNotAliveAreNeverChosenWhateverTheyHold) {
  const auto chosen = cache_promotion(cluster(1, {{1, 900}, {2, 9999}, {3, 10}}), {3});
  LONGS_EQUAL(3, *chosen);
}
