// Sites' static content as cluster state (issue 6, "Content"): versioned bundles
// (content_bundle.hpp) stored once in the control database, the version every node should serve,
// and which version each node says it serves. The tables are schema migration 5.
//
// A push is an upload in chunks (each one transaction, so that no Raft entry holds a whole site)
// and then one commit, which reads the chunks back, checks the bundle whole (content_bundle.hpp's
// parse_bundle and the SHA-256 the pusher computed), makes it the site's next version and the
// site's current one, and keeps only the newest max_kept_versions versions. Rollback makes the
// previous kept version current. Every node's content loop (daemon/content_sync.cpp) then fetches
// the current version's chunks, unpacks them and switches its site directory to it atomically.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "stacknode/node/content_bundle.hpp"
#include "stacknode/node/control.hpp"

namespace stacknode::node {

inline constexpr std::size_t max_site_name_chars = 32;
inline constexpr std::string_view default_site = "default";  // the site stacknode-web serves
// One chunk of an upload: under the API's default body limit (1 MiB) with room to spare.
inline constexpr std::size_t content_chunk_bytes = 512 * 1024;
inline constexpr std::size_t max_content_chunks = (max_bundle_bytes + content_chunk_bytes - 1) / content_chunk_bytes;
inline constexpr std::size_t max_kept_versions = 3;  // per site: the current one and two to roll back to
inline constexpr std::size_t max_sites = 16;
// Uploads never committed (a pusher that died) are removed when a newer upload starts.
inline constexpr std::int64_t abandoned_upload_seconds = 3600;
inline constexpr std::size_t upload_id_bytes = 16;  // random, as 32 hex digits

struct ContentVersionRow {
  std::string site;
  std::int64_t version = 0;
  std::string upload;  // the chunks' key
  std::string sha256;  // of the whole bundle, hex
  std::int64_t bytes = 0;
  std::int64_t files = 0;
  std::int64_t chunks = 0;
  std::int64_t created_at = 0;  // Unix seconds; also every unpacked file's mtime, on every node
  std::string created_by;
};

struct ContentSiteRow {
  std::string site;
  std::int64_t current = 0;  // the version every node should serve
};

// What one node said it serves.
struct ContentNodeRow {
  std::string site;
  std::int64_t node_id = 0;
  std::int64_t version = 0;
  std::int64_t at = 0;  // Unix seconds
};

struct ContentState {
  std::vector<ContentSiteRow> sites;
  std::vector<ContentVersionRow> versions;  // ordered by site, then version
  std::vector<ContentNodeRow> nodes;
};

struct CommittedContent {
  ContentVersionRow version;
  bool unchanged = false;  // the bundle was the current version already: no new version made
};

class ContentStore {
 public:
  explicit ContentStore(ControlStore& store) : store_(store) {}

  // Starts an upload for `site` (a valid name); returns its id. Removes abandoned uploads.
  Checked<std::string> begin_upload(const std::string& actor, const std::string& site, std::int64_t now);
  // Stores chunk `sequence` (0, 1, 2, ... in any order; sending one again replaces it) of an upload.
  Checked<Done> put_chunk(const std::string& upload, std::int64_t sequence, std::span<const std::uint8_t> data);
  // Checks the upload's chunks (0..n-1, none missing) as one bundle whose SHA-256 is `sha256`
  // and makes it the site's current version (audited: content.push). If the bundle is the
  // current version already, nothing changes and `unchanged` is set.
  Checked<CommittedContent> commit_upload(const std::string& actor, const std::string& upload, const std::string& sha256,
                                          std::int64_t now);
  // Makes `to` (or, without it, the newest kept version below the current one) the site's
  // current version (audited: content.rollback).
  Checked<ContentVersionRow> rollback(const std::string& actor, const std::string& site, std::optional<std::int64_t> to,
                                      std::int64_t now);

  Checked<ContentState> state();
  // The bytes of a version's bundle (its chunks in order), checked against its SHA-256.
  Checked<std::vector<std::uint8_t>> bundle_bytes(const ContentVersionRow& version);
  // Records that `node_id` serves `version` of `site`; not audited.
  Checked<Done> record_served(const std::string& site, std::int64_t node_id, std::int64_t version, std::int64_t now);

 private:
  ControlStore& store_;
};

}  // namespace stacknode::node
