// Unit tests of the voter/standby balance (services/node/store membership.hpp): how many voters a
// cluster keeps at each size, and which single role change next_role_change() picks. Every case is
// built so that a rule applied out of order, or a tie broken another way, gives another answer;
// the answer is compared as text ("2 -> voter", "none") so a failure shows what was picked.
#include <CppUTest/TestHarness.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "stacknode/node/membership.hpp"

using namespace stacknode::node;
using stacknode::db::wire::Role;

namespace {

// The longest a convergence may take: one change per member and role, far more than needed.
constexpr int max_convergence_rounds = 32;

Member voter(std::uint64_t id, bool online = true, bool leader = false) {
  return {id, Role::voter, online, leader};
}
Member leader(std::uint64_t id) {
  return {id, Role::voter, true, true};
}
Member standby(std::uint64_t id, bool online = true) {
  return {id, Role::standby, online, false};
}
Member spare(std::uint64_t id, bool online = true) {
  return {id, Role::spare, online, false};
}

const char* role_text(Role role) {
  switch (role) {
    case Role::voter:
      return "voter";
    case Role::standby:
      return "standby";
    case Role::spare:
      return "spare";
  }
  return "?";
}

std::string describe(const std::optional<RoleChange>& change) {
  if (!change) return "none";
  return std::to_string(change->id) + " -> " + role_text(change->role);
}

std::string next(const std::vector<Member>& members) {
  return describe(next_role_change(members));
}

// Applies next_role_change until it has nothing to do; the changes made, in order.
std::vector<std::string> converge(std::vector<Member>& members) {
  std::vector<std::string> applied;
  for (int round = 0; round < max_convergence_rounds; ++round) {
    const std::optional<RoleChange> change = next_role_change(members);
    if (!change) return applied;
    applied.push_back(describe(change));
    for (Member& member : members) {
      if (member.id == change->id) member.role = change->role;
    }
  }
  FAIL("next_role_change did not settle");
  return applied;
}

std::size_t count_role(const std::vector<Member>& members, Role role) {
  return static_cast<std::size_t>(
      std::count_if(members.begin(), members.end(),
                    [role](const Member& member) { return member.role == role; }));
}

// The same answer for every order of `members` (ties are by id, not by position).
void check_every_order(std::vector<Member> members, const std::string& expected) {
  std::sort(members.begin(), members.end(),
            [](const Member& a, const Member& b) { return a.id < b.id; });
  int orders = 0;
  do {
    STRCMP_EQUAL(expected.c_str(), next(members).c_str());
    ++orders;
  } while (std::next_permutation(members.begin(), members.end(),
                                 [](const Member& a, const Member& b) { return a.id < b.id; }));
  CHECK(orders > 1);
}

}  // namespace

TEST_GROUP(DesiredVoters){};

TEST(DesiredVoters, OneBelowThreeThreeFromThreeFiveFromFive) {
  CHECK_EQUAL(1u, desired_voters(1));
  CHECK_EQUAL(1u, desired_voters(2));
  CHECK_EQUAL(3u, desired_voters(3));
  CHECK_EQUAL(3u, desired_voters(4));
  CHECK_EQUAL(5u, desired_voters(5));
  CHECK_EQUAL(5u, desired_voters(7));
}

TEST_GROUP(NextRoleChange){};

// Rule 1: a 3-node cluster wants 3 voters; the lowest-id online standby is promoted, whatever
// the order the members are listed in.
TEST(NextRoleChange, TooFewVotersPromotesTheLowestIdStandby) {
  STRCMP_EQUAL("2 -> voter", next({leader(1), standby(3), standby(2)}).c_str());
  STRCMP_EQUAL("2 -> voter", next({standby(2), leader(1), standby(3)}).c_str());
  // An offline standby is no candidate.
  STRCMP_EQUAL("3 -> voter", next({leader(1), standby(2, false), standby(3)}).c_str());
}

// Rule 1 prefers a standby (it holds a full copy) over a spare of lower id, and takes an online
// spare only when no online standby exists.
TEST(NextRoleChange, AStandbyIsPromotedBeforeASpareAndASpareWhenNoStandbyIsOnline) {
  STRCMP_EQUAL("3 -> voter", next({leader(1), spare(2), standby(3)}).c_str());
  STRCMP_EQUAL("2 -> voter", next({leader(1), spare(3), spare(2), standby(4, false)}).c_str());
}

TEST(NextRoleChange, EnoughOnlineVotersChangesNothing) {
  STRCMP_EQUAL("none", next({leader(1)}).c_str());
  STRCMP_EQUAL("none", next({leader(1), standby(2)}).c_str());  // 2 nodes: 1 voter
  STRCMP_EQUAL("none", next({leader(1), voter(2), voter(3)}).c_str());
  STRCMP_EQUAL("none",
               next({voter(1), leader(2), voter(3), standby(4)}).c_str());  // 4 nodes: 3 voters
  STRCMP_EQUAL(
      "none",
      next({leader(1), voter(2), voter(3), voter(4), voter(5), standby(6), standby(7)}).c_str());
}

// Rule 2: enough voters are online without the lost one, so it is demoted to spare. The lost
// voter is the lowest non-leader id here, so rule 3 (highest id, to standby) would pick another.
TEST(NextRoleChange, AnOfflineVoterWithEnoughOnlineVotersIsDemotedToSpare) {
  STRCMP_EQUAL("2 -> spare", next({leader(1), voter(2, false), voter(3), voter(4)}).c_str());
}

// Rule 1 before rule 2: with a voter lost and too few online, an online standby is promoted first;
// the lost voter is demoted only in the next round, once enough voters are online again.
TEST(NextRoleChange, AnOnlineStandbyIsPromotedBeforeALostVoterIsDemoted) {
  std::vector<Member> members{leader(1), voter(2, false), voter(3), standby(4)};
  STRCMP_EQUAL("4 -> voter", next(members).c_str());
  const std::vector<std::string> applied = converge(members);
  CHECK_EQUAL(2u, applied.size());
  STRCMP_EQUAL("4 -> voter", applied.at(0).c_str());
  STRCMP_EQUAL("2 -> spare", applied.at(1).c_str());
}

// Rule 3: 4 voters in a 4-node cluster is one too many; the highest-id voter that does not lead
// becomes a standby (not a spare: it keeps its copy).
TEST(NextRoleChange, TooManyVotersDemotesTheHighestIdNonLeaderToStandby) {
  STRCMP_EQUAL("4 -> standby", next({leader(1), voter(2), voter(3), voter(4)}).c_str());
  STRCMP_EQUAL("3 -> standby", next({voter(1), voter(2), voter(3), leader(4)}).c_str());
  STRCMP_EQUAL("2 -> standby", next({leader(1), voter(2)}).c_str());  // 2 nodes want 1 voter
  STRCMP_EQUAL("1 -> standby", next({voter(1), leader(2)}).c_str());
}

// Rule 4: an online spare becomes a standby once the voters are right; an offline one stays.
TEST(NextRoleChange, AnOnlineSpareBecomesAStandby) {
  STRCMP_EQUAL("4 -> standby", next({leader(1), voter(2), voter(3), spare(4)}).c_str());
  STRCMP_EQUAL("2 -> standby", next({leader(1), spare(2)}).c_str());
  STRCMP_EQUAL("none", next({leader(1), voter(2), voter(3), spare(4, false)}).c_str());
}

// Demoting a lost voter only helps when the others suffice: with too few online voters and nobody
// to promote, nothing changes (the offline voter keeps its vote until it returns or is replaced).
TEST(NextRoleChange, ALostVoterIsNotDemotedWhenNothingCanReplaceIt) {
  STRCMP_EQUAL("none", next({leader(1), voter(2), voter(3, false)}).c_str());
  STRCMP_EQUAL(
      "none",
      next({leader(1), voter(2), voter(3, false), standby(4, false), spare(5, false)}).c_str());
}

TEST(NextRoleChange, TiesGoToTheLowestIdWhateverTheOrder) {
  check_every_order({leader(1), standby(2), standby(3), standby(4)},
                    "2 -> voter");                                             // rule 1, standby
  check_every_order({leader(1), spare(5), spare(3), spare(4)}, "3 -> voter");  // rule 1, spare
  check_every_order({leader(1), voter(2), voter(3), voter(4, false), voter(5, false), voter(6)},
                    "none");  // no candidate
  // 7 nodes want 5 voters: with 5 online, the lost ones go (rule 2), then spares become standbys.
  check_every_order(
      {leader(1), voter(2), voter(3), voter(4), voter(5), voter(7, false), voter(6, false)},
      "6 -> spare");
  check_every_order({leader(1), voter(2), voter(3), voter(4), voter(5), spare(7), spare(6)},
                    "6 -> standby");
  check_every_order({voter(1), voter(2), leader(4), voter(3)}, "3 -> standby");  // rule 3, highest
}

// From one voter and four online spares, rounds of one change reach five voters and stop.
TEST(NextRoleChange, AGrowingClusterSettlesAtFiveVoters) {
  std::vector<Member> members{leader(1), spare(2), spare(3), spare(4), spare(5)};
  const std::vector<std::string> applied = converge(members);
  CHECK_EQUAL(4u, applied.size());
  STRCMP_EQUAL("2 -> voter", applied.at(0).c_str());
  CHECK_EQUAL(5u, count_role(members, Role::voter));
}
