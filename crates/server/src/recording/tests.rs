use super::retention::{Keep, purge};
use super::*;
use std::sync::Arc;
use std::time::Duration;

fn recordings(limits: Limits) -> (tempfile::TempDir, Arc<Recordings>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let recordings = Recordings::open(dir.path().join("recordings"), limits).expect("open");
    (dir, Arc::new(recordings))
}

/// Waits until the writer thread of `id` has finished its sidecar.
async fn finished(recordings: &Recordings, id: &str) -> RecordingInfo {
    for _ in 0..500 {
        if !recordings.is_active(id) {
            return recordings.info(id).expect("sidecar");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("recording {id} never finished");
}

fn file_of(recordings: &Recordings, id: &str) -> Vec<u8> {
    std::fs::read(recordings.file(id).expect("file")).expect("read")
}

#[tokio::test]
async fn a_recording_holds_each_chunk_with_its_time() {
    let (_dir, recordings) = recordings(Limits::default());
    let session = SessionId::from("s-1");
    let (recorder, info) = start(&recordings, &session, "user:alice").expect("start");
    assert!(recordings.is_active(&info.id));
    recorder.record(b"RFB 003.008\n").await.expect("record");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    recorder.record(&big).await.expect("record");
    drop(recorder);

    let info = finished(&recordings, &info.id).await;
    assert!(
        info.ended_ms.is_some() && info.stopped.is_none(),
        "{info:?}"
    );
    assert!(
        info.duration_ms >= 60,
        "the second chunk came later: {info:?}"
    );
    let bytes = file_of(&recordings, &info.id);
    let (started, chunks) = format::parse(&bytes).expect("parses");
    assert_eq!(started, info.started_ms);
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0].data, b"RFB 003.008\n");
    assert!(chunks[1].data == big.as_slice());
    assert!(chunks[1].at_ms >= 60 && chunks[1].at_ms as u64 == info.duration_ms);

    let listed = recordings.list(Some(&session)).expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].bytes, bytes.len() as u64);
    assert!(!listed[0].active);
    assert!(
        recordings
            .list(Some(&"other".into()))
            .expect("list")
            .is_empty()
    );
    assert_eq!(recordings.used(), bytes.len() as u64, "use counts the file");
}

#[tokio::test]
async fn a_recording_stops_at_its_size_cap_and_stays_well_formed() {
    let limits = Limits {
        max_bytes: 10_000,
        max_total: 1 << 30,
    };
    let (_dir, recordings) = recordings(limits);
    let (recorder, info) = start(&recordings, &"s".into(), "user:a").expect("start");
    let chunk = [1u8; 3000];
    for _ in 0..6 {
        recorder.record(&chunk).await.expect("record");
    }
    // The writer stops as the fourth chunk would pass the cap.
    for _ in 0..200 {
        if recorder.stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(recorder.stopped(), "the relay is told to close");
    drop(recorder);
    let info = finished(&recordings, &info.id).await;
    assert!(
        info.stopped.as_deref().unwrap_or("").contains("size cap"),
        "{info:?}"
    );
    let bytes = file_of(&recordings, &info.id);
    assert!(
        bytes.len() as u64 <= limits.max_bytes,
        "{} bytes",
        bytes.len()
    );
    let (_, chunks) = format::parse(&bytes).expect("parses");
    assert_eq!(chunks.len(), 3, "whole chunks only");
    assert_eq!(
        bytes.len(),
        format::FILE_HEADER_LEN + 3 * (format::CHUNK_HEADER_LEN + chunk.len())
    );
}

#[tokio::test]
async fn all_recordings_together_stay_under_the_total_cap() {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_total: 12_000,
    };
    let (_dir, recordings) = recordings(limits);
    let (first, first_info) = start(&recordings, &"s".into(), "user:a").expect("start");
    first.record(&[0u8; 8000]).await.expect("record");
    let (second, second_info) = start(&recordings, &"s".into(), "user:b").expect("start");
    second.record(&[0u8; 8000]).await.expect("record");
    drop((first, second));
    let first_info = finished(&recordings, &first_info.id).await;
    let second_info = finished(&recordings, &second_info.id).await;
    let stopped = [&first_info, &second_info]
        .iter()
        .filter(|i| {
            i.stopped
                .as_deref()
                .unwrap_or("")
                .contains("storage is full")
        })
        .count();
    assert_eq!(
        stopped, 1,
        "one of the two did not fit: {first_info:?} {second_info:?}"
    );
    assert!(recordings.recount().expect("recount") <= limits.max_total);

    // Full: no new recording starts.
    let full = Limits {
        max_bytes: 1 << 20,
        max_total: recordings.used(),
    };
    let (_dir2, tight) = recordings_with_use(full);
    match start(&tight, &"s".into(), "user:a") {
        Err(StartError::Full { .. }) => {}
        other => panic!("expected Full, got {:?}", other.map(|(_, i)| i)),
    }
}

/// A directory already holding `limits.max_total` bytes.
fn recordings_with_use(limits: Limits) -> (tempfile::TempDir, Arc<Recordings>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("recordings");
    std::fs::create_dir_all(&path).expect("dir");
    std::fs::write(
        path.join("0000000000000-00000000.ssrec"),
        vec![0u8; limits.max_total as usize],
    )
    .expect("fill");
    let recordings = Recordings::open(path, limits).expect("open");
    (dir, Arc::new(recordings))
}

#[tokio::test]
async fn delete_refuses_running_and_unknown_recordings() {
    let (_dir, recordings) = recordings(Limits::default());
    let (recorder, info) = start(&recordings, &"s".into(), "user:a").expect("start");
    assert!(matches!(
        recordings.delete(&info.id),
        Err(DeleteError::Active)
    ));
    drop(recorder);
    finished(&recordings, &info.id).await;
    recordings.delete(&info.id).expect("delete");
    assert!(recordings.file(&info.id).is_none() && recordings.info(&info.id).is_none());
    assert_eq!(recordings.used(), 0);
    assert!(matches!(
        recordings.delete(&info.id),
        Err(DeleteError::NotFound)
    ));
    for bad in ["../../etc/passwd", "0000000000001-zzzzzzzz", "", "1-2"] {
        assert!(recordings.file(bad).is_none(), "{bad}");
        assert!(
            matches!(recordings.delete(bad), Err(DeleteError::NotFound)),
            "{bad}"
        );
    }
}

/// A finished recording of `len` bytes that began `age_days` ago.
fn old_recording(recordings: &Recordings, age_days: i64, len: usize) -> RecordingInfo {
    let started_ms = now_ms() - age_days * 24 * 3600 * 1000;
    let info = RecordingInfo {
        id: new_id(started_ms),
        session_id: "s".into(),
        viewer: "user:a".into(),
        started_ms,
        ended_ms: Some(started_ms + 1000),
        duration_ms: 1000,
        stopped: None,
    };
    std::fs::write(recordings.path(&info.id, EXTENSION), vec![0u8; len]).expect("file");
    recordings.save_info(&info).expect("sidecar");
    info
}

#[tokio::test]
async fn retention_deletes_by_age_then_oldest_first_by_size() {
    let (_dir, recordings) = recordings(Limits::default());
    let ancient = old_recording(&recordings, 40, 100);
    let old = old_recording(&recordings, 10, 1000);
    let newer = old_recording(&recordings, 5, 1000);
    let newest = old_recording(&recordings, 1, 1000);
    let (running, running_info) = start(&recordings, &"s".into(), "user:a").expect("start");

    let keep = Keep {
        days: 30,
        bytes: 1 << 30,
    };
    let gone = purge(&recordings, keep, now_ms()).expect("purge");
    let ids: Vec<&str> = gone.iter().map(|g| g.info.id.as_str()).collect();
    assert_eq!(ids, vec![ancient.id.as_str()], "only what is too old");

    let keep = Keep {
        days: 30,
        bytes: 2100,
    };
    let gone = purge(&recordings, keep, now_ms()).expect("purge");
    let ids: Vec<&str> = gone.iter().map(|g| g.info.id.as_str()).collect();
    assert_eq!(ids, vec![old.id.as_str()], "the oldest until it fits");
    let left: Vec<String> = recordings
        .list(None)
        .expect("list")
        .into_iter()
        .map(|l| l.info.id)
        .collect();
    assert_eq!(left, vec![running_info.id.clone(), newest.id, newer.id]);

    let keep = Keep { days: 1, bytes: 1 };
    purge(&recordings, keep, now_ms() + 10 * 24 * 3600 * 1000).expect("purge");
    let left = recordings.list(None).expect("list");
    assert_eq!(left.len(), 1, "a running recording is never deleted");
    assert!(left[0].active);
    drop(running);
}
