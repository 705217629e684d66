//! Disks, through libvirt's storage API: a directory pool the agent owns
//! (created and started if missing), in it each session's copy-on-write
//! overlay (a qcow2 volume whose `<backingStore>` is the template's base
//! image: created in milliseconds, never a copy) and each user's home disk
//! per template, which terminate keeps.
//!
//! These functions block (libvirt calls); they run inside
//! [`crate::conn::Hypervisor::call`].

use crate::error::is_missing;
use crate::xml::{self, Event, Writer};
use std::io::Read;
use streamspace_agent::{PlatformError, PlatformResult};
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

/// A disk in the agent's storage pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDisk {
    pub pool: String,
    pub volume: String,
}

/// The pool's name when `--pool` is not given.
pub const DEFAULT_POOL: &str = "streamspace";
/// Where the pool keeps its files when `--pool-path` is not given.
pub const DEFAULT_POOL_PATH: &str = "/var/lib/streamspace/vm/pool";

/// A template's base disk, as its `image` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseImage {
    /// An absolute path to a disk image file on the libvirt host.
    Path(String),
    /// A volume of a libvirt storage pool: `pool/volume`.
    Volume { pool: String, volume: String },
}

impl BaseImage {
    pub fn parse(image: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "the image {image:?} of a libvirt template must name its base disk: an absolute \
                 path to a qcow2 file (/var/lib/streamspace/vm/demo.qcow2) or a storage volume \
                 as pool/volume"
            )
        };
        if image.contains('\0') || image.trim() != image || image.is_empty() {
            return Err(invalid());
        }
        if image.starts_with('/') {
            if image.split('/').any(|part| part == "..") {
                return Err(invalid());
            }
            return Ok(BaseImage::Path(image.to_owned()));
        }
        match image.split_once('/') {
            Some((pool, volume))
                if !pool.is_empty() && !volume.is_empty() && !volume.contains('/') =>
            {
                Ok(BaseImage::Volume {
                    pool: pool.to_owned(),
                    volume: volume.to_owned(),
                })
            }
            _ => Err(invalid()),
        }
    }
}

/// A base disk found: its path on the host and its format (`qcow2`, `raw`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBase {
    pub path: String,
    pub format: String,
}

/// Finds the base disk; a missing one is `Invalid`, saying which.
pub fn resolve_base(conn: &Connect, uri: &str, base: &BaseImage) -> PlatformResult<ResolvedBase> {
    let failed = |action: String, e: &virt::error::Error| {
        PlatformError::from(crate::error::LibvirtError::new(uri, action, e))
    };
    match base {
        BaseImage::Volume { pool, volume } => {
            let found = StoragePool::lookup_by_name(conn, pool)
                .and_then(|p| StorageVol::lookup_by_name(&p, volume));
            let vol = match found {
                Ok(vol) => vol,
                Err(e) if is_missing(&e) => {
                    return Err(PlatformError::Invalid(format!(
                        "the base disk {pool}/{volume} does not exist on libvirt host {uri}: \
                         {}",
                        e.message()
                    )));
                }
                Err(e) => return Err(failed(format!("look up volume {pool}/{volume}"), &e)),
            };
            let path = vol
                .get_path()
                .map_err(|e| failed(format!("read the path of {pool}/{volume}"), &e))?;
            let description = vol
                .get_xml_desc(0)
                .map_err(|e| failed(format!("describe {pool}/{volume}"), &e))?;
            let format = volume_format(&description).unwrap_or_else(|| "qcow2".to_owned());
            Ok(ResolvedBase { path, format })
        }
        BaseImage::Path(path) => {
            // A file in one of libvirt's pools says its format itself.
            if let Ok(vol) = StorageVol::lookup_by_path(conn, path)
                && let Ok(description) = vol.get_xml_desc(0)
                && let Some(format) = volume_format(&description)
            {
                return Ok(ResolvedBase {
                    path: path.clone(),
                    format,
                });
            }
            let format = file_format(path).map_err(|e| {
                PlatformError::Invalid(format!(
                    "the base disk {path} cannot be read on this host: {e}"
                ))
            })?;
            Ok(ResolvedBase {
                path: path.clone(),
                format: format.to_owned(),
            })
        }
    }
}

/// qcow2 by its magic bytes, raw otherwise.
fn file_format(path: &str) -> std::io::Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path)?;
    let read = file.read(&mut magic)?;
    Ok(match (read, magic) {
        (4, [b'Q', b'F', b'I', 0xfb]) => "qcow2",
        _ => "raw",
    })
}

/// The format in a volume's description: `<volume><target><format type=…>`
/// (not its backing store's).
fn volume_format(description: &str) -> Option<String> {
    let mut path: Vec<String> = Vec::new();
    for event in xml::events(description).ok()? {
        match event {
            Event::Start { name, attrs, empty } => {
                if name == "format" && path == ["volume", "target"] {
                    return attrs.get("type").cloned();
                }
                if !empty {
                    path.push(name);
                }
            }
            Event::End { .. } => {
                path.pop();
            }
            Event::Text(_) => {}
        }
    }
    None
}

/// Makes sure the pool exists, is started and starts with libvirtd; a
/// missing one is defined as a directory pool at `path`, built (the
/// directory made) and started. Returns the pool's directory.
pub fn ensure_pool(conn: &Connect, uri: &str, name: &str, path: &str) -> PlatformResult<String> {
    let failed = |action: &str, e: &virt::error::Error| {
        PlatformError::from(crate::error::LibvirtError::new(
            uri,
            format!("{action} storage pool {name}"),
            e,
        ))
    };
    let pool = match StoragePool::lookup_by_name(conn, name) {
        Ok(pool) => pool,
        Err(e) if is_missing(&e) => {
            let mut w = Writer::new();
            w.open("pool", &[("type", "dir")]).text("name", &[], name);
            w.open("target", &[]).text("path", &[], path);
            let pool =
                StoragePool::define_xml(conn, &w.finish(), 0).map_err(|e| failed("define", &e))?;
            pool.build(0).map_err(|e| failed("build", &e))?;
            tracing::info!(pool = name, path, "defined the storage pool");
            pool
        }
        Err(e) => return Err(failed("look up", &e)),
    };
    if !pool.is_active().map_err(|e| failed("ask about", &e))? {
        pool.create(0).map_err(|e| failed("start", &e))?;
        tracing::info!(pool = name, "started the storage pool");
    }
    if !pool.get_autostart().unwrap_or(true) {
        let _ = pool.set_autostart(true);
    }
    let description = pool.get_xml_desc(0).map_err(|e| failed("describe", &e))?;
    Ok(pool_path(&description).unwrap_or_else(|| path.to_owned()))
}

/// `<pool><target><path>` of a pool's description.
fn pool_path(description: &str) -> Option<String> {
    let events = xml::events(description).ok()?;
    let mut path: Vec<&str> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        match event {
            Event::Start { name, empty, .. } => {
                if name == "path" && path == ["pool", "target"] {
                    return match events.get(i + 1) {
                        Some(Event::Text(text)) => Some(text.trim().to_owned()),
                        _ => None,
                    };
                }
                if !empty {
                    path.push(name);
                }
            }
            Event::End { .. } => {
                path.pop();
            }
            Event::Text(_) => {}
        }
    }
    None
}

fn lookup_volume(
    conn: &Connect,
    disk: &PoolDisk,
) -> Result<Option<StorageVol>, virt::error::Error> {
    let pool = StoragePool::lookup_by_name(conn, &disk.pool)?;
    match StorageVol::lookup_by_name(&pool, &disk.volume) {
        Ok(vol) => Ok(Some(vol)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The session's overlay on `base`, unless it exists (a start retried).
pub fn create_overlay(
    conn: &Connect,
    uri: &str,
    disk: &PoolDisk,
    base: &ResolvedBase,
) -> PlatformResult<()> {
    let failed = |e: &virt::error::Error| {
        PlatformError::from(crate::error::LibvirtError::new(
            uri,
            format!("create the overlay {}/{}", disk.pool, disk.volume),
            e,
        ))
    };
    if lookup_volume(conn, disk).map_err(|e| failed(&e))?.is_some() {
        return Ok(());
    }
    let mut w = Writer::new();
    w.open("volume", &[]).text("name", &[], &disk.volume);
    // No capacity: the overlay is as large as its base.
    w.open("target", &[]).empty("format", &[("type", "qcow2")]);
    w.close();
    w.open("backingStore", &[])
        .text("path", &[], &base.path)
        .empty("format", &[("type", &base.format)]);
    let pool = StoragePool::lookup_by_name(conn, &disk.pool).map_err(|e| failed(&e))?;
    StorageVol::create_xml(&pool, &w.finish(), 0).map_err(|e| failed(&e))?;
    tracing::info!(overlay = %disk.volume, base = %base.path, "created the session's overlay");
    Ok(())
}

/// The user's home disk (empty qcow2 of `bytes`), unless it exists: then
/// it is their home from an earlier session and kept as it is.
pub fn create_home(conn: &Connect, uri: &str, disk: &PoolDisk, bytes: u64) -> PlatformResult<()> {
    let failed = |e: &virt::error::Error| {
        PlatformError::from(crate::error::LibvirtError::new(
            uri,
            format!("create the home disk {}/{}", disk.pool, disk.volume),
            e,
        ))
    };
    if lookup_volume(conn, disk).map_err(|e| failed(&e))?.is_some() {
        return Ok(());
    }
    let mut w = Writer::new();
    w.open("volume", &[]).text("name", &[], &disk.volume);
    w.text("capacity", &[("unit", "bytes")], &bytes.to_string());
    w.text("allocation", &[("unit", "bytes")], "0");
    w.open("target", &[]).empty("format", &[("type", "qcow2")]);
    let pool = StoragePool::lookup_by_name(conn, &disk.pool).map_err(|e| failed(&e))?;
    StorageVol::create_xml(&pool, &w.finish(), 0).map_err(|e| failed(&e))?;
    tracing::info!(home = %disk.volume, bytes, "created the home disk");
    Ok(())
}

/// Deletes a volume; one that is gone already is fine.
pub fn delete_volume(conn: &Connect, uri: &str, disk: &PoolDisk) -> PlatformResult<()> {
    let failed = |e: &virt::error::Error| {
        PlatformError::from(crate::error::LibvirtError::new(
            uri,
            format!("delete volume {}/{}", disk.pool, disk.volume),
            e,
        ))
    };
    let vol = match lookup_volume(conn, disk) {
        Ok(Some(vol)) => vol,
        Ok(None) => return Ok(()),
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(failed(&e)),
    };
    match vol.delete(0) {
        Ok(()) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(failed(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_images_are_paths_or_pool_volumes() {
        assert_eq!(
            BaseImage::parse("/var/lib/streamspace/vm/demo.qcow2"),
            Ok(BaseImage::Path("/var/lib/streamspace/vm/demo.qcow2".into()))
        );
        assert_eq!(
            BaseImage::parse("images/demo.qcow2"),
            Ok(BaseImage::Volume {
                pool: "images".into(),
                volume: "demo.qcow2".into()
            })
        );
        for bad in [
            "",
            "demo.qcow2",
            "a/b/c",
            "/x/../etc/shadow",
            "/a\0",
            " /a",
            "pool/",
        ] {
            let err = BaseImage::parse(bad).expect_err(bad);
            assert!(err.contains("absolute path"), "{err}");
        }
    }

    #[test]
    fn formats_are_read_from_the_volume_not_its_backing_store() {
        let description = "<volume type='file'><name>o</name><target><path>/p/o</path>\
            <format type='qcow2'/></target><backingStore><path>/b</path><format type='raw'/>\
            </backingStore></volume>";
        assert_eq!(volume_format(description).as_deref(), Some("qcow2"));
        let backing_first = "<volume><backingStore><format type='raw'/></backingStore>\
            <target><format type='qcow2'/></target></volume>";
        assert_eq!(volume_format(backing_first).as_deref(), Some("qcow2"));
        let pool = "<pool type='dir'><name>p</name><source/><target>\n<path>/var/x</path>\
            <permissions><mode>0711</mode></permissions></target></pool>";
        assert_eq!(pool_path(pool).as_deref(), Some("/var/x"));
    }

    #[test]
    fn qcow2_files_are_told_from_raw_ones_by_their_magic() {
        let dir = std::env::temp_dir().join(format!("ss-format-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let qcow2 = dir.join("a.qcow2");
        std::fs::write(&qcow2, [b'Q', b'F', b'I', 0xfb, 0, 0, 0, 3]).expect("write");
        let raw = dir.join("b.img");
        std::fs::write(&raw, [0u8; 512]).expect("write");
        assert_eq!(
            file_format(qcow2.to_str().expect("utf-8")).expect("read"),
            "qcow2"
        );
        assert_eq!(
            file_format(raw.to_str().expect("utf-8")).expect("read"),
            "raw"
        );
        assert!(file_format("/no/such/file").is_err());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
