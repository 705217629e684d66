//! Just enough of the tar format (POSIX ustar with pax extended headers,
//! and GNU long names when reading) for the files platforms move: Docker's
//! archive API and `tar` run in a pod both speak it. Reading is streaming
//! and bounded (one 512-byte block at a time, extended headers up to
//! [`MAX_EXTENDED`]), so a huge archive never sits in memory.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

const BLOCK: usize = 512;
/// The largest pax or GNU long-name header read; real ones are tiny.
const MAX_EXTENDED: u64 = 64 * 1024;

/// Who an entry belongs to, by number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// What an entry is, as far as file transfer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// One entry's header, after any extended headers were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
}

/// The blocks that start an entry: a pax header carrying the name when it
/// does not fit ustar's 100 bytes, then the ustar header.
pub fn entry_header(name: &str, kind: EntryKind, size: u64, owner: Owner, mtime: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * BLOCK);
    if name.len() > 100 {
        let record = pax_record("path", name);
        out.extend_from_slice(&ustar_block(
            "pax",
            b'x',
            record.len() as u64,
            0o644,
            owner,
            mtime,
        ));
        out.extend_from_slice(&record);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    let (flag, mode) = match kind {
        EntryKind::Directory => (b'5', 0o755),
        _ => (b'0', 0o644),
    };
    out.extend_from_slice(&ustar_block(
        truncate_to(name, 100),
        flag,
        size,
        mode,
        owner,
        mtime,
    ));
    out
}

/// Zero bytes that pad an entry's data of `size` to whole blocks.
pub fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// The two zero blocks that end an archive.
pub fn end_of_archive() -> [u8; 2 * BLOCK] {
    [0; 2 * BLOCK]
}

fn truncate_to(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A pax record: `"<len> key=value\n"`, where len counts itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn ustar_block(
    name: &str,
    flag: u8,
    size: u64,
    mode: u32,
    owner: Owner,
    mtime: u64,
) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    block[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut block[100..108], u64::from(mode));
    octal(&mut block[108..116], u64::from(owner.uid));
    octal(&mut block[116..124], u64::from(owner.gid));
    octal(&mut block[124..136], size);
    octal(&mut block[136..148], mtime);
    block[156] = flag;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    octal(&mut block[148..155], u64::from(sum));
    block
}

/// Zero-padded octal with a NUL at the end, as ustar wants it.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Reads an archive entry by entry; the data of the current entry is read
/// through [`TarReader::data`] or skipped by the next [`TarReader::next`].
pub struct TarReader<R> {
    inner: R,
    /// Data and padding of the current entry not yet consumed.
    unread: u64,
}

impl<R: AsyncRead + Unpin> TarReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, unread: 0 }
    }

    /// The next entry, `None` at the end of the archive.
    pub async fn next(&mut self) -> io::Result<Option<Entry>> {
        self.skip_unread().await?;
        let mut long_name = None;
        let mut pax_size = None;
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block).await? {
                return Ok(None);
            }
            let size = header_size(&block)?;
            match block[156] {
                b'x' | b'L' => {
                    let data = self.read_extended(size).await?;
                    if block[156] == b'L' {
                        long_name = Some(c_string(&data));
                    } else {
                        let (path, size) = parse_pax(&data);
                        long_name = path.or(long_name);
                        pax_size = size.or(pax_size);
                    }
                }
                b'g' | b'K' => {
                    self.unread = size + padding(size) as u64;
                    self.skip_unread().await?;
                }
                flag => {
                    let size = pax_size.unwrap_or(size);
                    let entry = Entry {
                        name: long_name.unwrap_or_else(|| ustar_name(&block)),
                        kind: kind_of(flag),
                        size,
                        mtime: parse_number(&block[136..148]).unwrap_or(0) as i64,
                    };
                    self.unread = size + padding(size) as u64;
                    return Ok(Some(entry));
                }
            }
        }
    }

    /// The current entry's data, `size` bytes; padding is left for `next`.
    pub fn data(self, size: u64) -> impl AsyncRead + Unpin {
        self.inner.take(size)
    }

    async fn read_block(&mut self, block: &mut [u8; BLOCK]) -> io::Result<bool> {
        match self.inner.read_exact(block).await {
            Ok(_) => Ok(block.iter().any(|&b| b != 0)),
            // An archive cut right after its last entry: treat as its end.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn read_extended(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > MAX_EXTENDED {
            return Err(invalid(format!("an extended tar header of {size} bytes")));
        }
        let mut data = vec![0u8; size as usize + padding(size)];
        self.inner.read_exact(&mut data).await?;
        data.truncate(size as usize);
        Ok(data)
    }

    async fn skip_unread(&mut self) -> io::Result<()> {
        let skipped = tokio::io::copy(
            &mut (&mut self.inner).take(self.unread),
            &mut tokio::io::sink(),
        )
        .await?;
        if skipped != self.unread {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.unread = 0;
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn kind_of(flag: u8) -> EntryKind {
    match flag {
        b'0' | 0 | b'7' => EntryKind::File,
        b'5' => EntryKind::Directory,
        b'2' => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

fn header_size(block: &[u8; BLOCK]) -> io::Result<u64> {
    let stored = parse_number(&block[148..156])
        .ok_or_else(|| invalid("a tar header without a checksum".into()))?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != stored {
        return Err(invalid("a tar header with a wrong checksum".into()));
    }
    parse_number(&block[124..136]).ok_or_else(|| invalid("a tar header without a size".into()))
}

/// Octal, or base-256 when the top bit is set (GNU, for sizes over 8 GiB).
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)? + u64::from(b);
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn ustar_name(block: &[u8; BLOCK]) -> String {
    let name = c_string(&block[..100]);
    let prefix = if &block[257..262] == b"ustar" {
        c_string(&block[345..500])
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// The `path` and `size` of a pax header's records.
fn parse_pax(data: &[u8]) -> (Option<String>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            break;
        };
        if len <= space + 1 || len > rest.len() {
            break;
        }
        let record = &rest[space + 1..len - 1];
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            let value = String::from_utf8_lossy(&record[eq + 1..]).into_owned();
            match &record[..eq] {
                b"path" => path = Some(value),
                b"size" => size = value.parse().ok(),
                _ => {}
            }
        }
        rest = &rest[len..];
    }
    (path, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, EntryKind, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, kind, data) in entries {
            let owner = Owner {
                uid: 1000,
                gid: 1000,
            };
            out.extend(entry_header(
                name,
                *kind,
                data.len() as u64,
                owner,
                1_700_000_000,
            ));
            out.extend_from_slice(data);
            out.resize(out.len() + padding(data.len() as u64), 0);
        }
        out.extend_from_slice(&end_of_archive());
        out
    }

    #[tokio::test]
    async fn what_is_written_reads_back_with_long_names() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(200));
        let bytes = archive(&[
            ("dir", EntryKind::Directory, b""),
            ("dir/a.txt", EntryKind::File, b"hello"),
            (&long, EntryKind::File, &[7u8; 1000]),
        ]);
        let mut reader = TarReader::new(&bytes[..]);
        let first = reader.next().await.expect("reads").expect("an entry");
        assert_eq!(
            (first.name.as_str(), first.kind),
            ("dir", EntryKind::Directory)
        );
        let second = reader.next().await.expect("reads").expect("an entry");
        assert_eq!(
            (second.name.as_str(), second.size, second.mtime),
            ("dir/a.txt", 5, 1_700_000_000)
        );
        let third = reader.next().await.expect("reads").expect("an entry");
        assert_eq!((third.name.as_str(), third.size), (long.as_str(), 1000));
        let mut data = Vec::new();
        reader
            .data(third.size)
            .read_to_end(&mut data)
            .await
            .expect("data");
        assert_eq!(data, vec![7u8; 1000]);
    }

    #[tokio::test]
    async fn system_tar_reads_our_archives_and_we_read_its() {
        let dir = tempfile::tempdir().expect("tempdir");
        let long = "n".repeat(150);
        let bytes = archive(&[
            ("sub", EntryKind::Directory, b""),
            (&format!("sub/{long}"), EntryKind::File, b"data"),
        ]);
        std::fs::write(dir.path().join("ours.tar"), &bytes).expect("write");
        let status = std::process::Command::new("tar")
            .args(["-xf", "ours.tar"])
            .current_dir(dir.path())
            .status()
            .expect("tar runs");
        assert!(status.success());
        assert_eq!(
            std::fs::read(dir.path().join("sub").join(&long)).expect("extracted"),
            b"data"
        );

        let theirs = std::process::Command::new("tar")
            .args(["--format=posix", "-cf", "-", "sub"])
            .current_dir(dir.path())
            .output()
            .expect("tar runs");
        let mut reader = TarReader::new(&theirs.stdout[..]);
        let mut names = Vec::new();
        while let Some(entry) = reader.next().await.expect("reads") {
            names.push((entry.name, entry.size));
        }
        assert_eq!(
            names,
            vec![("sub/".to_owned(), 0), (format!("sub/{long}"), 4)]
        );
    }

    #[tokio::test]
    async fn a_corrupt_header_is_an_error_not_a_guess() {
        let mut bytes = archive(&[("a", EntryKind::File, b"x")]);
        bytes[0] = b'b';
        assert!(TarReader::new(&bytes[..]).next().await.is_err());
        assert!(
            TarReader::new(&b""[..])
                .next()
                .await
                .expect("empty")
                .is_none()
        );
    }
}
