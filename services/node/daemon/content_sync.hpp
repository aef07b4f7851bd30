// The content loop: makes this node's copy of every site match the version the cluster says it
// serves (content.hpp), and tells the cluster which version it serves.
//
// On disk, under paths.content_dir (default <state_dir>/content), per site:
//   <site>/versions/<N>/   version N, unpacked whole, every file's mtime the version's push time
//                          (so ETag and Last-Modified agree on every node)
//   <site>/versions/<N>.sha256  the SHA-256 of the bundle it came from: a directory left by
//                          another cluster's version N is replaced, never served as this one
//   <site>/current         a symlink to versions/<N>: what stacknode-web serves (web.content_dir)
// A version is unpacked into versions/.<N>.partial, fsynced, then renamed to versions/<N>; only
// then is `current` replaced, by rename(2) of a new symlink over it, so a reader sees the old
// version or the new one, never a mix and never a half-written one. Versions the cluster no
// longer keeps are removed, except the one being served.
//
// A node with nothing pushed yet serves the factory site: version 0 of `default`, one page that
// says so (prepare_factory_site()).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "stacknode/node/content.hpp"

namespace stacknode::node {

class ContentSync {
 public:
  ContentSync(ControlStore& store, std::int64_t self_id, std::filesystem::path content_dir)
      : store_(store), self_id_(self_id), content_dir_(std::move(content_dir)) {}

  // Creates the factory site under `content_dir` if `default` has no current version on disk.
  // Never throws; a failure is logged (stacknode-web then answers 503 until content arrives).
  static void prepare_factory_site(const std::filesystem::path& content_dir);
  // One round: every site to its current version, then the versions nobody keeps removed.
  void step();

  // The version `site`'s `current` link names on disk, if it names one.
  static std::optional<std::int64_t> served_version(const std::filesystem::path& site_dir);

 private:
  // Unpacks `version` (if it is not on disk) and makes it current; false after logging why not.
  bool switch_to(const ContentVersionRow& version);
  void remove_unkept(const std::string& site, const ContentState& state, std::int64_t serving);

  ControlStore& store_;
  std::int64_t self_id_;
  std::filesystem::path content_dir_;
  std::map<std::string, std::int64_t> recorded_;  // site -> the version last recorded as served
  // "site/version/sha256" -> when to try a version that failed to arrive or unpack again.
  std::map<std::string, std::chrono::steady_clock::time_point> failed_until_;
  std::string last_problem_;                       // logged once until it changes
};

}  // namespace stacknode::node
