//! File transfer by exec into the session's container (docs/FILES.md): a
//! small POSIX shell script ([`SCRIPT`]) walks from the home down to the
//! target refusing symbolic links, then lists the directory, or runs `tar`
//! to send or receive the file. It runs as the container's own user, so an
//! upload is the session user's without any chown, and it needs only `sh`
//! and `tar` in the image (what `kubectl cp` needs too).

use crate::Shared;
use crate::names::CONTAINER;
use crate::phase::current_pod;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess};
use streamspace_agent::OrNotFound;
use streamspace_agent::files::tar::{self, EntryKind, Owner, TarReader};
use streamspace_agent::files::{Download, FileRefused, FileResult, FileTarget, Listing, Upload};
use streamspace_protocol::SessionId;
use streamspace_protocol::files::{FileEntry, FileKind, FileRefusal, MAX_LIST_ENTRIES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

/// Arguments: the operation, the home (`""`: `$HOME`), how many of the
/// components are the folder's, then the components. Exit codes: 10 a
/// symbolic link on the way, 11 not found, 12 the wrong kind, 13 no home.
/// A listing is NUL-separated `kind size mtime name` records.
pub const SCRIPT: &str = r#"
op=$1 home=${2:-${HOME:-/}} folder=$3
shift 3
fail() { printf '%s\n' "$2" >&2; exit "$1"; }
[ -L "$home" ] && fail 10 "$home is a symbolic link"
[ -d "$home" ] || fail 13 "the session's home $home does not exist"
cur=${home%/} n=$# i=0 found=$#
for part do
  i=$((i + 1)) next=$cur/$part
  [ -L "$next" ] && fail 10 "$next is a symbolic link: file transfer never follows links out of the files folder"
  if [ ! -e "$next" ]; then found=$((i - 1)); break; fi
  [ "$i" -lt "$n" ] && [ ! -d "$next" ] && fail 12 "$next is not a directory"
  cur=$next
done
case $op in
list)
  if [ "$found" -lt "$n" ]; then
    [ "$n" -eq "$folder" ] && exit 0
    fail 11 "that directory does not exist in the files folder"
  fi
  [ -d "$cur" ] || fail 12 "that is a file, not a directory"
  count=0
  for f in "$cur"/* "$cur"/.[!.]* "$cur"/..?*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    count=$((count + 1))
    [ "$count" -gt 1000 ] && break
    size=0
    if [ -L "$f" ]; then kind=symlink; mtime=0
    elif [ -d "$f" ]; then kind=directory
    elif [ -f "$f" ]; then kind=file; size=$(wc -c < "$f")
    else kind=other
    fi
    [ -L "$f" ] || mtime=$(date -r "$f" +%s 2>/dev/null || echo 0)
    printf '%s\0%s\0%s\0%s\0' "$kind" $size "$mtime" "${f##*/}"
  done ;;
download)
  [ "$found" -lt "$n" ] && fail 11 "that file does not exist in the files folder"
  [ -d "$cur" ] && fail 12 "that is a directory"
  [ -f "$cur" ] || fail 10 "that is not a regular file"
  cd "${cur%/*}" && exec tar -cf - -- "${cur##*/}" ;;
upload)
  [ -d "$cur" ] && [ "$found" -eq "$n" ] && fail 12 "that is a directory"
  dir=${home%/}
  while [ "$#" -gt 1 ]; do dir=$dir/$1; shift; done
  mkdir -p -- "$dir" && cd "$dir" && exec tar -xof - ;;
esac
"#;

/// The exec's command line for `op` on `target`.
pub fn command(op: &str, target: &FileTarget) -> Vec<String> {
    let mut args = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        SCRIPT.to_owned(),
        "sh".to_owned(),
        op.to_owned(),
        target.home.clone().unwrap_or_default(),
        target.folder.len().to_string(),
    ];
    args.extend(target.components().map(str::to_owned));
    args
}

/// The refusal a failed script's exit code and message stand for.
pub fn refusal(code: i32, message: &str) -> FileRefused {
    let message = message.trim().to_owned();
    let reason = match code {
        10 => FileRefusal::Escapes,
        11 => FileRefusal::NotFound,
        12 => FileRefusal::WrongKind,
        _ => FileRefusal::Unavailable,
    };
    let message = match (reason, message.is_empty()) {
        (FileRefusal::Unavailable, _) | (_, true) => {
            format!("the file transfer in the session failed (exit code {code}): {message}")
        }
        _ => message,
    };
    FileRefused::new(reason, message)
}

/// Reads the script's listing records.
pub fn parse_listing(out: &[u8]) -> Listing {
    let fields: Vec<&[u8]> = out.split(|&b| b == 0).collect();
    let mut listing = Listing::default();
    for record in fields.chunks_exact(4) {
        if listing.entries.len() == MAX_LIST_ENTRIES {
            listing.truncated = true;
            break;
        }
        let text = |i: usize| String::from_utf8_lossy(record[i]).trim().to_owned();
        let kind = match record[0] {
            b"file" => FileKind::File,
            b"directory" => FileKind::Directory,
            b"symlink" => FileKind::Symlink,
            _ => FileKind::Other,
        };
        listing.entries.push(FileEntry {
            name: text(3),
            kind,
            size: text(1).parse().unwrap_or(0),
            modified: text(2).parse::<i64>().unwrap_or(0).saturating_mul(1000),
        });
    }
    listing.entries.sort_by(|a, b| a.name.cmp(&b.name));
    listing
}

/// Bytes of a listing read at most (1001 records of long names fit).
const MAX_LISTING_BYTES: u64 = 2 << 20;

impl Shared {
    pub(crate) async fn list_files(
        &self,
        session_id: &SessionId,
        target: &FileTarget,
    ) -> FileResult<Listing> {
        let mut process = self.exec_files(session_id, "list", target, false).await?;
        let mut out = Vec::new();
        if let Some(stdout) = process.stdout() {
            let _ = stdout.take(MAX_LISTING_BYTES).read_to_end(&mut out).await;
        }
        exit_status(&mut process).await?;
        Ok(parse_listing(&out))
    }

    pub(crate) async fn read_file(
        &self,
        session_id: &SessionId,
        target: &FileTarget,
    ) -> FileResult<Download> {
        let mut process = self
            .exec_files(session_id, "download", target, false)
            .await?;
        let stdout = process
            .stdout()
            .ok_or_else(|| unavailable("the exec has no output"))?;
        let mut reader = TarReader::new(stdout);
        let entry = match reader.next().await {
            Ok(Some(entry)) if entry.kind == EntryKind::File => entry,
            Ok(_) | Err(_) => {
                exit_status(&mut process).await?;
                return Err(unavailable("tar in the session sent no file"));
            }
        };
        // The process lives as long as its bytes are read.
        let bytes = ReaderStream::new(reader.data(entry.size))
            .map(move |chunk| {
                let _alive = &process;
                chunk
            })
            .boxed();
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
        let mut process = self.exec_files(session_id, "upload", target, true).await?;
        let mut stdin = process
            .stdin()
            .ok_or_else(|| unavailable("the exec has no input"))?;
        let name = target.path.last().map(String::as_str).unwrap_or_default();
        let sent = send_tar(&mut stdin, name, upload).await;
        drop(stdin);
        exit_status(&mut process).await?;
        sent.map_err(|e| unavailable(&format!("sending the upload into the session: {e}")))
    }

    /// Starts the script in the session's container.
    async fn exec_files(
        &self,
        session_id: &SessionId,
        op: &str,
        target: &FileTarget,
        stdin: bool,
    ) -> FileResult<AttachedProcess> {
        let objects = self
            .session_objects(session_id)
            .await
            .or_not_found(session_id)?;
        let pod = current_pod(&objects.pods)
            .and_then(|pod| pod.metadata.name.clone())
            .ok_or_else(|| {
                unavailable("the session has no pod: it is hibernated or not started yet")
            })?;
        let params = AttachParams::default()
            .container(CONTAINER)
            .stdin(stdin)
            .stdout(true)
            .stderr(true);
        self.pods
            .exec(&pod, command(op, target), &params)
            .await
            .map_err(|e| unavailable(&self.error("exec into the session", e).to_string()))
    }
}

/// The upload as a one-entry tar: the name, the spooled bytes, the end.
async fn send_tar<W: tokio::io::AsyncWrite + Unpin>(
    stdin: &mut W,
    name: &str,
    upload: Upload,
) -> std::io::Result<()> {
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    stdin
        .write_all(&tar::entry_header(
            name,
            EntryKind::File,
            upload.size,
            Owner::default(),
            mtime,
        ))
        .await?;
    let mut file = upload.file;
    tokio::io::copy(&mut (&mut file).take(upload.size), stdin).await?;
    stdin
        .write_all(&vec![0u8; tar::padding(upload.size)])
        .await?;
    stdin.write_all(&tar::end_of_archive()).await?;
    stdin.flush().await
}

/// The script's exit: `Ok` on success, else its refusal (from the exit
/// code the apiserver reports and what the script wrote to stderr).
async fn exit_status(process: &mut AttachedProcess) -> FileResult<()> {
    let mut stderr = String::new();
    if let Some(err) = process.stderr() {
        let _ = err.take(64 * 1024).read_to_string(&mut stderr).await;
    }
    let status = match process.take_status() {
        Some(status) => status.await,
        None => None,
    };
    match status.as_ref().map(exit_code) {
        None | Some(0) => Ok(()),
        Some(code) => Err(refusal(code, &stderr)),
    }
}

/// The exit code in an exec's final status (`NonZeroExitCode` with an
/// `ExitCode` cause); 0 on `Success`.
pub fn exit_code(status: &Status) -> i32 {
    if status.status.as_deref() == Some("Success") {
        return 0;
    }
    status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.parse().ok())
        .unwrap_or(1)
}

fn unavailable(message: &str) -> FileRefused {
    FileRefused::new(FileRefusal::Unavailable, message)
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
