// Content bundles in the control database: uploads in chunks, versions, each site's current
// version and what each node serves; see content.hpp.
#include "stacknode/node/content.hpp"

#include <sodium.h>

#include <algorithm>

#include "rows.hpp"
#include "stacknode/node/hex.hpp"

namespace stacknode::node {

namespace {

using rows::all_rows;
using rows::conflict;
using rows::database_problem;
using rows::integer;
using rows::invalid;
using rows::not_found;
using rows::text;
using rows::valid_name;

constexpr std::string_view version_columns =
    "site, version, upload, sha256, bytes, files, chunks, created_at, created_by";

ContentVersionRow version_row(const db::wire::Row& row) {
  return {text(row[0]),    integer(row[1]), text(row[2]), text(row[3]), integer(row[4]),
          integer(row[5]), integer(row[6]), integer(row[7]), text(row[8])};
}

// A site's name is a directory name on every node: never "." or "..", nor hidden.
std::optional<Problem> check_site(const std::string& site) {
  if (valid_name(site, max_site_name_chars) && site.front() != '.') return std::nullopt;
  return invalid("a site name has 1 to " + std::to_string(max_site_name_chars) +
                 " characters from a-z A-Z 0-9 - _ . and does not start with a dot");
}

bool is_sha256_hex(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A version's bundle: its chunks 0..chunks-1 in order, one query each (a bundle can be tens of
// MiB: no single answer carries it), checked against its SHA-256. `query` runs one statement
// (in a transaction or not).
template <typename Query>
Checked<std::vector<std::uint8_t>> read_bundle(const Query& query, const ContentVersionRow& version) {
  std::vector<std::uint8_t> bytes;
  for (std::int64_t sequence = 0; sequence < version.chunks; ++sequence) {
    db::Outcome<db::wire::RowSet> chunk =
        query("SELECT data FROM content_chunks WHERE upload = ? AND seq = ?", {version.upload, sequence});
    if (!chunk) return problem_from(chunk.error());
    const db::wire::Blob* data = chunk->rows.size() == 1 ? std::get_if<db::wire::Blob>(&chunk->rows[0][0]) : nullptr;
    if (data == nullptr) return invalid("the upload lacks chunk " + std::to_string(sequence));
    if (bytes.size() + data->size() > max_bundle_bytes) {
      return invalid("the upload is larger than " + std::to_string(max_bundle_bytes) + " bytes");
    }
    bytes.insert(bytes.end(), data->begin(), data->end());
  }
  if (const std::string actual = sha256_hex(bytes); actual != version.sha256) {
    return invalid("the bundle's SHA-256 is " + actual + ", not " + version.sha256 + " (a chunk was lost or damaged)");
  }
  return bytes;
}

std::string describe(const ContentVersionRow& version) {
  return "version " + std::to_string(version.version) + " sha256 " + version.sha256 + ", " +
         std::to_string(version.files) + " files, " + std::to_string(version.bytes) + " bytes";
}

}  // namespace

Checked<std::string> ContentStore::begin_upload(const std::string& actor, const std::string& site, std::int64_t now) {
  if (auto problem = check_site(site)) return *problem;
  std::uint8_t random[upload_id_bytes];
  randombytes_buf(random, sizeof random);
  const std::string id = to_hex(random);
  // Abandoned uploads go first: their chunks are the only rows nothing else removes.
  Checked<Done> created = store_.change(
      {actor, "content.upload", site, "upload " + id}, now, [&](db::Client::Transaction& transaction) {
        const std::int64_t cutoff = now - abandoned_upload_seconds;
        db::Outcome<db::wire::Result> chunks = transaction.exec(
            "DELETE FROM content_chunks WHERE upload IN (SELECT id FROM content_uploads WHERE created_at < ?)", {cutoff});
        if (!chunks) return std::optional<Problem>(problem_from(chunks.error()));
        db::Outcome<db::wire::Result> uploads =
            transaction.exec("DELETE FROM content_uploads WHERE created_at < ?", {cutoff});
        if (!uploads) return std::optional<Problem>(problem_from(uploads.error()));
        db::Outcome<db::wire::RowSet> sites = transaction.query(
            "SELECT count(*), sum(site = ?) FROM content_sites", {site});
        if (auto problem = database_problem(sites)) return problem;
        if (integer(sites->rows[0][1]) == 0 && static_cast<std::size_t>(integer(sites->rows[0][0])) >= max_sites) {
          return std::optional<Problem>(conflict("a cluster has at most " + std::to_string(max_sites) + " sites"));
        }
        db::Outcome<db::wire::Result> done = transaction.exec(
            "INSERT INTO content_uploads (id, site, created_at, created_by) VALUES (?, ?, ?, ?)", {id, site, now, actor});
        return done ? std::nullopt : std::optional<Problem>(problem_from(done.error()));
      });
  if (!created) return created.problem();
  return id;
}

Checked<Done> ContentStore::put_chunk(const std::string& upload, std::int64_t sequence,
                                      std::span<const std::uint8_t> data) {
  if (sequence < 0 || sequence >= static_cast<std::int64_t>(max_content_chunks)) {
    return invalid("a chunk's number is 0 to " + std::to_string(max_content_chunks - 1));
  }
  if (data.empty() || data.size() > content_chunk_bytes) {
    return invalid("a chunk has 1 to " + std::to_string(content_chunk_bytes) + " bytes");
  }
  // Only into an upload that exists and was not committed (a committed one has a version).
  db::Outcome<db::wire::Result> done = store_.client().exec(
      store_.database(),
      "INSERT INTO content_chunks (upload, seq, data) SELECT ?, ?, ? WHERE EXISTS "
      "(SELECT 1 FROM content_uploads WHERE id = ?) ON CONFLICT (upload, seq) DO UPDATE SET data = excluded.data",
      {upload, sequence, db::wire::Blob(data.begin(), data.end()), upload});
  if (auto problem = rows::expect_one(done, "no upload '" + upload + "' in progress")) return *problem;
  return Done{};
}

Checked<CommittedContent> ContentStore::commit_upload(const std::string& actor, const std::string& upload,
                                                      const std::string& sha256, std::int64_t now) {
  if (!is_sha256_hex(sha256)) return invalid("sha256 is 64 lowercase hex digits");
  db::Outcome<db::wire::RowSet> found =
      store_.client().query(store_.database(), "SELECT site FROM content_uploads WHERE id = ?", {upload});
  if (!found) return problem_from(found.error());
  if (found->rows.empty()) return not_found("no upload '" + upload + "' in progress");
  const std::string site = text(found->rows[0][0]);

  // Everything in one transaction: the chunks checked are the chunks recorded (a chunk sent again
  // meanwhile waits for the write lock, then finds the upload gone). The audit detail names the
  // version, which the transaction picks: change() writes the note after the body has run.
  AuditNote note{actor, "content.push", site, ""};
  ContentVersionRow version;
  bool unchanged = false;
  Checked<Done> committed = store_.change(
      note, now, [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
        const auto query = [&](const std::string& sql, std::vector<db::wire::Value> parameters) {
          return transaction.query(sql, std::move(parameters));
        };
        db::Outcome<db::wire::RowSet> still = transaction.query(
            "SELECT (SELECT count(*) FROM content_uploads WHERE id = ?), "
            "(SELECT coalesce(max(version), 0) FROM content_versions WHERE site = ?), "
            "(SELECT count(*) FROM content_chunks WHERE upload = ?)",
            {upload, site, upload});
        if (auto problem = database_problem(still)) return problem;
        if (integer(still->rows[0][0]) != 1) return not_found("no upload '" + upload + "' in progress");
        version = ContentVersionRow{site, integer(still->rows[0][1]) + 1, upload, sha256, 0, 0,
                                    integer(still->rows[0][2]), now, actor};
        if (version.chunks == 0) return invalid("the upload has no chunks");
        Checked<std::vector<std::uint8_t>> bytes = read_bundle(query, version);
        if (!bytes) return bytes.problem();
        Bundle bundle;
        if (const BundleError error = parse_bundle(*bytes, bundle); !error.ok()) return invalid(error.message);
        version.bytes = static_cast<std::int64_t>(bytes->size());
        version.files = static_cast<std::int64_t>(bundle.files.size());

        db::Outcome<db::wire::RowSet> current = transaction.query(
            "SELECT " + std::string(version_columns) +
                " FROM content_versions WHERE site = ? AND version = (SELECT current FROM content_sites WHERE site = ?)",
            {site, site});
        if (auto problem = database_problem(current)) return problem;
        std::vector<std::pair<std::string, std::vector<db::wire::Value>>> statements;
        if (!current->rows.empty() && text(current->rows[0][3]) == sha256) {
          // The bundle the site serves already: no new version; the upload goes.
          unchanged = true;
          version = version_row(current->rows[0]);
          statements = {{"DELETE FROM content_chunks WHERE upload = ?", {upload}},
                        {"DELETE FROM content_uploads WHERE id = ?", {upload}}};
          note.detail = "unchanged: " + describe(version);
        } else {
          const std::int64_t oldest_kept = version.version - static_cast<std::int64_t>(max_kept_versions);
          statements = {
              {"INSERT INTO content_versions (" + std::string(version_columns) + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
               {site, version.version, upload, sha256, version.bytes, version.files, version.chunks, now, actor}},
              {"INSERT INTO content_sites (site, current) VALUES (?, ?) "
               "ON CONFLICT (site) DO UPDATE SET current = excluded.current",
               {site, version.version}},
              {"DELETE FROM content_uploads WHERE id = ?", {upload}},
              // Only the newest max_kept_versions stay, with their chunks.
              {"DELETE FROM content_chunks WHERE upload IN (SELECT upload FROM content_versions WHERE site = ? "
               "AND version <= ?)",
               {site, oldest_kept}},
              {"DELETE FROM content_versions WHERE site = ? AND version <= ?", {site, oldest_kept}},
          };
          note.detail = describe(version);
        }
        for (const auto& [sql, parameters] : statements) {
          if (db::Outcome<db::wire::Result> done = transaction.exec(sql, parameters); !done) {
            return problem_from(done.error());
          }
        }
        return std::nullopt;
      });
  if (!committed) return committed.problem();
  return CommittedContent{version, unchanged};
}

Checked<ContentVersionRow> ContentStore::rollback(const std::string& actor, const std::string& site,
                                                  std::optional<std::int64_t> to, std::int64_t now) {
  if (auto problem = check_site(site)) return *problem;
  ContentVersionRow chosen;
  Checked<Done> done = store_.change(
      {actor, "content.rollback", site, to ? "to version " + std::to_string(*to) : "to the previous version"}, now,
      [&](db::Client::Transaction& transaction) -> std::optional<Problem> {
        db::Outcome<db::wire::RowSet> current =
            transaction.query("SELECT current FROM content_sites WHERE site = ?", {site});
        if (auto problem = database_problem(current)) return problem;
        if (current->rows.empty()) return not_found("no site '" + site + "': nothing was pushed to it");
        const std::int64_t serving = integer(current->rows[0][0]);
        db::Outcome<db::wire::RowSet> target =
            to ? transaction.query("SELECT " + std::string(version_columns) +
                                       " FROM content_versions WHERE site = ? AND version = ?",
                                   {site, *to})
               : transaction.query("SELECT " + std::string(version_columns) +
                                       " FROM content_versions WHERE site = ? AND version < ? ORDER BY version DESC "
                                       "LIMIT 1",
                                   {site, serving});
        if (auto problem = database_problem(target)) return problem;
        if (target->rows.empty()) {
          if (to) return not_found("site '" + site + "' keeps no version " + std::to_string(*to));
          return conflict("site '" + site + "' keeps no version older than " + std::to_string(serving) +
                          " to roll back to");
        }
        chosen = version_row(target->rows[0]);
        if (chosen.version == serving) {
          return conflict("site '" + site + "' serves version " + std::to_string(serving) + " already");
        }
        db::Outcome<db::wire::Result> updated =
            transaction.exec("UPDATE content_sites SET current = ? WHERE site = ?", {chosen.version, site});
        return updated ? std::nullopt : std::optional<Problem>(problem_from(updated.error()));
      });
  if (!done) return done.problem();
  return chosen;
}

Checked<ContentState> ContentStore::state() {
  ContentState state;
  Checked<std::vector<ContentSiteRow>> sites = all_rows<ContentSiteRow>(
      store_, "SELECT site, current FROM content_sites ORDER BY site",
      [](const db::wire::Row& row) { return ContentSiteRow{text(row[0]), integer(row[1])}; });
  if (!sites) return sites.problem();
  state.sites = std::move(*sites);
  Checked<std::vector<ContentVersionRow>> versions = all_rows<ContentVersionRow>(
      store_, "SELECT " + std::string(version_columns) + " FROM content_versions ORDER BY site, version", version_row);
  if (!versions) return versions.problem();
  state.versions = std::move(*versions);
  Checked<std::vector<ContentNodeRow>> nodes = all_rows<ContentNodeRow>(
      store_, "SELECT site, node_id, version, at FROM content_nodes ORDER BY site, node_id",
      [](const db::wire::Row& row) {
        return ContentNodeRow{text(row[0]), integer(row[1]), integer(row[2]), integer(row[3])};
      });
  if (!nodes) return nodes.problem();
  state.nodes = std::move(*nodes);
  return state;
}

Checked<std::vector<std::uint8_t>> ContentStore::bundle_bytes(const ContentVersionRow& version) {
  return read_bundle(
      [&](const std::string& sql, std::vector<db::wire::Value> parameters) {
        return store_.client().query(store_.database(), sql, std::move(parameters));
      },
      version);
}

Checked<Done> ContentStore::record_served(const std::string& site, std::int64_t node_id, std::int64_t version,
                                          std::int64_t now) {
  db::Outcome<db::wire::Result> done = store_.client().exec(
      store_.database(),
      "INSERT INTO content_nodes (site, node_id, version, at) VALUES (?, ?, ?, ?) "
      "ON CONFLICT (site, node_id) DO UPDATE SET version = excluded.version, at = excluded.at",
      {site, node_id, version, now});
  if (!done) return problem_from(done.error());
  return Done{};
}

}  // namespace stacknode::node
