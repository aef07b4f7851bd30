// The voter/standby balance; see membership.hpp.
#include "stacknode/node/membership.hpp"

#include <algorithm>

namespace stacknode::node {
namespace {

using db::wire::Role;

// The lowest-id member matching `wanted`, in id order.
template <typename Predicate>
const Member* first(const std::vector<Member>& members, Predicate wanted) {
  const Member* found = nullptr;
  for (const Member& member : members) {
    if (wanted(member) && (found == nullptr || member.id < found->id)) found = &member;
  }
  return found;
}

}  // namespace

std::string_view role_name(Role role) {
  switch (role) {
    case Role::voter: return "voter";
    case Role::standby: return "standby";
    case Role::spare: break;
  }
  return "spare";
}

std::size_t desired_voters(std::size_t members) {
  if (members >= nodes_for_large) return voters_large;
  if (members >= nodes_for_medium) return voters_medium;
  return voters_small;
}

std::optional<RoleChange> next_role_change(const std::vector<Member>& members) {
  const std::size_t desired = desired_voters(members.size());
  const auto count = [&](auto wanted) {
    return static_cast<std::size_t>(std::count_if(members.begin(), members.end(), wanted));
  };
  const std::size_t voters = count([](const Member& m) { return m.role == Role::voter; });
  const std::size_t online_voters = count([](const Member& m) { return m.role == Role::voter && m.online; });

  if (online_voters < desired) {
    const Member* candidate = first(members, [](const Member& m) { return m.online && m.role == Role::standby; });
    if (candidate == nullptr) candidate = first(members, [](const Member& m) { return m.online && m.role == Role::spare; });
    if (candidate != nullptr) return RoleChange{candidate->id, Role::voter};
  } else {
    if (const Member* lost = first(members, [](const Member& m) { return m.role == Role::voter && !m.online; })) {
      return RoleChange{lost->id, Role::spare};
    }
    if (voters > desired) {  // all voters are online here; the leader keeps its vote
      const Member* extra = nullptr;
      for (const Member& member : members) {
        if (member.role == Role::voter && !member.leader && (extra == nullptr || member.id > extra->id)) extra = &member;
      }
      if (extra != nullptr) return RoleChange{extra->id, Role::standby};
    }
  }
  if (const Member* spare = first(members, [](const Member& m) { return m.online && m.role == Role::spare; })) {
    return RoleChange{spare->id, Role::standby};
  }
  return std::nullopt;
}

}  // namespace stacknode::node
