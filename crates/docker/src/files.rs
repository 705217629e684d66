//! File transfer with the engine's archive API (docs/FILES.md): `HEAD
//! /containers/{id}/archive` stats one path without following its last
//! component, `GET` gives a path as tar, `PUT` extracts a tar into a
//! directory. The engine itself would follow symbolic links in the middle
//! of a path (within the container's root), so every component from the
//! home down is stat'ed first and a link anywhere is refused.

use crate::Shared;
use crate::container::container_name;
use crate::error::is_not_found;
use bollard::container::PathStatResponse;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use std::time::{Duration, Instant};
use streamspace_agent::OrNotFound;
use streamspace_agent::files::tar::{self, EntryKind, Owner, TarReader};
use streamspace_agent::files::{Download, FileRefused, FileResult, FileTarget, Listing, Upload};
use streamspace_protocol::SessionId;
use streamspace_protocol::files::{FileEntry, FileKind, FileRefusal, MAX_LIST_ENTRIES};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

/// Go's `os.FileMode` bits, as the engine reports them.
const MODE_DIR: u32 = 1 << 31;
const MODE_SYMLINK: u32 = 1 << 27;
/// Named pipe, socket, device, character device, irregular.
const MODE_SPECIAL: u32 = (1 << 25) | (1 << 24) | (1 << 26) | (1 << 21) | (1 << 19);

/// A listing reads the folder's tree as tar: it stops after this many
/// entries or this long and says the listing is truncated.
const LIST_SCAN_ENTRIES: usize = 100_000;
const LIST_SCAN_TIME: Duration = Duration::from_secs(20);

/// The largest `/etc/passwd` or `/etc/group` read to find a user by name.
const MAX_ACCOUNTS_FILE: u64 = 1 << 20;

/// How far down a target's components exist.
struct Walk {
    /// Components below the home that exist (all of them when equal to
    /// the target's depth).
    existing: usize,
    /// The stat of the last existing component (the home when none).
    last: PathStatResponse,
}

impl Shared {
    pub(crate) async fn list_files(
        &self,
        session_id: &SessionId,
        target: &FileTarget,
    ) -> FileResult<Listing> {
        let (id, home, _) = self.files_container(session_id).await?;
        let walk = self.walk(&id, &home, target).await?;
        if walk.existing < target.depth() {
            // A files folder not made yet lists as empty; a missing
            // directory the user asked for does not exist.
            if target.path.is_empty() {
                return Ok(Listing::default());
            }
            return Err(not_found(&target.path.join("/")));
        }
        if walk.last.file_mode & MODE_DIR == 0 {
            return Err(FileRefused::new(
                FileRefusal::WrongKind,
                "that is a file, not a directory",
            ));
        }
        let reader = self.archive(&id, &target.join(&home, target.depth()));
        read_listing(TarReader::new(reader)).await
    }

    pub(crate) async fn read_file(
        &self,
        session_id: &SessionId,
        target: &FileTarget,
    ) -> FileResult<Download> {
        let (id, home, _) = self.files_container(session_id).await?;
        let walk = self.walk(&id, &home, target).await?;
        if walk.existing < target.depth() || target.path.is_empty() {
            return Err(not_found(&target.path.join("/")));
        }
        check_regular(&walk.last)?;
        let mut reader = TarReader::new(self.archive(&id, &target.join(&home, target.depth())));
        let entry = reader
            .next()
            .await
            .map_err(|e| unavailable(format!("reading the file from the engine: {e}")))?
            .ok_or_else(|| unavailable("the engine sent an empty archive".into()))?;
        if entry.kind != EntryKind::File {
            return Err(FileRefused::new(
                FileRefusal::WrongKind,
                "that is not a regular file",
            ));
        }
        let bytes = ReaderStream::new(reader.data(entry.size)).boxed();
        Ok(Download {
            size: entry.size,
            bytes,
        })
    }

    pub(crate) async fn write_file(
        &self,
        session_id: &SessionId,
        target: &FileTarget,
        upload: Upload,
    ) -> FileResult<()> {
        let (id, home, user) = self.files_container(session_id).await?;
        let walk = self.walk(&id, &home, target).await?;
        let depth = target.depth();
        if walk.existing == depth {
            check_regular(&walk.last)?;
        }
        let owner = self.owner(&id, user.as_deref()).await?;
        // Extract into the deepest directory that exists, making the rest.
        let base = walk.existing.min(depth - 1);
        let missing: Vec<&str> = target.components().skip(base).collect();
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut head = Vec::new();
        for end in 1..missing.len() {
            let dir = missing[..end].join("/");
            head.extend(tar::entry_header(
                &dir,
                EntryKind::Directory,
                0,
                owner,
                mtime,
            ));
        }
        head.extend(tar::entry_header(
            &missing.join("/"),
            EntryKind::File,
            upload.size,
            owner,
            mtime,
        ));
        let mut tail = vec![0u8; tar::padding(upload.size)];
        tail.extend_from_slice(&tar::end_of_archive());
        let body = stream::once(async move { Ok(Bytes::from(head)) })
            .chain(ReaderStream::new(upload.file))
            .chain(stream::once(async move { Ok(Bytes::from(tail)) }));
        let options = UploadToContainerOptionsBuilder::default()
            .path(&target.join(&home, base))
            .no_overwrite_dir_non_dir("1")
            .build();
        self.docker
            .upload_to_container(&id, Some(options), bollard::body_try_stream(body))
            .await
            .map_err(|e| {
                unavailable(
                    self.error("write the upload into the session", e)
                        .to_string(),
                )
            })
    }

    /// The container, its home (`$HOME`, `/` when unset) and its user.
    async fn files_container(
        &self,
        session_id: &SessionId,
    ) -> FileResult<(String, String, Option<String>)> {
        let container: ContainerInspectResponse = self
            .inspect_owned(session_id)
            .await
            .or_not_found(session_id)?;
        let id = container.id.unwrap_or_else(|| container_name(session_id));
        let config = container.config.unwrap_or_default();
        let env_home = config
            .env
            .unwrap_or_default()
            .into_iter()
            .find_map(|kv| kv.strip_prefix("HOME=").map(str::to_owned));
        let user = config.user.filter(|u| !u.is_empty());
        Ok((id, env_home.unwrap_or_else(|| "/".into()), user))
    }

    /// Stats the home and each component below it down to the target,
    /// refusing a symbolic link or a non-directory on the way.
    async fn walk(&self, id: &str, home: &str, target: &FileTarget) -> FileResult<Walk> {
        let home = home.to_owned();
        let mut last = self
            .lstat(id, &target.join(&home, 0))
            .await?
            .ok_or_else(|| unavailable(format!("the session's home {home} does not exist")))?;
        if last.file_mode & (MODE_DIR | MODE_SYMLINK) != MODE_DIR {
            return Err(escapes(&home));
        }
        for depth in 1..=target.depth() {
            let path = target.join(&home, depth);
            let Some(stat) = self.lstat(id, &path).await? else {
                return Ok(Walk {
                    existing: depth - 1,
                    last,
                });
            };
            if stat.file_mode & MODE_SYMLINK != 0 {
                return Err(escapes(&path));
            }
            if depth < target.depth() && stat.file_mode & MODE_DIR == 0 {
                return Err(FileRefused::new(
                    FileRefusal::WrongKind,
                    format!("{path} is not a directory"),
                ));
            }
            last = stat;
        }
        Ok(Walk {
            existing: target.depth(),
            last,
        })
    }

    async fn lstat(&self, id: &str, path: &str) -> FileResult<Option<PathStatResponse>> {
        let options = ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        match self
            .docker
            .get_container_archive_info(id, Some(options))
            .await
        {
            Ok(stat) => Ok(Some(stat)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(unavailable(
                self.error(format!("stat {path} in the session"), e)
                    .to_string(),
            )),
        }
    }

    /// A path in the container as a tar stream.
    fn archive(&self, id: &str, path: &str) -> impl AsyncRead + Unpin + Send + 'static {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        StreamReader::new(
            self.docker
                .download_from_container(id, Some(options))
                .map_err(std::io::Error::other),
        )
    }

    /// Who an upload belongs to: the container's user (`uid[:gid]` or
    /// names, looked up in the image's `/etc/passwd` and `/etc/group`), or
    /// root when it runs as root.
    async fn owner(&self, id: &str, user: Option<&str>) -> FileResult<Owner> {
        let Some(user) = user else {
            return Ok(Owner::default());
        };
        let (name, group) = user
            .split_once(':')
            .map_or((user, None), |(u, g)| (u, Some(g)));
        let passwd = self.small_file(id, "/etc/passwd").await;
        let (uid, primary_gid) = match name.parse::<u32>() {
            Ok(uid) => (
                uid,
                lookup(&passwd, |f| f[2] == name).map(|f| f[3].to_owned()),
            ),
            Err(_) => {
                let fields = lookup(&passwd, |f| f[0] == name).ok_or_else(|| {
                    unavailable(format!(
                        "the session's user {name:?} is not in the image's /etc/passwd"
                    ))
                })?;
                (fields[2].parse().unwrap_or(0), Some(fields[3].to_owned()))
            }
        };
        let gid = match group {
            Some(g) if g.parse::<u32>().is_ok() => g.parse().unwrap_or(0),
            Some(g) => {
                let groups = self.small_file(id, "/etc/group").await;
                let fields = lookup(&groups, |f| f[0] == g).ok_or_else(|| {
                    unavailable(format!(
                        "the session's group {g:?} is not in the image's /etc/group"
                    ))
                })?;
                fields[2].parse().unwrap_or(0)
            }
            None => primary_gid.and_then(|g| g.parse().ok()).unwrap_or(0),
        };
        Ok(Owner { uid, gid })
    }

    /// A small text file of the container (empty when missing or too big).
    async fn small_file(&self, id: &str, path: &str) -> String {
        use tokio::io::AsyncReadExt;
        let mut reader = TarReader::new(self.archive(id, path));
        let Ok(Some(entry)) = reader.next().await else {
            return String::new();
        };
        if entry.size > MAX_ACCOUNTS_FILE {
            return String::new();
        }
        let mut text = String::new();
        let _ = reader.data(entry.size).read_to_string(&mut text).await;
        text
    }
}

/// The fields of the first `name:x:id:gid:…` line that `matches`.
fn lookup(file: &str, matches: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    file.lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() >= 4 && matches(fields))
}

/// The direct children in a directory's tar (entries `dir/`, `dir/a`,
/// `dir/sub/`, `dir/sub/b`, … in the engine's walk order).
async fn read_listing<R: AsyncRead + Unpin>(mut reader: TarReader<R>) -> FileResult<Listing> {
    let started = Instant::now();
    let mut listing = Listing::default();
    let mut scanned = 0;
    while let Some(entry) = reader
        .next()
        .await
        .map_err(|e| unavailable(format!("reading the folder from the engine: {e}")))?
    {
        scanned += 1;
        if scanned > LIST_SCAN_ENTRIES || started.elapsed() > LIST_SCAN_TIME {
            listing.truncated = true;
            break;
        }
        let Some((_, rest)) = entry.name.split_once('/') else {
            continue;
        };
        let name = rest.trim_end_matches('/');
        if name.is_empty() || name.contains('/') {
            continue;
        }
        if listing.entries.len() == MAX_LIST_ENTRIES {
            listing.truncated = true;
            break;
        }
        listing.entries.push(FileEntry {
            name: name.to_owned(),
            kind: match entry.kind {
                EntryKind::File => FileKind::File,
                EntryKind::Directory => FileKind::Directory,
                EntryKind::Symlink => FileKind::Symlink,
                EntryKind::Other => FileKind::Other,
            },
            size: if entry.kind == EntryKind::File {
                entry.size
            } else {
                0
            },
            modified: entry.mtime.saturating_mul(1000),
        });
    }
    listing.entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

fn check_regular(stat: &PathStatResponse) -> FileResult<()> {
    if stat.file_mode & MODE_DIR != 0 {
        return Err(FileRefused::new(
            FileRefusal::WrongKind,
            format!("{} is a directory", stat.name),
        ));
    }
    if stat.file_mode & (MODE_SYMLINK | MODE_SPECIAL) != 0 {
        return Err(FileRefused::new(
            FileRefusal::Escapes,
            format!("{} is not a regular file", stat.name),
        ));
    }
    Ok(())
}

fn escapes(path: &str) -> FileRefused {
    FileRefused::new(
        FileRefusal::Escapes,
        format!(
            "{path} is a symbolic link: file transfer never follows links out of the files folder"
        ),
    )
}

fn not_found(path: &str) -> FileRefused {
    FileRefused::new(
        FileRefusal::NotFound,
        format!("{path:?} does not exist in the files folder"),
    )
}

fn unavailable(message: String) -> FileRefused {
    FileRefused::new(FileRefusal::Unavailable, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listing_keeps_direct_children_only() {
        let mut bytes = Vec::new();
        for (name, kind, size) in [
            ("Downloads", EntryKind::Directory, 0u64),
            ("Downloads/b.txt", EntryKind::File, 3),
            ("Downloads/sub", EntryKind::Directory, 0),
            ("Downloads/sub/deep.txt", EntryKind::File, 2),
            ("Downloads/a.txt", EntryKind::File, 1),
        ] {
            bytes.extend(tar::entry_header(name, kind, size, Owner::default(), 60));
            bytes.resize(bytes.len() + size as usize + tar::padding(size), 0);
        }
        bytes.extend_from_slice(&tar::end_of_archive());
        let listing = read_listing(TarReader::new(&bytes[..]))
            .await
            .expect("lists");
        let names: Vec<_> = listing
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.kind, e.size))
            .collect();
        assert_eq!(
            names,
            vec![
                ("a.txt", FileKind::File, 1),
                ("b.txt", FileKind::File, 3),
                ("sub", FileKind::Directory, 0)
            ]
        );
        assert_eq!(listing.entries[0].modified, 60_000);
        assert!(!listing.truncated);
    }

    #[test]
    fn users_are_found_by_name_or_number() {
        let passwd = "root:x:0:0::/root:/bin/sh\nuser:x:1000:1001::/home/user:/bin/sh\n";
        assert_eq!(
            lookup(passwd, |f| f[0] == "user").map(|f| f[3]),
            Some("1001")
        );
        assert_eq!(
            lookup(passwd, |f| f[2] == "1000").map(|f| f[0]),
            Some("user")
        );
        assert!(lookup(passwd, |f| f[0] == "nobody").is_none());
    }
}
