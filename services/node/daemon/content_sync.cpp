// The content loop; see content_sync.hpp.
#include "content_sync.hpp"

#include <charconv>
#include <fstream>
#include <set>
#include <system_error>

#include "stacknode/common/log.hpp"

namespace stacknode::node {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view versions_dir_name = "versions";
constexpr std::string_view current_link_name = "current";
constexpr std::int64_t factory_version = 0;
constexpr std::string_view factory_marker = "factory";  // the factory version's "SHA-256"
// A version that could not be fetched or unpacked is tried again after this long, not every round.
constexpr std::chrono::seconds failed_version_retry{60};
constexpr std::string_view factory_page =
    "<!doctype html>\n<meta charset=\"utf-8\">\n<title>stacknode</title>\n<h1>stacknode</h1>\n"
    "<p>No site has been pushed to this cluster yet. Push one with <code>stackctl content push DIR</code>.</p>\n";

// versions/<N>.sha256, beside versions/<N>: the bundle a version directory was unpacked from, so
// that a directory left by another cluster (a box reset and joined elsewhere) is never taken for
// this cluster's version N.
fs::path marker_of(const fs::path& version_dir) { return version_dir.string() + ".sha256"; }

std::string read_marker(const fs::path& version_dir) {
  std::ifstream in(marker_of(version_dir));
  std::string text;
  std::getline(in, text);
  return text;
}

// True when versions/<number> holds the bundle whose SHA-256 is `sha256`, whole.
bool unpacked(const fs::path& site_dir, std::int64_t number, const std::string& sha256) {
  const fs::path version_dir = site_dir / versions_dir_name / std::to_string(number);
  std::error_code error;
  return fs::is_directory(version_dir, error) && read_marker(version_dir) == sha256;
}

// Unpacks `bundle` (whose SHA-256 is `sha256`) as version `number` of the site at `site_dir`
// (through a .partial name) unless it is there already, then points `current` at it. The empty
// string, else what failed.
std::string install(const fs::path& site_dir, std::int64_t number, const std::string& sha256, const Bundle& bundle,
                    std::int64_t mtime) {
  const fs::path versions = site_dir / versions_dir_name;
  const std::string name = std::to_string(number);
  const fs::path final_dir = versions / name;
  std::error_code error;
  fs::create_directories(versions, error);
  if (error) return "cannot create " + versions.string() + ": " + error.message();
  if (!unpacked(site_dir, number, sha256)) {
    fs::remove_all(final_dir, error);  // another bundle's (or a half-removed) directory
    fs::remove(marker_of(final_dir), error);
    const fs::path partial = versions / ("." + name + ".partial");
    fs::remove_all(partial, error);  // what an interrupted earlier attempt left
    // Every file stamped with the push time, so ETag and Last-Modified agree on every node.
    if (const BundleError written = write_bundle_directory(bundle, partial, mtime); !written.ok()) {
      fs::remove_all(partial, error);
      return written.message;
    }
    fs::rename(partial, final_dir, error);
    if (error) return "cannot rename " + partial.string() + ": " + error.message();
    {
      std::ofstream marker(marker_of(final_dir), std::ios::trunc);
      marker << sha256 << "\n";
      if (!marker) return "cannot write " + marker_of(final_dir).string();
    }
    if (const BundleError synced = sync_directory(versions); !synced.ok()) return synced.message;
  }
  const fs::path next_link = site_dir / ".current.new";
  fs::remove(next_link, error);
  fs::create_symlink(fs::path(versions_dir_name) / name, next_link, error);
  if (error) return "cannot create " + next_link.string() + ": " + error.message();
  fs::rename(next_link, site_dir / current_link_name, error);  // the atomic switch
  if (error) return "cannot replace " + (site_dir / current_link_name).string() + ": " + error.message();
  return sync_directory(site_dir).message;
}

}  // namespace

std::optional<std::int64_t> ContentSync::served_version(const fs::path& site_dir) {
  std::error_code error;
  const fs::path target = fs::read_symlink(site_dir / current_link_name, error);
  if (error || target.parent_path() != versions_dir_name) return std::nullopt;
  const std::string name = target.filename().string();
  std::int64_t number = -1;
  const auto parsed = std::from_chars(name.data(), name.data() + name.size(), number);
  if (parsed.ec != std::errc() || parsed.ptr != name.data() + name.size() || number < 0) return std::nullopt;
  if (!fs::is_directory(site_dir / target, error)) return std::nullopt;
  return number;
}

void ContentSync::prepare_factory_site(const fs::path& content_dir) {
  const fs::path site_dir = content_dir / default_site;
  if (served_version(site_dir)) return;
  Bundle factory;
  factory.files.push_back({"index.html", false, std::string(factory_page)});
  if (const std::string problem = install(site_dir, factory_version, std::string(factory_marker), factory, 0);
      !problem.empty()) {
    log::error("content: cannot create the factory site in ", site_dir.string(), ": ", problem);
    return;
  }
  log::info("content: site ", default_site, " serves the factory page until a site is pushed");
}

void ContentSync::step() {
  ContentStore content(store_);
  Checked<ContentState> state = content.state();
  if (!state) {
    if (state.problem().message != last_problem_) log::warn("content: ", state.problem().message);
    last_problem_ = state.problem().message;
    return;
  }
  last_problem_.clear();
  for (const ContentSiteRow& site : state->sites) {
    const fs::path site_dir = content_dir_ / site.site;
    std::optional<std::int64_t> serving = served_version(site_dir);
    for (const ContentVersionRow& version : state->versions) {
      if (version.site != site.site || version.version != site.current) continue;
      // The number alone is not enough: the directory must hold this cluster's bundle.
      if (serving == site.current && unpacked(site_dir, site.current, version.sha256)) break;
      serving = switch_to(version) ? std::optional<std::int64_t>(site.current) : std::nullopt;
    }
    if (!serving) continue;
    if (const auto recorded = recorded_.find(site.site); recorded == recorded_.end() || recorded->second != *serving) {
      if (content.record_served(site.site, self_id_, *serving, unix_now())) recorded_[site.site] = *serving;
    }
    remove_unkept(site.site, *state, *serving);
  }
}

bool ContentSync::switch_to(const ContentVersionRow& version) {
  ContentStore content(store_);
  const fs::path site_dir = content_dir_ / version.site;
  const std::string key = version.site + "/" + std::to_string(version.version) + "/" + version.sha256;
  const auto now = std::chrono::steady_clock::now();
  if (const auto failed = failed_until_.find(key); failed != failed_until_.end() && now < failed->second) return false;
  const auto give_up = [&](const std::string& problem) {
    log::error("content: site ", version.site, " version ", version.version, ": ", problem, " (next try in ",
               failed_version_retry.count(), " s)");
    failed_until_[key] = now + failed_version_retry;
    return false;
  };
  Bundle bundle;
  if (!unpacked(site_dir, version.version, version.sha256)) {
    Checked<std::vector<std::uint8_t>> bytes = content.bundle_bytes(version);  // checks the SHA-256
    if (!bytes) return give_up(bytes.problem().message);
    if (const BundleError parsed = parse_bundle(*bytes, bundle); !parsed.ok()) return give_up(parsed.message);
  }
  if (const std::string problem = install(site_dir, version.version, version.sha256, bundle, version.created_at);
      !problem.empty()) {
    return give_up(problem);
  }
  failed_until_.erase(key);
  log::info("content: site ", version.site, " now serves version ", version.version, " (sha256 ", version.sha256, ", ",
            version.files, " files)");
  return true;
}

void ContentSync::remove_unkept(const std::string& site, const ContentState& state, std::int64_t serving) {
  std::set<std::string> kept = {std::to_string(serving)};
  for (const ContentVersionRow& version : state.versions) {
    if (version.site == site) kept.insert(std::to_string(version.version));
  }
  const fs::path versions = content_dir_ / site / versions_dir_name;
  std::error_code error;
  for (fs::directory_iterator entry(versions, error), end; !error && entry != end; entry.increment(error)) {
    const std::string name = entry->path().filename().string();
    if (name.ends_with(".sha256") && kept.contains(name.substr(0, name.size() - 7))) continue;
    if (kept.contains(name) || name.starts_with(".")) continue;  // .partial: being written, or cleaned by install
    std::error_code removal;
    fs::remove_all(entry->path(), removal);
    if (!name.ends_with(".sha256")) fs::remove(marker_of(entry->path()), removal);
    if (!removal) log::info("content: site ", site, " version ", name, " removed (no longer kept)");
  }
}

}  // namespace stacknode::node
