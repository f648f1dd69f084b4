#![cfg(not(madsim))]
//! Backups: a member's state machine saved to a snapshot file, restored into a fresh fjall data
//! dir, and served by a new member founded on it; a damaged file is refused.

mod support;

use bytes::Bytes;
use oxcd::mvcc::{PutRequest, RangeRequest};
use oxcd::node::Command;
use oxcd::storage::{
    FjallEngine, RestoreError, RestoreOptions, SnapshotFormat, restore_file, save_file,
};

fn range_all() -> RangeRequest {
    RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        ..RangeRequest::default()
    }
}

#[test]
fn a_snapshot_file_restores_into_a_new_data_dir() {
    let base = std::env::temp_dir().join(format!("oxcd-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("backup.snap");
    let want = {
        let mut m = support::open_single(FjallEngine::open(base.join("a")).unwrap(), 1).unwrap();
        for i in 0..50 {
            m.propose(&Command::Put(PutRequest {
                key: Bytes::from(format!("key/{i:02}")),
                value: Bytes::from(format!("value {i}")),
                ..PutRequest::default()
            }))
            .unwrap();
            support::settle(&mut m).unwrap();
        }
        let status = save_file(m.raw().storage().engine(), &file).unwrap();
        // A founded cluster starts at revision 1, as etcd's does: 50 puts make it 51.
        assert_eq!(status.revision, 51);
        assert_eq!(status.total_keys, 50);
        m.range(&range_all()).unwrap()
    };

    let none = RestoreOptions::default();
    let status = restore_file(&file, &base.join("b"), &none).unwrap();
    assert_eq!(status.revision, 51);
    assert_eq!(status.format, SnapshotFormat::Oxcd);
    let mut m = support::open_single(FjallEngine::open(base.join("b")).unwrap(), 2).unwrap();
    assert_eq!(
        m.range(&range_all()).unwrap(),
        want,
        "the restored member serves the data"
    );
    m.propose(&Command::Put(PutRequest {
        key: Bytes::from_static(b"after"),
        value: Bytes::from_static(b"restore"),
        ..PutRequest::default()
    }))
    .unwrap();
    support::settle(&mut m).unwrap();
    assert_eq!(
        m.applier().kv().current_revision(),
        52,
        "revisions go on from the backup's"
    );
    drop(m);

    let err = restore_file(&file, &base.join("b"), &none).unwrap_err();
    assert!(matches!(err, RestoreError::DirExists(_)), "{err}");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let err = restore_file(&file, &base.join("c"), &none).unwrap_err();
    assert!(matches!(err, RestoreError::Content(_)), "{err}");
    std::fs::remove_dir_all(&base).unwrap();
}
