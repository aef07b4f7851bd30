// Group commit for stacknode-db's single-statement writes: statements that arrive while another
// batch is being committed wait in one queue, and the next lot for one database runs as ONE
// transaction, each statement inside its own SAVEPOINT, so that they share one Raft round (one
// COMMIT) and each stays atomic on its own: a statement that fails is rolled back to its
// savepoint and answered with its error, the others commit.
//
// There is no writer thread: a caller that finds no commit in progress becomes the committer,
// runs one batch (which may or may not hold its own statement) and hands the role on. A lone
// writer so runs its statement on its own thread, with no hand-over between threads.
//
// Invariants:
//  1. A statement is answered only after the COMMIT that holds it succeeded (or with its own
//     error after ROLLBACK TO its savepoint succeeded): nothing is acknowledged that could be
//     undone.
//  2. When a batch breaks before COMMIT (BEGIN, a SAVEPOINT, a RELEASE or a ROLLBACK TO fails,
//     the connection fails, or a statement meets SQLITE_BUSY: another client's write lock), nothing of it was applied (an uncommitted transaction is rolled back
//     by the leader when the connection ends; the lease is discarded, never pooled), so its
//     statements are run again one by one (run_alone) without risk of doubling.
//  3. When the COMMIT itself fails with an outcome that is not certain (leadership lost,
//     connection lost, timeout), every statement of the batch gets that error: may or may not
//     be applied, as for a single write (client.hpp, retry rule 2).
//  4. Only statements that are safe inside a transaction and a savepoint are batched
//     (batchable()); the rest run alone, in arrival order with the batches.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api.hpp"
#include "stacknode/db/client.hpp"

namespace stacknode::db {

// Statements per batch at most: one Raft round carries their WAL frames together; more makes a
// failed batch costlier to replay one by one (invariant 2) for little gain in throughput.
inline constexpr std::size_t max_group_commit_batch = 64;

class GroupCommit {
 public:
  explicit GroupCommit(Client& client, std::size_t max_batch = max_group_commit_batch);
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Runs one statement as its own atomic write, batched with others. Blocks until answered.
  Outcome<wire::Result> exec(const std::string& database, const api::Statement& statement);

  // INSERT, UPDATE, DELETE, REPLACE, CREATE, DROP or ALTER with no ';' but trailing ones: a
  // statement that cannot end or nest the batch's transaction (invariant 4).
  static bool batchable(std::string_view sql);

  struct Stats {
    std::uint64_t statements = 0;  // batched statements answered
    std::uint64_t batches = 0;     // COMMITs (of batches of 2 or more) that succeeded
    std::uint64_t replayed = 0;    // statements run again alone after a broken batch
  };
  Stats stats() const;

 private:
  struct Job {
    const std::string* database;
    const api::Statement* statement;
    std::optional<Outcome<wire::Result>> answer;  // set under mutex_, by the committer
  };
  using Results = std::vector<Outcome<wire::Result>>;
  // Under mutex_: the oldest job and every later one for the same database, up to max_batch_.
  std::vector<Job*> take_batch();
  // Without mutex_: one answer per job, in order.
  Results run_batch(const std::vector<Job*>& batch);
  Results run_alone(const std::vector<Job*>& jobs);

  Client& client_;
  const std::size_t max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable answered_;  // a batch was answered and the committer role is free
  std::deque<Job*> queue_;
  bool committing_ = false;
  Stats stats_;
};

}  // namespace stacknode::db
