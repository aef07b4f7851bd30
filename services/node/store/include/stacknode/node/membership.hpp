// How many dqlite voters a cluster keeps and which role change comes next, as a pure function of
// who is a member, in which role, and who is online: 1 voter below 3 nodes, 3 voters from 3 nodes,
// 5 from 5 (issue 5), the rest standby (a standby keeps a full copy and can be promoted within one
// catch-up). The reconciler on the node whose stacknode-db leads asks for one change per round
// and applies it, so a lost voter is replaced by an online standby within a few rounds.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "stacknode/db/wire.hpp"

namespace stacknode::node {

inline constexpr std::size_t voters_small = 1;      // under 3 nodes a second voter adds no safety
inline constexpr std::size_t voters_medium = 3;     // from nodes_for_medium nodes
inline constexpr std::size_t voters_large = 5;      // from nodes_for_large nodes
inline constexpr std::size_t nodes_for_medium = 3;
inline constexpr std::size_t nodes_for_large = 5;

struct Member {
  db::wire::NodeId id = 0;
  db::wire::Role role = db::wire::Role::spare;
  bool online = false;
  bool leader = false;
};

struct RoleChange {
  db::wire::NodeId id = 0;
  db::wire::Role role = db::wire::Role::spare;
  friend bool operator==(const RoleChange&, const RoleChange&) = default;
};

std::size_t desired_voters(std::size_t members);
// "voter", "standby", "spare": as the API and the audit log name roles.
std::string_view role_name(db::wire::Role role);

// The one change that brings `members` closest to the target, or nothing when it is met:
//  1. fewer online voters than desired: promote an online standby (else an online spare);
//  2. otherwise, a voter offline: demote it to spare (enough online voters remain);
//  3. otherwise, more voters than desired (the cluster shrank): demote the highest-id voter that
//     is not the leader to standby;
//  4. an online spare: make it a standby.
// Ties go to the lowest id, so every node computing this agrees.
std::optional<RoleChange> next_role_change(const std::vector<Member>& members);

}  // namespace stacknode::node
