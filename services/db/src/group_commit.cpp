// Group commit of single-statement writes; see group_commit.hpp for the invariants.
#include "group_commit.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

namespace stacknode::db {
namespace {

// The first word of `sql`, upper-cased ("" if none).
std::string first_keyword(std::string_view sql) {
  std::size_t start = 0;
  while (start < sql.size() && std::isspace(static_cast<unsigned char>(sql[start]))) ++start;
  std::string word;
  for (std::size_t index = start; index < sql.size() && std::isalpha(static_cast<unsigned char>(sql[index])); ++index) {
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[index])));
  }
  return word;
}

}  // namespace

bool GroupCommit::batchable(std::string_view sql) {
  static constexpr std::string_view safe[] = {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"};
  const std::string keyword = first_keyword(sql);
  if (std::find(std::begin(safe), std::end(safe), keyword) == std::end(safe)) return false;
  return single_statement(sql);
}

GroupCommit::GroupCommit(Client& client, std::size_t max_batch)
    : client_(client), max_batch_(std::max<std::size_t>(max_batch, 1)) {}

GroupCommit::Stats GroupCommit::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

Outcome<wire::Result> GroupCommit::exec(const std::string& database, const api::Statement& statement) {
  if (!batchable(statement.sql)) return client_.exec(database, statement.sql, statement.parameters);
  Job job{&database, &statement, std::nullopt};
  std::unique_lock lock(mutex_);
  queue_.push_back(&job);
  while (!job.answer) {
    if (committing_) {
      answered_.wait(lock);
      continue;
    }
    committing_ = true;
    std::vector<Job*> batch = take_batch();
    lock.unlock();
    Results results = batch.size() == 1 ? run_alone(batch) : run_batch(batch);
    lock.lock();
    for (std::size_t index = 0; index < batch.size(); ++index) batch[index]->answer = std::move(results[index]);
    committing_ = false;
    answered_.notify_all();  // the answered ones return, one of the others takes the role
  }
  return std::move(*job.answer);
}

std::vector<GroupCommit::Job*> GroupCommit::take_batch() {
  std::vector<Job*> batch;
  const std::string& database = *queue_.front()->database;
  for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
    if (*(*it)->database == database) {
      batch.push_back(*it);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return batch;
}

GroupCommit::Results GroupCommit::run_alone(const std::vector<Job*>& jobs) {
  Results results;
  results.reserve(jobs.size());
  for (const Job* job : jobs) {
    results.push_back(client_.exec(*job->database, job->statement->sql, job->statement->parameters));
  }
  return results;
}

GroupCommit::Results GroupCommit::run_batch(const std::vector<Job*>& batch) {
  const std::string& database = *batch.front()->database;
  std::optional<Outcome<Client::Lease>> lease(client_.write_lease(database));
  if (!*lease) {  // nothing was sent; alone, each gets its own retries and answer
    lease.reset();
    return run_alone(batch);
  }
  Connection& connection = (*lease)->connection();
  const wire::DatabaseId db = (*lease)->database_id();
  // Invariant 2: the batch broke before COMMIT. Nothing of it is applied; run it again alone.
  const auto replay = [&] {
    if (connection.is_open()) connection.exec_sql(db, "ROLLBACK");
    (*lease)->discard();
    lease.reset();  // releases the write gate that run_alone's exec() takes
    {
      std::lock_guard lock(mutex_);
      stats_.replayed += batch.size();
    }
    return run_alone(batch);
  };
  if (!connection.exec_sql(db, "BEGIN")) return replay();
  Results results;
  results.reserve(batch.size());
  for (std::size_t index = 0; index < batch.size(); ++index) {
    const std::string savepoint = "stacknode_" + std::to_string(index);
    if (!connection.exec_sql(db, "SAVEPOINT " + savepoint)) return replay();
    Outcome<wire::Result> result =
        connection.exec_sql(db, batch[index]->statement->sql, batch[index]->statement->parameters);
    // The connection or the leader failed, or another client holds the write lock: alone, each
    // statement gets the client's retries (rule 6 for the lock).
    if (!result && (result.error().kind != ErrorKind::sqlite || refused_busy(result.error()))) return replay();
    if (!result && !connection.exec_sql(db, "ROLLBACK TO " + savepoint)) return replay();
    if (!connection.exec_sql(db, "RELEASE " + savepoint)) return replay();
    results.push_back(std::move(result));
  }
  Outcome<wire::Result> committed = connection.exec_sql(db, "COMMIT");
  if (!committed) {
    const Error& error = committed.error();
    const bool certainly_not_applied =
        error.kind == ErrorKind::sqlite || (error.kind == ErrorKind::not_leader && error.code == wire::error_not_leader);
    if (certainly_not_applied) return replay();
    (*lease)->discard();
    lease.reset();
    return Results(batch.size(), Outcome<wire::Result>(error));  // invariant 3
  }
  lease.reset();
  {
    std::lock_guard lock(mutex_);
    stats_.statements += batch.size();
    stats_.batches += 1;
  }
  return results;
}

}  // namespace stacknode::db
